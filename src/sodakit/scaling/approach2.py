"""Chinchilla "Approach 2": IsoFLOP profiles.

Per budget C: fit a parabola of loss in x = ln N (and separately in x = ln D); its vertex gives
N*(C) (resp. D*(C)) and the loss there L*(C). Across budgets: least squares of ln N* on ln C gives
N* = a_N * C^b_N (and D* = a_D * C^b_D, L* = a_L * C^b_L as a descriptive trend).

A budget takes part in the cross-budget regression only if its parabola is convex and its vertex lies
inside the sampled range (an extrapolated vertex is not a measurement); otherwise it is reported with
its status and a warning. Confidence intervals: residual bootstrap within each budget (the trained
sizes stay fixed, the parabola's residuals are resampled with replacement, rescaled by sqrt(n/(n-3))),
refitting every profile and the power laws; percentile intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sodakit.scaling.laws import FitError, PowerLaw, fit_power_law
from sodakit.scaling.results import Observations

MIN_POINTS = 3  # a parabola has 3 coefficients
# Below this t statistic of the quadratic term a profile's minimum is flagged (kept, with a warning).
MIN_CURVATURE_T = 2.0


@dataclass
class Parabola:
    """loss = a*(x - x0)^2 + b*(x - x0) + c, with x0 the mean of the sampled x (for conditioning)."""

    a: float
    b: float
    c: float
    x0: float
    x_lo: float
    x_hi: float

    @property
    def convex(self) -> bool:
        return self.a > 0

    @property
    def vertex_x(self) -> float:
        return self.x0 - self.b / (2 * self.a) if self.a != 0 else math.nan

    @property
    def vertex_y(self) -> float:
        if self.a == 0:
            return math.nan
        return self.c - self.b**2 / (4 * self.a)

    @property
    def interior(self) -> bool:
        return self.convex and self.x_lo < self.vertex_x < self.x_hi

    def __call__(self, x: np.ndarray) -> np.ndarray:
        u = np.asarray(x) - self.x0
        return self.a * u**2 + self.b * u + self.c


def fit_parabola(x: np.ndarray, y: np.ndarray) -> Parabola:
    x0 = float(np.mean(x))
    a, b, c = np.polyfit(x - x0, y, 2)
    return Parabola(float(a), float(b), float(c), x0, float(np.min(x)), float(np.max(x)))


def curvature_t(p: Parabola, x: np.ndarray, y: np.ndarray) -> float:
    """t statistic of the quadratic coefficient (a / its standard error); nan with < 4 points."""
    n = len(x)
    if n <= 3:
        return math.nan
    u = np.asarray(x) - p.x0
    design = np.stack([u**2, u, np.ones_like(u)], axis=1)
    resid = np.asarray(y) - p(x)
    s2 = float(resid @ resid) / (n - 3)
    cov = s2 * np.linalg.pinv(design.T @ design)
    se = math.sqrt(max(cov[0, 0], 0.0))
    return p.a / se if se > 0 else math.inf


def _status(p: Parabola) -> str:
    if not p.convex:
        return "not_convex"
    if not p.interior:
        return "no_interior_minimum"
    return "ok"


@dataclass
class Profile:
    budget: float
    n_points: int
    status: str  # ok | too_few_points | not_convex | no_interior_minimum
    used: bool  # takes part in the cross-budget regression
    n_opt: float = math.nan
    d_opt: float = math.nan
    loss_opt: float = math.nan
    n_status: str = ""
    d_status: str = ""
    # a / se(a) of the parabola in ln N: below ~2 the "minimum" may be noise.
    curvature_t: float = math.nan
    parabola_n: Parabola | None = None
    parabola_d: Parabola | None = None
    # Bootstrap percentile intervals (filled by approach2()).
    n_opt_ci: tuple[float, float] = (math.nan, math.nan)
    d_opt_ci: tuple[float, float] = (math.nan, math.nan)


def fit_profile(budget: float, logn: np.ndarray, logd: np.ndarray, loss: np.ndarray) -> Profile:
    n_distinct = min(len(np.unique(np.round(logn, 9))), len(np.unique(np.round(logd, 9))))
    if n_distinct < MIN_POINTS:
        return Profile(budget, len(loss), "too_few_points", False)
    pn = fit_parabola(logn, loss)
    pd = fit_parabola(logd, loss)
    sn, sd = _status(pn), _status(pd)
    status = sn if sn != "ok" else sd
    return Profile(
        budget=budget, n_points=len(loss), status=status, used=status == "ok",
        n_opt=math.exp(pn.vertex_x) if pn.convex else math.nan,
        d_opt=math.exp(pd.vertex_x) if pd.convex else math.nan,
        loss_opt=pn.vertex_y if pn.convex else math.nan,
        n_status=sn, d_status=sd, parabola_n=pn, parabola_d=pd, curvature_t=curvature_t(pn, logn, loss),
    )


@dataclass
class Approach2Result:
    profiles: list[Profile]
    n_opt: PowerLaw
    d_opt: PowerLaw
    loss_opt: PowerLaw
    budgets_used: list[float]
    n_bootstrap: int
    n_bootstrap_ok: int
    confidence: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


def _profiles(obs: Observations) -> list[Profile]:
    out = []
    logn, logd = np.log(obs.params), np.log(obs.tokens)
    for b in obs.budgets:
        m = obs.budget == b
        out.append(fit_profile(b, logn[m], logd[m], obs.loss[m]))
    return out


def _cross_budget(profiles: list[Profile]) -> tuple[PowerLaw, PowerLaw, PowerLaw]:
    used = [p for p in profiles if p.used]
    c = np.array([p.budget for p in used])
    return (
        fit_power_law(c, np.array([p.n_opt for p in used])),
        fit_power_law(c, np.array([p.d_opt for p in used])),
        fit_power_law(c, np.array([p.loss_opt for p in used])),
    )


def _interval(samples: list[float], confidence: float) -> tuple[float, float]:
    if not samples:
        return (math.nan, math.nan)
    lo = (1 - confidence) / 2 * 100
    q = np.percentile(np.asarray(samples), [lo, 100 - lo])
    return (float(q[0]), float(q[1]))


def approach2(
    obs: Observations, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95, strict: bool = False
) -> Approach2Result:
    """Fit IsoFLOP profiles and the N*/D* power laws. `strict` turns every warning into an error."""
    budgets = obs.budgets
    if len(budgets) < 2:
        raise FitError(
            f"Approach 2 needs runs at >= 2 compute budgets to fit N* ~ C^b; got one budget ({budgets[0]:.3e})"
        )
    profiles = _profiles(obs)
    warnings = _profile_warnings(profiles)
    used = [p for p in profiles if p.used]
    if strict and warnings:
        raise FitError("; ".join(warnings))
    if len(used) < 2:
        raise FitError(
            f"Approach 2: only {len(used)} budget(s) have a usable IsoFLOP minimum "
            f"(need >= 2): " + ("; ".join(warnings) if warnings else "")
        )
    if len(used) == 2:
        warnings.append("only 2 budgets usable: the power laws pass exactly through them (no residual check)")
    laws = _cross_budget(profiles)
    ok = _bootstrap_intervals(obs, used, laws, n_bootstrap, seed, confidence, warnings)
    n_law, d_law, l_law = laws
    return Approach2Result(
        profiles=profiles, n_opt=n_law, d_opt=d_law, loss_opt=l_law, budgets_used=[p.budget for p in used],
        n_bootstrap=n_bootstrap, n_bootstrap_ok=ok, confidence=confidence, warnings=warnings,
    )


def _profile_warnings(profiles: list[Profile]) -> list[str]:
    """Why each excluded budget is out, then which kept minima are not significant."""
    warnings = []
    for p in profiles:
        if p.status == "too_few_points":
            warnings.append(
                f"budget {p.budget:.3e}: only {p.n_points} run(s) with distinct sizes (< {MIN_POINTS}); "
                "no parabola fitted, budget excluded"
            )
        elif p.status == "not_convex":
            warnings.append(
                f"budget {p.budget:.3e}: loss profile is not convex (parabola opens downward in "
                f"{'ln N' if p.n_status == 'not_convex' else 'ln D'}); budget excluded"
            )
        elif p.status == "no_interior_minimum":
            which = "ln N" if p.n_status != "ok" else "ln D"
            warnings.append(
                f"budget {p.budget:.3e}: the parabola's minimum in {which} lies outside the sampled range "
                f"(extrapolated N* {p.n_opt:.3e}, D* {p.d_opt:.3e}); budget excluded - add runs on the "
                "other side of the minimum"
            )
    for p in profiles:
        if p.used and p.curvature_t < MIN_CURVATURE_T:
            warnings.append(
                f"budget {p.budget:.3e}: the profile's curvature is not significant (t = {p.curvature_t:.2f} "
                f"< {MIN_CURVATURE_T}); its minimum may be noise - widen the size range or add runs"
            )
    return warnings


def _residual_design(obs: Observations, used: list[Profile], warnings: list[str]) -> dict[float, tuple]:
    """{budget: (ln N, ln D, fitted loss, rescaled residuals)} of the budgets in the regression."""
    logn, logd = np.log(obs.params), np.log(obs.tokens)
    design = {}
    for p in used:
        m = obs.budget == p.budget
        fitted = p.parabola_n(logn[m])
        resid = obs.loss[m] - fitted
        k = int(m.sum())
        if k == MIN_POINTS:
            warnings.append(
                f"budget {p.budget:.3e}: exactly {MIN_POINTS} runs, so the parabola interpolates them and the "
                "bootstrap sees no noise there; its interval is too narrow"
            )
        # Residuals of a 3-parameter fit underestimate the noise; rescale by sqrt(n / (n - 3)).
        resid = resid * math.sqrt(k / (k - MIN_POINTS)) if k > MIN_POINTS else resid
        design[p.budget] = (logn[m], logd[m], fitted, resid)
    return design


def _bootstrap_intervals(obs: Observations, used: list[Profile], laws: tuple[PowerLaw, PowerLaw, PowerLaw],
                         n_bootstrap: int, seed: int, confidence: float, warnings: list[str]) -> int:
    """Fill the intervals of the power laws and of each used budget's N*, D*; returns the number of
    resamples in which every budget's profile stayed convex."""
    # Residual bootstrap within each budget: the design (which sizes were trained) is fixed, the noise
    # is resampled. Resampling runs instead would often leave < 3 distinct sizes in a budget.
    rng = np.random.default_rng(seed)
    design = _residual_design(obs, used, warnings)
    samples: dict[str, list[float]] = {k: [] for k in ("bn", "an", "bd", "ad", "bl", "al")}
    per_budget: dict[float, tuple[list[float], list[float]]] = {p.budget: ([], []) for p in used}
    ok = 0
    for _ in range(n_bootstrap):
        boot: list[Profile] = []
        for b, (xn, xd, fitted, resid) in design.items():
            y = fitted + rng.choice(resid, size=len(resid), replace=True)
            p = fit_profile(b, xn, xd, y)
            # Keep extrapolated vertices (part of the uncertainty) but require a convex parabola.
            if p.status == "not_convex":
                break
            p.used = True
            boot.append(p)
        else:
            ok += 1
            bn, bd, bl = _cross_budget(boot)
            for key, law in (("n", bn), ("d", bd), ("l", bl)):
                samples["b" + key].append(law.exponent)
                samples["a" + key].append(law.coef)
            for p in boot:
                per_budget[p.budget][0].append(p.n_opt)
                per_budget[p.budget][1].append(p.d_opt)
    if n_bootstrap:
        failed = n_bootstrap - ok
        if failed > 0.1 * n_bootstrap:
            warnings.append(
                f"{failed} of {n_bootstrap} bootstrap resamples had a budget whose profile was not convex; "
                "intervals come from the remaining ones and are likely too narrow"
            )
        for key, law in zip("ndl", laws, strict=True):
            law.exponent_ci = _interval(samples["b" + key], confidence)
            law.coef_ci = _interval(samples["a" + key], confidence)
        for p in used:
            p.n_opt_ci = _interval(per_budget[p.budget][0], confidence)
            p.d_opt_ci = _interval(per_budget[p.budget][1], confidence)
    return ok
