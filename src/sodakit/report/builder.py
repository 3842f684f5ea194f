"""The run report: one static HTML page plus the same numbers as JSON and Markdown.

Input is a summary dict (the demo writes one, `sodakit report PATH ...` composes one from what sodakit
wrote at the paths, see report/compose.py): sections are optional, paths are relative to the summary
file or absolute.

    {"title": str, "subtitle": str, "settings": {...},
     "data": {name: {stat: value}},                       # data statistics, one table per dataset
     "training": {"metrics": "metrics.jsonl", "info": {...},          # one run ...
                  "config": {...}, "label": "run name", "notes": [...]},
              or {"runs": [{"metrics": ..., "info": ..., "config": ..., "label": ...}, ...]},  # ... or several
     "evaluation": {"scale": "tiny model, 10 min of synthetic speech", "scores": {column: value},
                    "details": {...}, "judges": "...",
                    "coverage": {column: {"scored": 4, "expected": 8, "missing": [...]}},  # partial scores
                    "results": "results.json", "label": "..."},   # a results JSON: per-task details
              or {"runs": [{"label": ..., "scores": ..., "results": ..., "coverage": ...}, ...], "scale": ...},
     "samples": [{"task": "tts", "prompt_text": ..., "prompt_audio": "a.wav", "output_audio": "b.wav",
                  "output_text": ..., "reference_text": ...}],
     "isoflop": {"source": "runs/isoflop-mini", "plots": ["profiles.png", ...], "summary": {...},
                 "reference": {"fit": "SODA", "N_exponent": 0.367, "D_exponent": 0.579},
                 "exponents": [{"fit": ..., "N_exponent": .4, "N_exponent_ci": [.1, .5], "D_exponent": ...}],
                 "warnings": [...], "message": "shown in place of the plots when there is no sweep"}
              or a list of such sections}

(`sodakit.report.isoflop.isoflop_section` builds an "isoflop" section from a fit or study directory.)

A training run shows its settings, one figure of curves (loss per token type, validation, learning
rate, throughput and MFU), its validation losses, start/resume events and config; several runs are
overlaid in one figure and set side by side in one table. An evaluation shows the score table beside
the published SODA rows (one row per run) and, given its results JSON, every task's metrics,
breakdowns, excluded items, first per-item records and protocol; several runs also get one table of
every metric in columns.

`build_report` turns the summary into a view (tables with formatted cells, asset paths, notes) and
renders it with the Jinja templates in report/templates/: index.html.j2 (autoescaped: every text of
the summary is escaped), report.md.j2 (text as is) and style.css. The page references only files copied
into its own `assets/` folder, so the report directory can be moved or served as is. `out_dir` may be
a URL (`s3://bucket/reports/x`, e.g. a bucket served as a website): the report is rendered into a local
staging folder and uploaded, index.html last.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from sodakit import storage
from sodakit.config import atomic_write_text
from sodakit.eval.results import soda_scores
from sodakit.report.plots import comparison_figure, training_figure
from sodakit.report.sources import read_eval_results, read_item_log, read_metrics

# docs/soda.md#evaluation-protocol: published SODA results (different scale from anything a laptop trains).
SODA_COLUMNS = ["sBLIMP", "sWUGGY", "SALMon", "tBLIMP", "tWUGGY", "HellaSwag", "ASR WER", "TTS WER", "TTS SIM"]
SODA_PUBLISHED: dict[str, list[float | None]] = {
    "SODA 135M": [50.1, 56.3, 70.0, 67.4, 70.7, 28.7, 28.1, 11.2, 0.500],
    "SODA 600M": [51.2, 58.9, 70.1, 70.7, 73.1, 35.8, 10.2, 7.6, 0.555],
    "SODA 1.7B": [51.4, 60.6, 70.6, 70.3, 74.7, 44.5, 7.0, 6.9, 0.560],
    "SODA 4B": [52.4, 61.8, 70.4, 71.3, 74.8, 52.6, 5.0, 6.1, 0.560],
}
LOWER_IS_BETTER = {"ASR WER", "TTS WER"}


# Per-item records shown on the page (the whole log is copied into assets/ and linked).
ITEM_ROWS = 20
ITEM_COLUMNS = 12
EXCLUDED_ROWS = 20
VALIDATION_ROWS = 30
# Item logs larger than this are linked where they are instead of copied into the report.
COPY_LIMIT_BYTES = 20 * 2**20


def _resolve(path: str | None, base: Path) -> Path | None:
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else base / p


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _with_ci(v: Any, ci: Any) -> str:
    if not isinstance(v, int | float):
        return "-"
    text = f"{v:.3f}"
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _partial_columns(coverage: dict) -> dict[str, tuple[int, int, list[str]]]:
    """{column: (scored, expected, missing parts)} for the columns scored on fewer parts than expected."""
    out = {}
    for col, c in coverage.items():
        scored, expected = (c or {}).get("scored"), (c or {}).get("expected")
        if isinstance(scored, int) and isinstance(expected, int) and scored < expected:
            out[col] = (scored, expected, [str(m) for m in (c.get("missing") or [])])
    return out


@dataclass
class Table:
    """A table ready for the templates: header strings and rows of cells already formatted by `_fmt`."""

    headers: list[str]
    rows: list[list[str]]
    cls: str = ""


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> Table:
    return Table(headers, [[_fmt(c) for c in row] for row in rows], cls)


def _stat_rows(stats: dict) -> list[list[Any]]:
    """[key, value] rows: nested dicts as dotted keys ("blimp.pairs"), a short list of plain values joined
    by commas; anything larger is left to the JSON record."""
    rows: list[list[Any]] = []
    for k, v in _flatten(stats).items():
        if isinstance(v, list) and len(v) <= 8 and all(isinstance(x, str | int | float) for x in v):
            rows.append([k, ", ".join(str(x) for x in v)])
        elif not isinstance(v, dict | list):
            rows.append([k, v])
    return rows


def _run_value(key: str, v: Any) -> Any:
    """A training quantity as people read it: losses to 4 decimals, MFU in percent, rates in 3 digits."""
    if not isinstance(v, float):
        return v
    if "loss" in key:
        return f"{v:.4f}"
    if "MFU" in key or key == "mfu":
        return f"{100 * v:.2f}%"
    if "learning rate" in key or key == "lr":
        return f"{v:.3g}"
    return v


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


class _Assets:
    def __init__(self, out: Path):
        self.dir = out / "assets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: set[str] = set()

    def add(self, src: Path, prefix: str) -> str:
        if not src.is_file():
            raise FileNotFoundError(f"report: asset {src} does not exist")
        name = f"{prefix}-{src.name}"
        i = 1
        while name in self.names:
            name = f"{prefix}-{i}-{src.name}"
            i += 1
        self.names.add(name)
        shutil.copyfile(src, self.dir / name)
        return f"assets/{name}"

    def add_plot(self, draw, name: str) -> tuple[str | None, list[str] | None]:
        """Draw a figure with `draw(path)` (returns the keys drawn, None for nothing) into assets/."""
        tmp = self.dir.parent / name
        keys = draw(tmp)
        if keys is None:
            return None, None
        src = self.add(tmp, "plot")
        tmp.unlink()
        return src, keys


def build_report(summary: dict, out_dir: str | Path, base_dir: str | Path = ".") -> dict[str, Path | str]:
    """Render `summary` into out_dir/{index.html, report.md, report.json, assets/} (a folder or a URL)."""
    if storage.is_remote(out_dir):
        stage = storage.new_temp_dir()
        try:
            paths = build_report(summary, stage, base_dir)
            storage.upload_dir(stage, out_dir, last=["index.html"])
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return {key: storage.join(out_dir, Path(p).name) for key, p in paths.items()}
    out, base = Path(out_dir), Path(base_dir)
    if out.exists():
        shutil.rmtree(out / "assets", ignore_errors=True)
    assets = _Assets(out)
    title = summary.get("title", "sodakit report")
    view: dict[str, Any] = {"title": title, "subtitle": summary.get("subtitle"),
                            **dict.fromkeys(("data", "training", "evaluation", "samples", "isoflop", "settings"))}
    record: dict[str, Any] = {"title": title}
    if summary.get("data"):
        view["data"] = [(name, _table(["statistic", "value"], _stat_rows(stats))) for name, stats in summary["data"].items()]
        record["data"] = summary["data"]
    if summary.get("training"):
        view["training"], training_record = _training_section(summary["training"], base, assets)
        if training_record is not None:
            record["training"] = training_record
    evaluation = summary.get("evaluation") or {}
    if evaluation.get("scores") or evaluation.get("results") or evaluation.get("runs"):
        view["evaluation"], record["evaluation"] = _evaluation_section(evaluation, base, assets)
    if summary.get("samples"):
        view["samples"], record["samples"] = _samples_section(summary["samples"], base, assets)
    iso = summary.get("isoflop") or []
    sections = [s for s in (iso if isinstance(iso, list) else [iso])
                if s and (s.get("plots") or s.get("exponents") or s.get("message"))]
    if sections:
        views, records = zip(*(_isoflop_section(s, base, assets) for s in sections))
        view["isoflop"] = list(views)
        record["isoflop"] = records[0] if isinstance(iso, dict) else list(records)
    if summary.get("settings"):
        view["settings"] = _json_text(summary["settings"])
        record["settings"] = summary["settings"]

    paths = {"html": out / "index.html", "markdown": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["html"], _TEMPLATES.get_template("index.html.j2").render(view))
    atomic_write_text(paths["markdown"], _TEMPLATES.get_template("report.md.j2").render(view))
    atomic_write_text(paths["json"], json.dumps(record, indent=2, default=str))
    return paths


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------
def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sampled(rows: list, limit: int) -> list:
    """At most `limit` rows spread evenly over `rows`, the last one always kept."""
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    picked = [rows[int(i * step)] for i in range(limit - 1)]
    return [*picked, rows[-1]]


def _validation_table(records: list[dict]) -> Table | None:
    vals = [r for r in records if isinstance(r.get("val_loss"), int | float)]
    if not vals:
        return None
    keys = sorted({k for r in vals for k in r if k.startswith("val_loss_")})
    headers = ["step", "all tokens", *[k.removeprefix("val_loss_") for k in keys]]
    return _table(headers, [[r.get("step"), *[_run_value(k, r.get(k)) for k in ("val_loss", *keys)]]
                            for r in _sampled(vals, VALIDATION_ROWS)])


def _events_table(records: list[dict]) -> Table | None:
    events = [r for r in records if "event" in r]
    if not events:
        return None
    rows = []
    for e in events:
        changes = e.get("config_changes") or {}
        rows.append([e.get("step"), e.get("event"), e.get("device"), e.get("world_size"), e.get("checkpoint"),
                     "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items()) or None])
    return _table(["step", "event", "device", "ranks", "checkpoint", "config changes"], rows)


def _training_runs(training: dict, base: Path) -> list[dict]:
    """Every run of the training section, with its metrics records read (a torn last line skipped)."""
    entries = training["runs"] if isinstance(training.get("runs"), list) else [training]
    runs = []
    for i, entry in enumerate(entries):
        path = _resolve(entry.get("metrics"), base)
        records, notes = read_metrics(path) if path is not None and path.is_file() else ([], [])
        config = entry.get("config")
        if isinstance(config, str) and (cpath := _resolve(config, base)) is not None and cpath.is_file():
            try:
                config = yaml.safe_load(cpath.read_text())
            except (OSError, yaml.YAMLError) as e:
                notes.append(f"{cpath}: unreadable ({e})")
        runs.append({"label": entry.get("label") or f"run {i + 1}", "info": entry.get("info") or {},
                     "config": config if isinstance(config, dict) else None, "records": records,
                     "has_metrics": path is not None and path.is_file(),
                     "notes": [*(entry.get("notes") or []), *notes]})
    return runs


def _training_section(training: dict, base: Path, assets: _Assets) -> tuple[dict, dict | None]:
    """Settings, curves, validation, events and config of one run; several side by side and overlaid."""
    runs = _training_runs(training, base)
    single = len(runs) == 1
    if single:
        src, keys = assets.add_plot(lambda p: training_figure(runs[0]["records"], p), "training.png")
    else:
        src, keys = assets.add_plot(lambda p: comparison_figure({r["label"]: r["records"] for r in runs}, p),
                                    "training.png")
    view: dict[str, Any] = {
        "single": single, "plot": src, "plot_keys": ", ".join(keys or []),
        "caption": ("Loss per token type, learning rate and throughput" if single
                    else "Runs overlaid: " + ", ".join(r["label"] for r in runs)),
        "compare": None if single else _compare_runs(runs),
        "runs": [{"label": r["label"],
                  "info": _table(["setting", "value"], [[k, _run_value(k, v)] for k, v in _stat_rows(r["info"])])
                  if r["info"] else None,
                  "validation": _validation_table(r["records"]), "events": _events_table(r["records"]),
                  "config": _json_text(r["config"]) if r["config"] else None, "notes": r["notes"]} for r in runs],
    }
    have_metrics = [r for r in runs if r["has_metrics"]]
    if not have_metrics:
        return view, None

    def last_record(r: dict) -> dict:
        return {k: v for k, v in (r["records"][-1] if r["records"] else {}).items() if isinstance(v, int | float)}

    if single:
        return view, {"info": runs[0]["info"], "last_record": last_record(runs[0]), "plot": src,
                      "notes": runs[0]["notes"]}
    return view, {"runs": [{"label": r["label"], "info": r["info"], "last_record": last_record(r), "notes": r["notes"]}
                           for r in runs], "plot": src}


def _compare_runs(runs: list[dict]) -> Table:
    """One column per run: their settings and latest numbers, then the config keys that differ."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r["info"] if k not in keys and not isinstance(r["info"][k], dict | list)]
    rows = [[k, *[_run_value(k, r["info"].get(k)) for r in runs]] for k in keys]
    configs = [_flatten(r["config"]) if r["config"] else {} for r in runs]
    if sum(1 for c in configs if c) > 1:
        for key in sorted(set().union(*configs)):
            values = [c.get(key) for c in configs]
            if any(v != values[0] for v in values[1:]):
                rows.append([f"config: {key}", *[json.dumps(v) if isinstance(v, list) else v for v in values]])
    return _table(["", *[r["label"] for r in runs]], rows, "compare")


