"""Fit orchestration and the fit record (fit.json): both approaches, their settings, data checksum,
FLOP convention, warnings and the published reference values, in one JSON document.

`fit.json` layout (format "sodakit.isoflop.fit/1"; NaN is written as null):

    flop_convention, params_kind      how C and N were counted (every fit carries them)
    data                              source path, sha256, runs, budgets, column names
    settings                          bootstrap samples, seed, confidence, Huber delta, approaches
    warnings                          every warning of reading and fitting, also printed
    approach2                         profiles (per budget: status, used, N*, D*, L*, intervals, parabolas),
                                      n_opt / d_opt / loss_opt power laws {coef, exponent, *_ci}
    approach3                         E, A, B, alpha, beta, n_exponent, d_exponent, k, ci {...}
    reference                         SODA's published exponents (+ derived prefactors), Chinchilla's law
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sodakit import __version__
from sodakit.config import atomic_write_text
from sodakit.scaling.approach2 import Approach2Result, approach2
from sodakit.scaling.approach3 import HUBER_DELTA, Approach3Result, approach3
from sodakit.scaling.laws import CHINCHILLA, SODA_TOKENS_PER_PARAM, ParametricLaw, PowerLaw, soda_reference
from sodakit.scaling.results import Columns, Observations

FIT_FORMAT = "sodakit.isoflop.fit/1"
PARAMS_KINDS = ("total", "non_embedding")


@dataclass
class FitSettings:
    approaches: tuple[int, ...] = (2, 3)
    # Approach 2's bootstrap is cheap (polynomial fits); Approach 3's costs ~50 ms per sample.
    bootstrap: int = 200
    seed: int = 0
    confidence: float = 0.95
    huber_delta: float = HUBER_DELTA
    params_kind: str = "total"
    strict: bool = False

    def __post_init__(self) -> None:
        if self.params_kind not in PARAMS_KINDS:
            raise ValueError(f"params_kind must be one of {PARAMS_KINDS}, got {self.params_kind!r}")
        bad = [a for a in self.approaches if a not in (2, 3)]
        if bad or not self.approaches:
            raise ValueError(f"approaches must be a non-empty subset of (2, 3), got {self.approaches}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")


@dataclass
class FitReport:
    obs: Observations
    settings: FitSettings
    columns: Columns
    approach2: Approach2Result | None = None
    approach3: Approach3Result | None = None
    warnings: list[str] = field(default_factory=list)


def fit_all(obs: Observations, settings: FitSettings, columns: Columns | None = None) -> FitReport:
    """Run the requested approaches; a FitError from either propagates (clear message, no partial fit)."""
    report = FitReport(obs=obs, settings=settings, columns=columns or Columns(), warnings=list(obs.warnings))
    if 2 in settings.approaches:
        report.approach2 = approach2(obs, settings.bootstrap, settings.seed, settings.confidence, settings.strict)
        report.warnings += report.approach2.warnings
    if 3 in settings.approaches:
        report.approach3 = approach3(
            obs, settings.bootstrap, settings.seed, settings.confidence, settings.huber_delta,
            params_kind=settings.params_kind, strict=settings.strict,
        )
        report.warnings += report.approach3.warnings
    return report


def _clean(x: Any) -> Any:
    """JSON-safe: dataclasses to dicts, tuples to lists, NaN/inf to None."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _clean(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item"):  # numpy scalars
        return _clean(x.item())
    return x


def reference_record() -> dict[str, Any]:
    n_law, d_law = soda_reference()
    return {
        "soda": {
            "n_opt": {"coef": n_law.coef, "exponent": n_law.exponent},
            "d_opt": {"coef": d_law.coef, "exponent": d_law.exponent},
            "flop_convention": "soda",
            "prefactors": (
                "derived from the paper's tokens-per-parameter statements "
                f"{[list(t) for t in SODA_TOKENS_PER_PARAM]} assuming C = 6ND at each anchor "
                "(geometric mean over anchors); exponents as published"
            ),
        },
        "chinchilla": {
            **dataclasses.asdict(CHINCHILLA),
            "n_exponent": CHINCHILLA.n_exponent,
            "d_exponent": CHINCHILLA.d_exponent,
            "flop_convention": "6N",
            "source": "Hoffmann et al. 2022, Approach 3 (C = 6ND)",
        },
    }


def report_to_json(report: FitReport) -> dict[str, Any]:
    obs = report.obs
    return _clean({
        "format": FIT_FORMAT,
        "created_by": f"sodakit {__version__}",
        "flop_convention": obs.flop_convention,
        "params_kind": report.settings.params_kind,
        "data": {
            "source": obs.source,
            "sha256": obs.sha256,
            "n_runs": len(obs),
            "budgets": obs.budgets,
            "columns": dataclasses.asdict(report.columns),
        },
        "settings": dataclasses.asdict(report.settings),
        "warnings": report.warnings,
        "approach2": report.approach2,
        "approach3": report.approach3,
        "reference": reference_record(),
    })


