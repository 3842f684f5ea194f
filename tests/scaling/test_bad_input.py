"""Degenerate inputs give a clear error or an explicit warning, never a silent nonsense fit."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from sodakit.scaling.approach2 import approach2
from sodakit.scaling.approach3 import approach3
from sodakit.scaling.fit import FitSettings, fit_all
from sodakit.scaling.laws import CHINCHILLA, FitError
from sodakit.scaling.results import (
    Columns,
    ResultsError,
    cluster_budgets,
    observations_from_arrays,
    read_results,
)

BUDGETS = np.logspace(18, 20, 3)


def _rows(path):
    return list(csv.DictReader(path.open()))


def _rewrite(path, rows):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_one_budget_is_an_error(synth):
    obs = synth.sample(CHINCHILLA, [1e19], seed=0)
    with pytest.raises(FitError, match="one budget"):
        approach2(obs, n_bootstrap=0)
    with pytest.raises(FitError, match=">= 2 compute budgets"):
        approach3(obs, n_bootstrap=0)


def test_budget_with_fewer_than_three_points_is_excluded_with_warning(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, seed=0)
    keep = np.flatnonzero((obs.budget != BUDGETS[0]) | (np.arange(len(obs)) % 7 < 2))
    small = obs.subset(keep)
    r = approach2(small, n_bootstrap=20)
    assert BUDGETS[0] not in r.budgets_used and len(r.budgets_used) == 2
    assert any("only 2 run(s)" in w and "excluded" in w for w in r.warnings)
    with pytest.raises(FitError, match="only 2 run"):
        approach2(small, n_bootstrap=0, strict=True)


def test_profile_without_interior_minimum_is_excluded(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, seed=0, sigma=0.001)
    # keep only the small-model side of the middle budget: loss falls monotonically with N
    n_opt, _ = CHINCHILLA.optimal(BUDGETS[1], 6.0)
    keep = np.flatnonzero((obs.budget != BUDGETS[1]) | (obs.params < n_opt * 0.7))
    r = approach2(obs.subset(keep), n_bootstrap=0)
    prof = next(p for p in r.profiles if p.budget == BUDGETS[1])
    assert prof.status == "no_interior_minimum" and not prof.used
    assert any("outside the sampled range" in w for w in r.warnings)
    assert r.budgets_used == pytest.approx([BUDGETS[0], BUDGETS[2]])
    # all budgets one-sided -> error, not a fit
    one_sided = np.flatnonzero(obs.params < CHINCHILLA.optimal(obs.budget, 6.0)[0] * 0.7)
    with pytest.raises(FitError, match="usable IsoFLOP minimum"):
        approach2(obs.subset(one_sided), n_bootstrap=0)


def test_non_convex_profile_is_excluded(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, seed=0, sigma=0.001)
    m = obs.budget == BUDGETS[2]
    x = np.log(obs.params[m])
    obs.loss[m] = 3.0 - 0.1 * (x - x.mean()) ** 2  # opens downward
    r = approach2(obs, n_bootstrap=0)
    assert next(p for p in r.profiles if p.budget == BUDGETS[2]).status == "not_convex"
    assert any("not convex" in w for w in r.warnings)


@pytest.mark.parametrize("bad,expect", [("nan", "loss NaN"), ("-2.5", "loss not positive"), ("", "loss empty"),
                                        ("abc", "loss not a number")])
def test_invalid_loss_names_row_and_column(tmp_path, synth, bad, expect):
    path = synth.write_csv(tmp_path / "r.csv", synth.sample(CHINCHILLA, BUDGETS))
    rows = _rows(path)
    rows[4]["loss"] = bad
    _rewrite(path, rows)
    with pytest.raises(ResultsError, match=f"row 5 \\(run4\\): {expect}") as e:
        read_results(path)
    assert str(path) in str(e.value) and "--drop-invalid" in str(e.value)
    obs = read_results(path, drop_invalid=True)
    assert len(obs) == 20 and any("dropped 1 invalid row" in w for w in obs.warnings)


def test_mixed_flop_conventions_are_an_error(tmp_path, synth):
    obs = synth.sample(CHINCHILLA, BUDGETS)
    conv = ["6N"] * len(obs)
    conv[3] = "soda"
    path = synth.write_csv(tmp_path / "r.csv", obs, convention=conv)
    with pytest.raises(ResultsError, match="mixes FLOP conventions"):
        read_results(path)


def test_convention_mismatch_and_unknown(tmp_path, synth):
    path = synth.write_csv(tmp_path / "r.csv", synth.sample(CHINCHILLA, BUDGETS))
    with pytest.raises(ResultsError, match="table says FLOP convention '6N'"):
        read_results(path, flop_convention="soda")
    path = synth.write_csv(tmp_path / "u.csv", synth.sample(CHINCHILLA, BUDGETS), convention="12N")
    with pytest.raises(ResultsError, match="unknown FLOP convention"):
        read_results(path)


def test_missing_columns(tmp_path, synth):
    obs = synth.sample(CHINCHILLA, BUDGETS)
    path = synth.write_csv(tmp_path / "r.csv", obs, drop=("loss",))
    with pytest.raises(ResultsError, match=r"missing required column\(s\) \['loss'\]"):
        read_results(path)
    # custom column names
    rows = _rows(synth.write_csv(tmp_path / "c.csv", obs))
    for r in rows:
        r["val_nll"] = r.pop("loss")
    _rewrite(tmp_path / "c.csv", rows)
    assert len(read_results(tmp_path / "c.csv", Columns(loss="val_nll"))) == len(obs)


def test_tokens_and_budget_and_convention_derived_with_warnings(tmp_path, synth):
    obs = synth.sample(CHINCHILLA, BUDGETS)
    path = synth.write_csv(tmp_path / "r.csv", obs, drop=("tokens", "budget", "flop_convention"))
    got = read_results(path)
    assert np.allclose(got.tokens, obs.flops / (6 * obs.params))
    assert got.budgets == pytest.approx(list(BUDGETS))
    assert got.flop_convention == "soda"
    text = " ".join(got.warnings)
    assert "tokens = flops / (6 * params)" in text and "assuming 'soda'" in text


def test_cluster_budgets_groups_within_five_percent():
    flops = np.array([1e18, 1.009e18, 0.995e18, 3e18, 3.02e18, 1e19])
    labels = cluster_budgets(flops)
    assert len(set(labels)) == 3
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] != labels[5]


def test_run_far_from_its_budget_warns(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS)
    flops = obs.flops.copy()
    flops[0] *= 1.3
    got = observations_from_arrays(flops, obs.params, obs.loss, tokens=obs.tokens, budget=obs.budget, flop_convention="6N")
    assert any("30% away from its budget" in w for w in got.warnings)


def test_too_few_points_for_approach3(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS[:2], n_per=2)
    with pytest.raises(FitError, match="needs >= 6 runs"):
        approach3(obs, n_bootstrap=0)


def test_loss_independent_of_size_is_not_fitted_silently(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, seed=0)
    obs.loss[:] = 2.0 + 0.01 * np.random.default_rng(0).standard_normal(len(obs))
    try:
        r = approach2(obs, n_bootstrap=0)
    except FitError:
        return  # refused outright: fine
    # a fit, if any, must say why its minima cannot be trusted
    assert r.warnings and all(
        ("not significant" in w) or ("excluded" in w) or ("exactly through" in w) for w in r.warnings
    )
    assert any("not significant" in w for w in r.warnings)
    with pytest.raises(FitError):
        fit_all(obs, FitSettings(approaches=(2,), bootstrap=0, strict=True))


def test_real_profiles_have_significant_curvature(synth):
    r = approach2(synth.sample(CHINCHILLA, BUDGETS, seed=0), n_bootstrap=0)
    assert not r.warnings and all(p.curvature_t > 10 for p in r.profiles)