# ---------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------
def _eval_runs(evaluation: dict, base: Path) -> list[dict]:
    """Every evaluated run: its label, scores (from its results JSON when not given) and results."""
    entries = evaluation["runs"] if isinstance(evaluation.get("runs"), list) else [evaluation]
    runs = []
    for i, entry in enumerate(entries):
        results, results_path = entry.get("results"), None
        if isinstance(results, str):
            results_path = _resolve(results, base)
            results = read_eval_results(results_path) if results_path is not None and results_path.is_file() else None
        scores = entry.get("scores") or (soda_scores(results) if results else {})
        label = entry.get("label") or ("this run" if len(entries) == 1 else f"run {i + 1}")
        runs.append({"label": label, "scores": scores, "coverage": entry.get("coverage") or {},
                     "results": results if isinstance(results, dict) else None, "results_path": results_path})
    return runs


def _evaluation_section(evaluation: dict, base: Path, assets: _Assets) -> tuple[dict, dict]:
    """The scores beside the published SODA rows (with notes on scale and partial columns); with a
    results JSON every task's details; several runs also one table of every metric in columns."""
    runs = _eval_runs(evaluation, base)
    single = len(runs) == 1
    rows = [[r["label"], *[r["scores"].get(c) for c in SODA_COLUMNS]] for r in runs]
    rows += [[name, *vals] for name, vals in SODA_PUBLISHED.items()]
    partial = _partial_columns(runs[0]["coverage"]) if single else {}
    headers = ["model", *[c + (f" ({partial[c][0]}/{partial[c][1]} parts)" if c in partial else "")
                          + (" (lower better)" if c in LOWER_IS_BETTER else "") for c in SODA_COLUMNS]]
    partial_notes = []
    for r in runs:
        who = "this run" if single else r["label"]
        partial_notes += [f"{c}: {who} scored {scored} of the {expected} parts"
                          + (f" (missing: {', '.join(missing)})" if missing else "")
                          + "; the published numbers average all of them."
                          for c, (scored, expected, missing) in _partial_columns(r["coverage"]).items()]
    if evaluation.get("scale"):
        note = ("Published SODA numbers (docs/soda.md#evaluation-protocol) are shown for reference only: they come "
                "from models trained on ~300K hours with Mimi and judged by Whisper-large-v3 / WavLM-large; this "
                f"run is at a different scale ({evaluation.get('scale', '')}) with offline judges and look-alike "
                "benchmarks. Compare shapes, not values.")
    else:
        note = ("Published SODA numbers (docs/soda.md#evaluation-protocol) are shown for reference: they come from "
                "models trained on ~300K hours, with Mimi, the full benchmarks and Whisper-large-v3 / WavLM-large "
                "judges. A number is comparable only where the data, protocol and judges match (each task's "
                "protocol is listed below).")
    view: dict[str, Any] = {
        "note": note, "table": _table(headers, rows, "eval"), "partial_notes": partial_notes,
        "extra": _extra_table(runs[0]["scores"]) if single else None,
        "judges": str(evaluation["judges"]) if evaluation.get("judges") else None,
        "compare": None if single else _compare_metrics(runs),
        "tasks": [t for r in runs if r["results"] for t in _task_views(r, single, assets)],
        "runs": [_eval_run_view(r) for r in runs if r["results"]],
    }
    if single and not runs[0]["results"]:
        record = dict(evaluation)
    elif single:
        record = {k: v for k, v in evaluation.items() if k != "results"} | {
            "scores": runs[0]["scores"], "results": str(runs[0]["results_path"] or ""),
            "tasks": {n: _task_record(t) for n, t in runs[0]["results"].get("tasks", {}).items()}}
    else:
        record = {"runs": [{"label": r["label"], "scores": r["scores"], "results": str(r["results_path"] or ""),
                            "tasks": {n: _task_record(t) for n, t in (r["results"] or {}).get("tasks", {}).items()}}
                           for r in runs]}
    return view, record


