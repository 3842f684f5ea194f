"""Chinchilla "Approach 3": the parametric law L(N, D) = E + A/N^alpha + B/D^beta.

Fitted as in Hoffmann et al. (2022) and the Epoch AI replication (Besiroglu et al. 2024): with
E = e^e, A = e^a, B = e^b the prediction in log space is

    log L_hat = LSE(a - alpha*ln N, b - beta*ln D, e)

and the objective is the Huber loss (delta = 1e-3) of log L_hat - log L, summed over runs, minimised
with L-BFGS (scipy, analytic gradient). Starting points: Chinchilla's grid (alpha, beta in
{0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1.5}, a, b in {0, 5, ..., 25}: 5,400 points); the objective is
evaluated on the whole grid (vectorised) and L-BFGS runs from the `top_k` best grid points (32 by
default: running it from all 5,400 costs minutes and, in our tests, never found a better minimum).
Confidence intervals: bootstrap over runs (resampled with replacement), each refit started from the
full-data solution and the best grid point for that resample; percentile intervals.

The compute constraint used to turn L(N, D) into N*(C), D*(C) is C = k*N*D. For the 6N convention with
total N, k = 6 exactly; otherwise k is the median of C/(N*D) over the data (recorded with its range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from sodakit.scaling.laws import FitError, ParametricLaw
from sodakit.scaling.results import Observations

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022
MIN_POINTS = 6  # 5 parameters + at least one degree of freedom
# Bootstrap refits start from the full-data solution and this many best grid points of the resample.
BOOT_STARTS = 1

_GRID = np.array(
    np.meshgrid(
        np.arange(-1.0, 1.51, 0.5),  # e
        np.arange(0.0, 25.1, 5.0),  # a
        np.arange(0.0, 25.1, 5.0),  # b
        np.arange(0.0, 2.01, 0.5),  # alpha
        np.arange(0.0, 2.01, 0.5),  # beta
        indexing="ij",
    )
).reshape(5, -1).T  # [5400, 5] rows of (e, a, b, alpha, beta)

# alpha, beta >= 0 (a negative exponent would make loss grow with scale); the rest free.
_BOUNDS = [(None, None), (None, None), (None, None), (0.0, 10.0), (0.0, 10.0)]


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r**2, delta * (ar - 0.5 * delta))


def objective(theta: np.ndarray, logn: np.ndarray, logd: np.ndarray, logl: np.ndarray, delta: float):
    """Sum of Huber losses of the log-space residuals (scaled by 1/delta) and its gradient."""
    e, a, b, alpha, beta = theta
    t = np.stack([a - alpha * logn, b - beta * logd, np.full_like(logn, e)])
    m = t.max(axis=0)
    w = np.exp(t - m)
    s = w.sum(axis=0)
    r = m + np.log(s) - logl
    w /= s
    dh = np.clip(r, -delta, delta) / delta
    grad = np.array([
        np.sum(dh * w[2]),
        np.sum(dh * w[0]),
        np.sum(dh * w[1]),
        -np.sum(dh * w[0] * logn),
        -np.sum(dh * w[1] * logd),
    ])
    return float(np.sum(_huber(r, delta)) / delta), grad


def _grid_objective(logn, logd, logl, delta, grid=_GRID) -> np.ndarray:
    e, a, b, al, be = (grid[:, i : i + 1] for i in range(5))
    t1 = a - al * logn[None, :]
    t2 = b - be * logd[None, :]
    t3 = np.broadcast_to(e, t1.shape)
    lse = np.logaddexp(np.logaddexp(t1, t2), t3)
    return _huber(lse - logl[None, :], delta).sum(axis=1) / delta


def _one_blas_thread():
    """Single-threaded BLAS for the optimiser: L-BFGS-B's BLAS calls on 5x5 problems are ~8x slower
    with OpenBLAS threads on a busy CPU (measured 17.7 s -> 2.0 s for a fit with 20 bootstraps)."""
    return threadpool_limits(limits=1, user_api="blas")


def _lbfgs(theta0, logn, logd, logl, delta):
    res = minimize(
        objective, theta0, args=(logn, logd, logl, delta), jac=True, method="L-BFGS-B", bounds=_BOUNDS,
        options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8},
    )
    return res


# Starts that reach the same minimum end with objectives a few ulps apart, and a line search that stalls
# at the minimum reports ABNORMAL although it sits there (seen on one CPU: the lowest of 32 ends was
# ABNORMAL, max |gradient| 9e-6, and 30 others converged 4e-16 above it). Among ends within this relative
# distance of the lowest, one that reported convergence is taken.
_SAME_MINIMUM_RTOL = 1e-9


def _best_fit(logn, logd, logl, delta, starts: np.ndarray):
    ends = [res for res in (_lbfgs(t, logn, logd, logl, delta) for t in starts) if np.all(np.isfinite(res.x))]
    if not ends:
        return None
    lowest = min(res.fun for res in ends)
    same = [res for res in ends if res.fun <= lowest + _SAME_MINIMUM_RTOL * max(1.0, abs(lowest))]
    converged = [res for res in same if res.success]
    return min(converged or same, key=lambda res: res.fun)


@dataclass
class Approach3Result:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    converged: bool
    n_points: int
    huber_delta: float
    # C = k * N * D for the compute-optimal allocation.
    k: float
    k_source: str
    k_range: tuple[float, float]
    n_exponent: float  # beta / (alpha + beta)
    d_exponent: float  # alpha / (alpha + beta)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_bootstrap: int = 0
    n_bootstrap_ok: int = 0
    confidence: float = 0.95
    rmse_log: float = math.nan  # RMS of log L_hat - log L over the runs
    warnings: list[str] = field(default_factory=list)

    @property
    def law(self) -> ParametricLaw:
        return ParametricLaw(self.E, self.A, self.B, self.alpha, self.beta)

    def optimal(self, c):
        return self.law.optimal(c, self.k)


def _values(theta) -> dict[str, float]:
    e, a, b, alpha, beta = (float(v) for v in theta)
    return {
        "E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta,
        "n_exponent": beta / (alpha + beta) if alpha + beta > 0 else math.nan,
        "d_exponent": alpha / (alpha + beta) if alpha + beta > 0 else math.nan,
    }


def approach3(
    obs: Observations,
    n_bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    delta: float = HUBER_DELTA,
    top_k: int = 32,
    params_kind: str = "total",
    strict: bool = False,
) -> Approach3Result:
    """Fit L(N, D) to the runs. `params_kind` ("total"/"non_embedding") only selects how k is derived."""
    if len(obs.budgets) < 2:
        raise FitError(
            "Approach 3 needs runs at >= 2 compute budgets: on a single IsoFLOP line N and D are tied "
            "(D ~ C/N), so alpha and beta cannot be separated"
        )
    if len(obs) < MIN_POINTS:
        raise FitError(f"Approach 3 fits 5 parameters and needs >= {MIN_POINTS} runs; got {len(obs)}")
    with _one_blas_thread():
        return _approach3(obs, n_bootstrap, seed, confidence, delta, top_k, params_kind, strict)


def _approach3(obs, n_bootstrap, seed, confidence, delta, top_k, params_kind, strict) -> Approach3Result:
    warnings: list[str] = []
    logn, logd, logl = np.log(obs.params), np.log(obs.tokens), np.log(obs.loss)

    grid_obj = _grid_objective(logn, logd, logl, delta)
    starts = _GRID[np.argsort(grid_obj)[:top_k]]
    best = _best_fit(logn, logd, logl, delta, starts)
    if best is None:
        raise FitError("Approach 3: L-BFGS found no finite solution from any starting point")
    theta = best.x
    v = _values(theta)
    if v["alpha"] + v["beta"] <= 0:
        raise FitError("Approach 3: fitted alpha = beta = 0 (loss does not depend on N or D in this data)")
    for name in ("alpha", "beta"):
        if v[name] < 1e-3 or v[name] > 9.99:
            warnings.append(f"Approach 3: {name} = {v[name]:.3g} is at its bound; the law is not identified by this data")
    if not best.success:
        warnings.append(f"Approach 3: L-BFGS did not report convergence ({best.message})")
    resid = np.log(ParametricLaw(v["E"], v["A"], v["B"], v["alpha"], v["beta"]).loss(obs.params, obs.tokens)) - logl

    ratio = obs.flops / (obs.params * obs.tokens)
    if obs.flop_convention == "6N" and params_kind == "total":
        k, k_source = 6.0, "6N convention with total N: C = 6ND exactly"
    else:
        k = float(np.median(ratio))
        k_source = f"median of C/(N*D) over the runs ({obs.flop_convention} convention, {params_kind} N)"
        if ratio.max() / ratio.min() > 1.5:
            warnings.append(
                f"Approach 3: C/(N*D) ranges {ratio.min():.2f}..{ratio.max():.2f} over the runs, so C = k*N*D "
                f"with one k = {k:.2f} is a rough compute model; N*(C) and D*(C) inherit that approximation"
            )

    # Bootstrap over runs.
    rng = np.random.default_rng(seed)
    keys = ("E", "A", "B", "alpha", "beta", "n_exponent", "d_exponent")
    samples: dict[str, list[float]] = {k_: [] for k_ in keys}
    ok = 0
    n = len(obs)
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        if len(np.unique(obs.budget[idx])) < 2 or len(np.unique(idx)) < MIN_POINTS:
            continue
        bn, bd, bl = logn[idx], logd[idx], logl[idx]
        g = _grid_objective(bn, bd, bl, delta)
        s = np.vstack([theta[None, :], _GRID[np.argsort(g)[:BOOT_STARTS]]])
        res = _best_fit(bn, bd, bl, delta, s)
        if res is None:
            continue
        ok += 1
        vb = _values(res.x)
        for k_ in keys:
            samples[k_].append(vb[k_])
    ci: dict[str, tuple[float, float]] = {}
    if n_bootstrap:
        lo = (1 - confidence) / 2 * 100
        for k_ in keys:
            if samples[k_]:
                q = np.percentile(np.asarray(samples[k_]), [lo, 100 - lo])
                ci[k_] = (float(q[0]), float(q[1]))
        if ok < 0.9 * n_bootstrap:
            warnings.append(f"Approach 3: only {ok} of {n_bootstrap} bootstrap refits succeeded")
    if strict and warnings:
        raise FitError("; ".join(warnings))
    return Approach3Result(
        E=v["E"], A=v["A"], B=v["B"], alpha=v["alpha"], beta=v["beta"], objective=float(best.fun),
        converged=bool(best.success), n_points=n, huber_delta=delta, k=k, k_source=k_source,
        k_range=(float(ratio.min()), float(ratio.max())), n_exponent=v["n_exponent"], d_exponent=v["d_exponent"],
        ci=ci, n_bootstrap=n_bootstrap, n_bootstrap_ok=ok, confidence=confidence,
        rmse_log=float(np.sqrt(np.mean(resid**2))), warnings=warnings,
    )
