"""The report summary (see builder.py) of what sodakit wrote at one or several paths.

One path gives that thing's report: a training run (its settings, curves, validation, events and
config, all read from metrics.jsonl and config.yaml), an eval results JSON (scores beside the published
table, every task's details), an IsoFLOP fit or study, or a report summary as written (the demo's).
Several paths are set side by side: training runs overlaid in one figure with their numbers in columns
(a demo output contributes its training run and its evaluation), eval results as columns of one table,
IsoFLOP sections one after another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sodakit.report.isoflop import isoflop_section
from sodakit.report.sources import (
    EVAL,
    ISOFLOP,
    SUMMARY,
    TRAINING,
    ReportInputError,
    Source,
    detect,
    read_training_run,
)


def _unique_labels(sources: list[Source]) -> None:
    """Make the labels distinct (two runs called `train` become `a/train` and `b/train`, or numbered)."""
    seen: dict[str, int] = {}
    for s in sources:
        seen[s.label] = seen.get(s.label, 0) + 1
    for s in sources:
        if seen[s.label] > 1:
            where = s.path if s.path.is_dir() else s.path.parent
            s.label = f"{where.parent.name}/{where.name}" if s.kind != EVAL else f"{where.name}/{s.path.stem}"
    for i, s in enumerate(sources):
        if [t.label for t in sources].count(s.label) > 1:
            s.label = f"{s.label} ({i + 1})"


def _resolve(value: Any, base: Path) -> Any:
    """A summary's relative path made absolute against its file's directory (other values as they are)."""
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(base / value)
    return value


def _training_entry(source: Source) -> dict:
    run = read_training_run(source.path, source.label)
    return {"label": run.label, "metrics": str(source.path.resolve()), "info": run.info(), "config": run.config,
            "notes": run.notes}


def _summary_parts(source: Source) -> tuple[list[dict], list[dict], list[dict]]:
    """(training runs, evaluations, IsoFLOP sections) of a report summary, paths made absolute."""
    data = json.loads(source.path.read_text())
    base = source.path.parent
    training, evaluation, iso = [], [], []
    t = data.get("training") or {}
    for i, entry in enumerate(t["runs"] if isinstance(t.get("runs"), list) else ([t] if t else [])):
        label = source.label if len(t.get("runs") or [entry]) == 1 else f"{source.label}: {entry.get('label', i + 1)}"
        training.append({**entry, "label": label, "metrics": _resolve(entry.get("metrics"), base),
                         "config": _resolve(entry.get("config"), base)})
    e = data.get("evaluation") or {}
    if e.get("scores") or e.get("results"):
        evaluation.append({"label": source.label, "scores": e.get("scores"), "coverage": e.get("coverage"),
                           "results": _resolve(e.get("results"), base)})
    sections = data.get("isoflop") or []
    iso = [s for s in (sections if isinstance(sections, list) else [sections]) if s.get("plots") or s.get("exponents")]
    iso = [{**s, "plots": [_resolve(p, base) for p in s.get("plots") or []]} for s in iso]
    return training, evaluation, iso


def compose(paths: list[str | Path], title: str | None = None) -> tuple[dict, Path]:
    """(summary, directory its relative paths are relative to) for the report of `paths`."""
    if not paths:
        raise ReportInputError("report: name at least one path (a run directory, results JSON, IsoFLOP or demo output)")
    sources = [detect(p) for p in paths]
    _unique_labels(sources)
    if len(sources) == 1:
        return _single(sources[0], title)
    training, evaluation, iso = [], [], []
    for s in sources:
        if s.kind == TRAINING:
            training.append(_training_entry(s))
        elif s.kind == EVAL:
            evaluation.append({"label": s.label, "results": str(s.path.resolve())})
        elif s.kind == ISOFLOP:
            iso.append(isoflop_section(s.path))
        else:
            t, e, i = _summary_parts(s)
            training += t
            evaluation += e
            iso += i
    unique_iso, seen = [], set()
    for section in iso:
        if section and section.get("source") not in seen:
            seen.add(section.get("source"))
            unique_iso.append(section)
    summary: dict[str, Any] = {
        "title": title or "Comparison: " + ", ".join(s.label for s in sources),
        "subtitle": "; ".join(f"{s.label} = {s.kind} at {s.path}" for s in sources),
    }
    if training:
        summary["training"] = {"runs": training}
    if evaluation:
        summary["evaluation"] = {"runs": evaluation}
    if unique_iso:
        summary["isoflop"] = unique_iso
    return summary, Path.cwd()


def _single(source: Source, title: str | None) -> tuple[dict, Path]:
    if source.kind == SUMMARY:
        summary = json.loads(source.path.read_text())
        if title:
            summary["title"] = title
        return summary, source.path.parent
    if source.kind == TRAINING:
        entry = _training_entry(source)
        steps = entry["info"].get("steps")
        return {"title": title or f"Training run {source.label}",
                "subtitle": f"{source.path.parent}" + (f": step {steps}" if steps is not None else ""),
                "training": entry}, source.path.parent
    if source.kind == EVAL:
        results = json.loads(source.path.read_text())
        model = (results.get("model") or {}).get("path")
        return {"title": title or f"Evaluation {source.label}",
                "subtitle": f"{source.path}" + (f": model {model}" if model else ""),
                "evaluation": {"results": str(source.path.resolve())}}, source.path.parent
    section = isoflop_section(source.path)
    return {"title": title or f"IsoFLOP study {source.label}", "isoflop": section}, source.path


def default_out(paths: list[str | Path]) -> Path:
    """<path>/report for one path (its directory for a file), ./report for several."""
    if len(paths) != 1:
        return Path("report")
    p = Path(paths[0])
    return (p if p.is_dir() else p.parent) / "report"