# What a summary may attach to a score under the score's own name: "X 95% interval", "X pairs",
# "X, control: <what>", "X, control 95% interval" and "X goal" become columns of X's row.
_ATTACHED = ((re.compile(r"^(.+), control 95% interval$"), "control 95% interval"),
             (re.compile(r"^(.+), control: (.+)$"), "control"),
             (re.compile(r"^(.+) 95% interval$"), "95% interval"),
             (re.compile(r"^(.+) pairs$"), "pairs"),
             (re.compile(r"^(.+) goal$"), "goal"))


def _extra_table(scores: dict) -> Table | None:
    """The scores beyond the SODA table, one row per measurement with its interval, pair count, control
    reading and goal beside it (a SODA column appears here when something is attached to it)."""
    rows: dict[str, dict[str, Any]] = {}
    controls: set[str] = set()
    for key, value in scores.items():
        for pattern, column in _ATTACHED:
            m = pattern.match(key)
            if m:
                if column == "control":
                    controls.add(m.group(2))
                rows.setdefault(m.group(1), {})[column] = value
                break
        else:
            if key not in SODA_COLUMNS:
                rows.setdefault(key, {})["value"] = value
    if not rows:
        return None
    for name, row in rows.items():
        if name in SODA_COLUMNS:
            row["value"] = scores[name]
    columns = [c for c in ("95% interval", "pairs", "control", "control 95% interval", "goal")
               if any(c in r for r in rows.values())]
    control_name = f"control: {' / '.join(sorted(controls))}" if controls else "control"
    headers = ["metric", "value", *[control_name if c == "control" else c for c in columns]]
    return _table(headers, [[name, row.get("value"), *[row.get(c) for c in columns]] for name, row in rows.items()])


