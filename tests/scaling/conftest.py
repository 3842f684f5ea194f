"""Synthetic IsoFLOP results drawn from a known law L(N, D), offered to the tests as the `synth` fixture."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sodakit.scaling.laws import ParametricLaw
from sodakit.scaling.results import Observations, observations_from_arrays


def isoflop_grid(law: ParametricLaw, budgets, n_per: int = 7, span: float = 0.8, k: float = 6.0):
    """Per budget, `n_per` sizes log-spaced +-`span` decades around the true optimum; D = C / (k N)."""
    rows = []
    for c in budgets:
        n0, _ = law.optimal(c, k)
        for x in np.linspace(-span, span, n_per):
            n = float(n0 * 10**x)
            rows.append((float(c), n, c / (k * n)))
    return rows


def sample(law: ParametricLaw, budgets, sigma: float = 0.005, seed: int = 0, **kw) -> Observations:
    """Observations with multiplicative log-normal noise of scale `sigma` on the loss."""
    rng = np.random.default_rng(seed)
    rows = isoflop_grid(law, budgets, **kw)
    c, n, d = (np.array(v) for v in zip(*rows))
    loss = law.loss(n, d) * np.exp(sigma * rng.standard_normal(len(n)))
    return observations_from_arrays(6 * n * d, n, loss, tokens=d, budget=c, flop_convention="6N")


def write_csv(path: Path, obs: Observations, convention: str | list[str] = "6N", drop: tuple[str, ...] = ()) -> Path:
    cols = [c for c in ("run_id", "budget", "flop_convention", "params", "tokens", "flops", "loss") if c not in drop]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(len(obs)):
            conv = convention[i] if isinstance(convention, list) else convention
            row = {"run_id": f"run{i}", "budget": repr(float(obs.budget[i])), "flop_convention": conv,
                   "params": repr(float(obs.params[i])), "tokens": repr(float(obs.tokens[i])),
                   "flops": repr(float(obs.flops[i])), "loss": repr(float(obs.loss[i]))}
            w.writerow([row[c] for c in cols])
    return path


@pytest.fixture
def synth() -> SimpleNamespace:
    return SimpleNamespace(sample=sample, write_csv=write_csv, isoflop_grid=isoflop_grid)
