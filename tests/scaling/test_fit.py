"""Both fitters recover known laws from noisy synthetic IsoFLOP data; results are read and checked."""

from __future__ import annotations

import numpy as np
import pytest

from sodakit.scaling.approach2 import approach2, fit_parabola
from sodakit.scaling.approach3 import approach3, objective
from sodakit.scaling.laws import CHINCHILLA, ParametricLaw, soda_reference

BUDGETS = np.logspace(18, 21, 5)
# A second law with the data exponent larger than the model exponent (like SODA's audio result).
AUDIO_LIKE = ParametricLaw(E=1.2, A=80.0, B=2500.0, alpha=0.25, beta=0.40)

# Stated tolerances at 0.5% multiplicative loss noise, 5 budgets x 7 sizes spanning +-0.8 decades.
A2_EXPONENT_TOL = 0.03  # absolute, on b_N and b_D
A2_NOPT_RTOL = 0.15  # N*(C) at C = 1e20 (the parabola in log N is biased for asymmetric profiles)
A3_EXP_TOL = 0.03  # alpha, beta
A3_E_TOL = 0.08
A3_AB_LOG_TOL = 0.4  # |ln(A_fit / A)|, |ln(B_fit / B)| (A and alpha trade off along a ridge)
A3_IMPLIED_TOL = 0.02  # beta/(alpha+beta)


@pytest.mark.parametrize("law", [CHINCHILLA, AUDIO_LIKE], ids=["chinchilla", "audio_like"])
def test_approach2_recovers_exponents(synth, law):
    obs = synth.sample(law, BUDGETS, sigma=0.005, seed=0)
    r = approach2(obs, n_bootstrap=300, seed=0)
    assert r.budgets_used == pytest.approx(list(BUDGETS))
    assert r.n_opt.exponent == pytest.approx(law.n_exponent, abs=A2_EXPONENT_TOL)
    assert r.d_opt.exponent == pytest.approx(law.d_exponent, abs=A2_EXPONENT_TOL)
    assert r.n_opt(1e20) == pytest.approx(law.optimal(1e20)[0], rel=A2_NOPT_RTOL)
    assert r.d_opt(1e20) == pytest.approx(law.optimal(1e20)[1], rel=A2_NOPT_RTOL)
    # the intervals bracket the estimate and the truth, and are informative
    lo, hi = r.n_opt.exponent_ci
    assert lo < r.n_opt.exponent < hi and lo < law.n_exponent < hi and hi - lo < 0.1
    assert r.n_bootstrap_ok == 300
    for p in r.profiles:
        assert p.status == "ok" and p.n_opt_ci[0] < p.n_opt < p.n_opt_ci[1]


def test_approach2_noise_free_is_nearly_exact(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, sigma=0.0, span=0.5)
    r = approach2(obs, n_bootstrap=0)
    assert r.n_opt.exponent == pytest.approx(CHINCHILLA.n_exponent, abs=0.005)
    assert r.n_opt.exponent + r.d_opt.exponent == pytest.approx(1.0, abs=1e-9)  # C = 6ND exactly


def test_parabola_vertex():
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    p = fit_parabola(x, 3 * (x - 0.4) ** 2 + 1.5)
    assert p.vertex_x == pytest.approx(0.4) and p.vertex_y == pytest.approx(1.5) and p.interior


@pytest.mark.parametrize("law", [CHINCHILLA, AUDIO_LIKE], ids=["chinchilla", "audio_like"])
def test_approach3_recovers_parameters(synth, law):
    obs = synth.sample(law, BUDGETS, sigma=0.005, seed=0)
    r = approach3(obs, n_bootstrap=0)
    assert r.alpha == pytest.approx(law.alpha, abs=A3_EXP_TOL)
    assert r.beta == pytest.approx(law.beta, abs=A3_EXP_TOL)
    assert r.E == pytest.approx(law.E, abs=A3_E_TOL)
    assert abs(np.log(r.A / law.A)) < A3_AB_LOG_TOL
    assert abs(np.log(r.B / law.B)) < A3_AB_LOG_TOL
    assert r.n_exponent == pytest.approx(law.n_exponent, abs=A3_IMPLIED_TOL)
    assert r.d_exponent == pytest.approx(law.d_exponent, abs=A3_IMPLIED_TOL)
    assert r.k == 6.0 and r.converged
    assert r.rmse_log == pytest.approx(0.005, rel=0.5)  # residuals match the injected noise


def test_approach3_noise_free_exact(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, sigma=0.0)
    r = approach3(obs, n_bootstrap=0)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(r, name) == pytest.approx(getattr(CHINCHILLA, name), rel=1e-3)


def test_approach3_bootstrap_intervals(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS, sigma=0.005, seed=1)
    r = approach3(obs, n_bootstrap=12, seed=0)
    assert r.n_bootstrap_ok == 12
    for name in ("alpha", "beta", "E", "n_exponent"):
        lo, hi = r.ci[name]
        assert lo <= getattr(r, name) <= hi
    assert r.ci["alpha"][1] - r.ci["alpha"][0] < 0.1


def test_objective_gradient_matches_finite_differences(synth):
    obs = synth.sample(CHINCHILLA, BUDGETS[:3], sigma=0.01, seed=2, n_per=4)
    args = (np.log(obs.params), np.log(obs.tokens), np.log(obs.loss), 1e-3)
    theta = np.array([0.4, 5.5, 6.2, 0.31, 0.29])
    _f0, g = objective(theta, *args)
    eps = 1e-7
    num = [(objective(theta + eps * e, *args)[0] - objective(theta - eps * e, *args)[0]) / (2 * eps) for e in np.eye(5)]
    assert np.allclose(g, num, rtol=1e-4, atol=1e-6)


def test_soda_reference_prefactors_reproduce_paper_statements():
    n_law, d_law = soda_reference()
    assert (n_law.exponent, d_law.exponent) == (0.367, 0.579)
    assert d_law(1e20) / n_law(1e20) == pytest.approx(13, rel=0.05)
    assert d_law(1e23) / n_law(1e23) == pytest.approx(58, rel=0.05)


def test_chinchilla_closed_form_is_the_constrained_minimum():
    c = 1e21
    n_opt, _d_opt = CHINCHILLA.optimal(c, 6.0)
    n = n_opt * np.logspace(-0.3, 0.3, 61)
    losses = CHINCHILLA.loss(n, c / (6 * n))
    assert abs(np.argmin(losses) - 30) <= 1