def _task_record(task: dict) -> dict:
    return {k: task.get(k) for k in ("status", "metrics", "counts", "error") if k in task}


def _compare_metrics(runs: list[dict]) -> Table | None:
    """Rows `task: metric`, one column per run (numeric metrics of tasks that ran)."""
    keys: list[tuple[str, str]] = []
    for r in runs:
        for name, task in ((r["results"] or {}).get("tasks") or {}).items():
            for metric, value in (task.get("metrics") or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool) and (name, metric) not in keys:
                    keys.append((name, metric))
    if not keys:
        return None

    def value(r: dict, name: str, metric: str) -> Any:
        task = ((r["results"] or {}).get("tasks") or {}).get(name) or {}
        return (task.get("metrics") or {}).get(metric) if task.get("status") == "ok" else None

    rows = [[f"{name}: {metric}", *[value(r, name, metric) for r in runs]] for name, metric in keys]
    return _table(["task: metric", *[r["label"] for r in runs]], rows, "compare")


def _eval_run_view(run: dict) -> dict:
    results = run["results"]
    return {"label": run["label"], "source": str(run["results_path"] or ""),
            "model": (results.get("model") or {}).get("path"), "device": (results.get("model") or {}).get("device"),
            "created": results.get("created"), "command": " ".join(map(str, results.get("command") or [])),
            "settings": _json_text(results.get("settings") or {})}


