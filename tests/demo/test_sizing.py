"""The demo's model size and steps come from the shipped IsoFLOP fit: the study family's model nearest
N*(C), trained for the steps that spend C."""

import math

import pytest

from sodakit.demo.sizing import SHIPPED_FIT, choose_model, shipped_path, sweep_rules
from sodakit.model.config import count_params, train_flops_per_token
from sodakit.scaling.fit import load_fit
from sodakit.scaling.plan import model_for_width


def test_the_fit_and_the_study_ship_inside_the_package():
    fit = load_fit(shipped_path(SHIPPED_FIT))
    assert fit.flop_convention == "soda" and fit.params_kind == "total" and fit.n_opt is not None
    assert 0.2 < fit.n_opt.exponent < 0.7  # the laptop study's N* ~ C^0.45 (SODA: 0.367)


@pytest.mark.parametrize("flops", [1e12, 2.5e13, 1e15])
def test_choice_is_the_family_model_nearest_n_opt_and_spends_the_budget(flops):
    vocab, batch, seq = 1286, 16, 512
    choice, model = choose_model(flops, vocab, batch, seq)
    fit = load_fit(shipped_path(SHIPPED_FIT))
    n_opt = fit.n_opt(flops)
    assert choice.n_opt == pytest.approx(n_opt) and choice.d_opt == pytest.approx(fit.d_opt(flops))
    rules = sweep_rules(vocab, seq)
    distances = {w: abs(math.log(count_params(model_for_width(w, rules)).total / n_opt))
                 for w in range(rules.head_width, 4 * rules.max_width + 1, rules.head_width)}
    assert choice.width == min(distances, key=distances.get)
    assert choice.params == count_params(model).total and model.n_layers == choice.layers
    spent = choice.steps * batch * seq * train_flops_per_token(model, seq, "soda")
    assert spent == pytest.approx(flops, rel=0.5 / choice.steps + 1e-9)
    assert set(choice.report_rows()) >= {"N*(C) of the fit", "chosen model (nearest N* in the study's family)"}


def test_more_compute_buys_a_larger_model_and_more_tokens():
    small, _ = choose_model(1e12, 1286, 16, 512)
    large, _ = choose_model(1e15, 1286, 16, 512)
    assert large.params > small.params and large.tokens > small.tokens and large.n_opt > small.n_opt