def write_fit(report: FitReport, path: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    record = report_to_json(report) | _clean(extra or {})
    atomic_write_text(Path(path), json.dumps(record, indent=1) + "\n")
    return record


# ---- reading a fit back (for predict) ----------------------------------------------------------------
@dataclass
class LoadedFit:
    path: str
    flop_convention: str
    params_kind: str
    budgets: list[float]
    n_opt: PowerLaw | None  # Approach 2
    d_opt: PowerLaw | None
    loss_opt: PowerLaw | None
    law: ParametricLaw | None  # Approach 3
    k: float | None
    record: dict[str, Any]


def _law(d: dict | None) -> PowerLaw | None:
    if not d:
        return None
    return PowerLaw(float(d["coef"]), float(d["exponent"]))


def load_fit(path: str | Path) -> LoadedFit:
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"fit file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"fit file {path}: not valid JSON ({e})") from e
    if not isinstance(rec, dict) or rec.get("format") != FIT_FORMAT:
        raise ValueError(f"fit file {path}: expected format {FIT_FORMAT!r} (written by `sodakit isoflop fit`)")
    try:
        a2, a3 = rec.get("approach2"), rec.get("approach3")
        law = k = None
        if a3:
            law = ParametricLaw(*(float(a3[x]) for x in ("E", "A", "B", "alpha", "beta")))
            k = float(a3["k"])
        return LoadedFit(
            path=str(path), flop_convention=rec["flop_convention"], params_kind=rec["params_kind"],
            budgets=[float(b) for b in rec["data"]["budgets"]],
            n_opt=_law(a2["n_opt"]) if a2 else None, d_opt=_law(a2["d_opt"]) if a2 else None,
            loss_opt=_law(a2["loss_opt"]) if a2 else None, law=law, k=k, record=rec,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"fit file {path}: malformed ({e!r})") from e


def format_report(report: FitReport) -> str:
    """Human-readable summary of a fit."""
    obs = report.obs
    conf = f"{report.settings.confidence:.0%}"
    lines = [
        f"IsoFLOP fit of {len(obs)} runs over {len(obs.budgets)} budgets from {obs.source} "
        f"(FLOP convention {obs.flop_convention}, N = {report.settings.params_kind} parameters)"
    ]

    def ci(t) -> str:
        return f"[{t[0]:.4g}, {t[1]:.4g}]" if t and all(math.isfinite(v) for v in t) else "[n/a]"

    a2 = report.approach2
    if a2 is not None:
        lines.append(f"Approach 2 (IsoFLOP profiles; {a2.n_bootstrap_ok}/{a2.n_bootstrap} bootstrap samples, {conf} CI):")
        lines.append(f"  {'budget':>10} {'runs':>4} {'status':<20} {'N*':>10} {'D*':>10} {'L*':>8}")
        for p in a2.profiles:
            lines.append(
                f"  {p.budget:10.3e} {p.n_points:4d} {p.status:<20} {p.n_opt:10.3e} {p.d_opt:10.3e} {p.loss_opt:8.4f}"
            )
        lines.append(f"  N* = {a2.n_opt.coef:.4g} * C^{a2.n_opt.exponent:.4f}   exponent {conf} CI {ci(a2.n_opt.exponent_ci)}")
        lines.append(f"  D* = {a2.d_opt.coef:.4g} * C^{a2.d_opt.exponent:.4f}   exponent {conf} CI {ci(a2.d_opt.exponent_ci)}")
        lines.append(f"  L* = {a2.loss_opt.coef:.4g} * C^{a2.loss_opt.exponent:.4f}")
    a3 = report.approach3
    if a3 is not None:
        c = a3.ci
        lines.append(f"Approach 3 (L = E + A/N^alpha + B/D^beta; {a3.n_bootstrap_ok}/{a3.n_bootstrap} bootstrap samples):")
        for name in ("E", "A", "B", "alpha", "beta"):
            lines.append(f"  {name:<6} = {getattr(a3, name):.4g}  {conf} CI {ci(c.get(name))}")
        lines.append(f"  N* ~ C^{a3.n_exponent:.4f} {ci(c.get('n_exponent'))}   D* ~ C^{a3.d_exponent:.4f} {ci(c.get('d_exponent'))}")
        lines.append(f"  RMS log-residual {a3.rmse_log:.4f}; compute model C = {a3.k:.3g} N D ({a3.k_source})")
    lines.append("Reference: SODA N* ~ C^0.367, D* ~ C^0.579; Chinchilla (Approach 3) N* ~ C^0.452, D* ~ C^0.548")
    for w in report.warnings:
        lines.append(f"WARNING: {w}")
    return "\n".join(lines)