def _breakdown_tables(breakdown: dict) -> list[tuple[str, Table]]:
    """{name: {key: {stat: value}}} or {name: {key: count}} as tables."""
    out = []
    for name, by in breakdown.items():
        if not isinstance(by, dict) or not by:
            continue
        if all(isinstance(v, dict) for v in by.values()):
            stats: list[str] = []
            for v in by.values():
                stats += [k for k in v if k not in stats]
            out.append((name, _table([name, *stats], [[k, *[v.get(s) for s in stats]] for k, v in by.items()])))
        else:
            out.append((name, _table([name, "value"], [[k, v] for k, v in by.items()])))
    return out


def _cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        text = json.dumps(v, default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(v, str) and len(v) > 120:
        return v[:117] + "..."
    return v


def _item_log_path(task_name: str, task: dict, results_path: Path | None) -> Path | None:
    """The task's per-item log: as recorded, else next to the results file (`<stem>.items/<task>.jsonl`)."""
    recorded = task.get("item_log")
    candidates = []
    if recorded:
        candidates.append(Path(recorded))
        if results_path is not None and not Path(recorded).is_absolute():
            candidates.append(results_path.parent / recorded)
    if results_path is not None:
        candidates.append(results_path.parent / f"{results_path.stem}.items" / f"{task_name.replace('/', '_')}.jsonl")
    return next((c for c in candidates if c.is_file()), None)


def _task_views(run: dict, single: bool, assets: _Assets) -> list[dict]:
    out = []
    for name, task in (run["results"].get("tasks") or {}).items():
        title = name if single else f"{run['label']}: {name}"
        view: dict[str, Any] = {"title": title, "status": task.get("status"), "error": task.get("error"),
                                "metrics": None, "counts": None, "breakdowns": [], "excluded": None,
                                "excluded_note": None, "item_rows": None, "item_note": None, "item_log": None,
                                "protocol": _json_text(task.get("protocol") or {}), "notes": list(task.get("notes") or [])}
        if task.get("status") != "ok":
            out.append(view)
            continue
        metrics = {k: v for k, v in (task.get("metrics") or {}).items() if not isinstance(v, dict | list)}
        view["metrics"] = _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
        c = task.get("counts") or {}
        view["counts"] = (f"scored {_fmt(c.get('scored'))} of {_fmt(c.get('items_read'))} items read; "
                          f"{_fmt(c.get('read_errors'))} unreadable, {_fmt(c.get('excluded_after_read'))} excluded "
                          f"after reading; {_fmt(task.get('seconds'))} s"
                          + ("" if task.get("comparable_to_paper") is not False else "; not comparable to the paper"))
        view["breakdowns"] = _breakdown_tables(task.get("breakdown") or {})
        excluded = task.get("excluded") or []
        if excluded:
            view["excluded"] = _table(["item", "stage", "file", "reason"],
                                      [[e.get("item"), e.get("stage"), e.get("file"), _cell(e.get("reason"))]
                                       for e in excluded[:EXCLUDED_ROWS]])
            view["excluded_note"] = (f"{len(excluded)} excluded item(s)"
                                     + (f", the first {EXCLUDED_ROWS} shown" if len(excluded) > EXCLUDED_ROWS else ""))
        log_path = _item_log_path(name, task, run["results_path"])
        records, total = (read_item_log(log_path, ITEM_ROWS) if log_path is not None
                          else (list(task.get("items") or [])[:ITEM_ROWS], len(task.get("items") or [])))
        if records:
            flat = [_flatten(r) for r in records]
            columns: list[str] = []
            for f in flat:
                columns += [k for k in f if k not in columns]
            columns = columns[:ITEM_COLUMNS]
            view["item_rows"] = _table(columns, [[_cell(f.get(k)) for k in columns] for f in flat], "items")
            view["item_note"] = f"first {len(records)} of {total} per-item records"
            if log_path is not None:
                if log_path.stat().st_size <= COPY_LIMIT_BYTES:
                    view["item_log"] = assets.add(log_path, "items")
                else:
                    view["item_note"] += f" (all of them in {log_path})"
        out.append(view)
    return out


def _samples_section(samples: list[dict], base: Path, assets: _Assets) -> tuple[list[dict], list[dict]]:
    """One row per sample: its audio copied into assets/, its texts; the JSON record points at the copies."""
    view, record = [], []
    for i, s in enumerate(samples):
        entry = {k: v for k, v in s.items() if not k.endswith("_audio")}
        row: dict[str, Any] = {"task": s.get("task", ""), "reference": s.get("reference_text", "") or ""}
        for role in ("prompt", "output"):
            audio = _resolve(s.get(f"{role}_audio"), base)
            if audio is not None:
                entry[f"{role}_audio"] = assets.add(audio, f"s{i}-{role}")
            row[role] = {"audio": entry.get(f"{role}_audio"), "text": s.get(f"{role}_text")}
        # The Markdown line names the texts as Python literals (quotes make empty and odd texts visible).
        row["md_prompt"] = f"{entry.get('prompt_audio', '')} {s.get('prompt_text', '')!r}"
        row["md_output"] = f"{entry.get('output_audio', '')} {s.get('output_text', '')!r}"
        if row["reference"]:
            row["md_output"] += f", reference {row['reference']!r}"
        view.append(row)
        record.append(entry)
    return view, record


def _isoflop_section(iso: dict, base: Path, assets: _Assets) -> tuple[dict, dict]:
    """Fitted exponents beside SODA's, sweep statistics, warnings and the plots (copied into assets/)."""
    view: dict[str, Any] = {"message": iso.get("message"), "source": iso.get("source"), "exponents": None,
                            "summary": None, "warnings": [str(w) for w in iso.get("warnings") or []]}
    if iso.get("exponents"):
        ref = iso.get("reference")
        rows = [[ref.get("fit", "SODA"), ref.get("N_exponent"), ref.get("D_exponent")]] if ref else []
        rows += [[e.get("fit", ""), _with_ci(e.get("N_exponent"), e.get("N_exponent_ci")),
                  _with_ci(e.get("D_exponent"), e.get("D_exponent_ci"))] for e in iso["exponents"]]
        view["exponents"] = _table(["fit", "N* ~ C^a: a", "D* ~ C^b: b"], rows, "iso")
    if iso.get("summary"):
        view["summary"] = _table(["quantity", "value"], _stat_rows(iso["summary"]))
    view["plots"] = []
    for p in iso.get("plots") or []:
        folder = Path(p).parent.name  # fit_audio/ and fit/ of a study hold plots of the same names
        src = assets.add(_resolve(p, base), f"isoflop-{folder}" if folder else "isoflop")  # type: ignore[arg-type]
        view["plots"].append({"src": src, "name": Path(p).name, "source": str(p)})
    record = {**iso, "plots": [p["src"] for p in view["plots"]], "plot_sources": list(iso.get("plots") or [])}
    return view, record


# HTML is autoescaped; Markdown is written as is (like the summary's own text).
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sodakit.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
