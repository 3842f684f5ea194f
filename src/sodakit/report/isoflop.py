"""The report's IsoFLOP section, read from what the project's IsoFLOP tools write.

Three layouts are recognised (any directory holding one of them, or a JSON file inside it):

- a fit directory, `sodakit isoflop fit RESULTS --out DIR`: `fit.json` + `isoflop_profiles.png`,
  `optimal_vs_compute.png`, `parametric_contours.png`;
- a study directory, `scripts/isoflop_mini_study.py` (default `runs/isoflop-mini`): `summary.json`,
  `loss_vs_steps.png` and the fit directories `fit_audio/` (audio-token loss, the primary fit) and `fit/`
  (all tokens);
- the study's copy for the docs (`--docs docs/isoflop`): `mini_study_summary.json` + `audio_*.png`,
  `all_tokens_*.png`, `loss_vs_steps.png`.

`isoflop_section(path)` returns the dict `build_report` renders under "isoflop": the plots, the fitted
exponents with their intervals beside SODA's, sweep statistics, warnings and the source path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sodakit.scaling.laws import SODA_D_EXPONENT, SODA_N_EXPONENT

HOW_TO = ("`python scripts/isoflop_mini_study.py` runs the laptop IsoFLOP study offline (about 70 minutes on "
          "one core, 35 with --workers 2; writes runs/isoflop-mini), or `sodakit isoflop plan -> run -> fit "
          "RESULTS --out DIR` fits a sweep of your own; rerun the demo with isoflop=DIR (a fit or study "
          "directory) to show it here.")

# Study subdirectories, primary fit first.
_STUDY_FITS = (("fit_audio", "audio tokens"), ("fit", "all tokens"))
_STUDY_SUMMARY_KEYS = (("fit_audio_tokens", "audio tokens"), ("fit_all_tokens", "all tokens"))


def _plot_order(p: Path) -> tuple[int, str]:
    """Primary (audio-token) plots first, then all-token plots, then anything else."""
    name = p.name
    return (0 if name.startswith("audio") else 1 if name.startswith("all_tokens") else 2, name)


def _ci(v: Any) -> list[float] | None:
    if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return [float(v[0]), float(v[1])]
    return None


def _row(fit: str, n: Any, n_ci: Any, d: Any, d_ci: Any) -> dict | None:
    if not isinstance(n, int | float) or not isinstance(d, int | float):
        return None
    return {"fit": fit, "N_exponent": float(n), "N_exponent_ci": _ci(n_ci),
            "D_exponent": float(d), "D_exponent_ci": _ci(d_ci)}


def _approach3_row(label: str, a3: dict) -> dict | None:
    ci = a3.get("ci") or {}
    return _row(f"{label}, Approach 3 (parametric law, implied)", a3.get("n_exponent"), ci.get("n_exponent"),
                a3.get("d_exponent"), ci.get("d_exponent"))


def exponents_from_summary(summary: dict) -> list[dict]:
    """Rows from a mini-study summary (`summary.json` / `mini_study_summary.json`)."""
    rows = []
    for key, label in _STUDY_SUMMARY_KEYS:
        fit = summary.get(key) or {}
        a2 = fit.get("approach2") or {}
        rows.append(_row(f"{label}, Approach 2 (IsoFLOP minima)", a2.get("N_exponent"), a2.get("N_exponent_ci"),
                         a2.get("D_exponent"), a2.get("D_exponent_ci")))
        rows.append(_approach3_row(label, fit.get("approach3") or {}))
    return [r for r in rows if r]


def exponents_from_fit(fit: dict, label: str) -> list[dict]:
    """Rows from a `sodakit isoflop fit` fit.json."""
    a2 = fit.get("approach2") or {}
    n, d = a2.get("n_opt") or {}, a2.get("d_opt") or {}
    rows = [_row(f"{label}, Approach 2 (IsoFLOP minima)", n.get("exponent"), n.get("exponent_ci"),
                 d.get("exponent"), d.get("exponent_ci")),
            _approach3_row(label, fit.get("approach3") or {})]
    return [r for r in rows if r]


def _fit_label(fit: dict, fallback: str) -> str:
    loss = ((fit.get("data") or {}).get("columns") or {}).get("loss")
    return {"loss_audio": "audio tokens", "loss": "all tokens"}.get(loss, f"{fallback} ({loss})" if loss else fallback)


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problems.append(f"{path}: unreadable ({e})")
        return None
    return data if isinstance(data, dict) else None


def isoflop_section(path: str | Path) -> dict | None:
    """The report section for the IsoFLOP outputs at `path`, or None when it holds no plot and no fit."""
    root = Path(path).resolve()
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        return None
    problems: list[str] = []
    plots: list[Path] = []
    exponents: list[dict] = []
    warnings: list[str] = []
    stats: dict[str, Any] = {}

    fit_dirs = [(root / sub, label) for sub, label in _STUDY_FITS if (root / sub).is_dir()]
    for d, _ in fit_dirs:
        plots += sorted(d.glob("*.png"))
    plots += sorted(root.glob("*.png"), key=_plot_order)

    summary = None
    for name in ("summary.json", "mini_study_summary.json"):
        if (root / name).is_file():
            data = _read_json(root / name, problems)
            if data and any(k in data for k, _ in _STUDY_SUMMARY_KEYS):
                summary, summary_path = data, root / name
                break
    if summary is not None:
        exponents = exponents_from_summary(summary)
        for key, label in _STUDY_SUMMARY_KEYS:
            warnings += [f"{label}: {w}" for w in (summary.get(key) or {}).get("warnings", [])]
        sweep = summary.get("sweep") or {}
        stats = {"fitted from": str(summary_path), "primary fit": summary.get("primary"),
                 **{f"sweep {k}": f"{v:.3g}" if k == "flops" and isinstance(v, int | float) else v
                    for k, v in sweep.items() if not isinstance(v, dict | list)}}
    else:
        for d, label in [(root, "fit"), *fit_dirs]:
            if (d / "fit.json").is_file():
                fit = _read_json(d / "fit.json", problems)
                if fit:
                    lab = _fit_label(fit, label)
                    exponents += exponents_from_fit(fit, lab)
                    warnings += [f"{lab}: {w}" for w in fit.get("warnings", [])]
                    stats[f"{lab}: fitted from"] = str(d / "fit.json")
                    stats[f"{lab}: runs"] = (fit.get("data") or {}).get("n_runs")
    if not plots and not exponents:
        return None
    section: dict[str, Any] = {
        "source": str(root),
        "plots": [str(p) for p in plots],
        "reference": {"fit": "SODA (published, Approach 2)", "N_exponent": SODA_N_EXPONENT,
                      "D_exponent": SODA_D_EXPONENT},
        "exponents": exponents,
        "summary": {k: v for k, v in stats.items() if v is not None},
        "warnings": warnings + problems,
    }
    return section


def missing_section(looked_in: list[Path]) -> dict:
    where = ", ".join(str(p) for p in looked_in) or "nowhere"
    return {"message": f"No IsoFLOP sweep found (looked in {where}). {HOW_TO}"}
