"""What `sodakit report PATH` reads, recognised by the files sodakit writes there.

| kind | what sodakit wrote | recognised by |
|---|---|---|
| training run | `sodakit train` / `finetune` run directory, an IsoFLOP run's `runs/<id>` | `metrics.jsonl` (the directory, or the file itself) |
| eval results | `sodakit eval out=FILE` | a JSON file with `"format": "sodakit.eval/1"`, or a directory holding `results.json` / `eval_results.json` of that format |
| IsoFLOP | `sodakit isoflop fit --out DIR`, `scripts/isoflop_mini_study.py` (and its docs copy) | `fit.json`, a study's `summary.json` + `fit_audio/` / `fit/`, `mini_study_summary.json`, plots |
| report summary | `sodakit demo` (its `<out>/summary.json`), any pipeline writing one | a JSON object with report sections (`title`, `training`, `evaluation`, ...) |

`detect(path)` names the kind or raises a `ReportInputError` listing what was expected. A training run's
`metrics.jsonl` is read line by line: the last line of a killed run may be cut short, and is skipped
with a note; a broken line elsewhere is an error naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sodakit.errors import UserError
from sodakit.eval.results import RESULTS_FORMAT
from sodakit.model.load import list_checkpoints
from sodakit.report.isoflop import isoflop_section

TRAINING, EVAL, ISOFLOP, SUMMARY = "training run", "eval results", "isoflop", "report summary"
METRICS = "metrics.jsonl"
RUN_CONFIG = "config.yaml"
EVAL_FILE_NAMES = ("results.json", "eval_results.json")
SUMMARY_FILE = "summary.json"
# Top-level keys of a report summary (see sodakit.report.builder).
SUMMARY_KEYS = ("title", "subtitle", "data", "training", "evaluation", "samples", "isoflop", "settings")

EXPECTED = (
    "a training run directory (metrics.jsonl + config.yaml, written by `sodakit train`), "
    "an eval results JSON (format sodakit.eval/1, written by `sodakit eval out=FILE`) or a directory holding "
    "results.json, an IsoFLOP fit directory (fit.json + plots, `sodakit isoflop fit --out DIR`) or study "
    "directory (summary.json + fit_audio/ fit/, scripts/isoflop_mini_study.py), a demo output directory "
    "(summary.json, `sodakit demo`), or a report summary JSON"
)


class ReportInputError(UserError, ValueError):
    """A path that holds nothing `sodakit report` can read, or a file of a known kind that is broken."""


@dataclass
class Source:
    kind: str
    path: Path  # the file that identifies it (metrics.jsonl, results JSON, summary JSON) or the IsoFLOP directory
    label: str  # a short name for tables and legends


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ReportInputError(f"report: {path}: not readable JSON ({e})") from e


def _json_object_or_none(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_eval_results(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == RESULTS_FORMAT


def is_report_summary(data: Any) -> bool:
    """A report summary: report sections, and not an IsoFLOP study's summary (which holds fits)."""
    return (isinstance(data, dict) and any(k in data for k in SUMMARY_KEYS)
            and not any(str(k).startswith("fit_") for k in data))


def _label(path: Path) -> str:
    return path.name or str(path)


def detect(path: str | Path) -> Source:
    """The kind of what sodakit wrote at `path` (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise ReportInputError(f"report: {p} does not exist (expected {EXPECTED})")
    if p.is_file():
        return _detect_file(p)
    if (p / METRICS).is_file():
        return Source(TRAINING, p / METRICS, _label(p))
    summary = _json_object_or_none(p / SUMMARY_FILE) if (p / SUMMARY_FILE).is_file() else None
    if summary is not None and is_report_summary(summary):
        return Source(SUMMARY, p / SUMMARY_FILE, _label(p))
    for name in EVAL_FILE_NAMES:
        if (p / name).is_file() and is_eval_results(_json_object_or_none(p / name)):
            return Source(EVAL, p / name, _label(p))
    if isoflop_section(p) is not None:
        return Source(ISOFLOP, p, _label(p))
    hint = ""
    if (p / "plan.json").is_file():
        hint = (" It looks like an IsoFLOP plan directory: fit its results first "
                f"(`sodakit isoflop fit {p / 'results.csv'} --out DIR`) and report DIR.")
    raise ReportInputError(f"report: {p} holds nothing sodakit report can read; expected {EXPECTED}.{hint}")


def _detect_file(p: Path) -> Source:
    if p.suffix == ".jsonl" and p.name.startswith("metrics"):
        return Source(TRAINING, p, _label(p.parent))
    if p.suffix == ".json":
        data = _read_json(p)
        if is_eval_results(data):
            return Source(EVAL, p, p.stem if p.stem not in ("results", "eval_results") else _label(p.parent))
        if isinstance(data, dict) and str(data.get("format", "")).startswith("sodakit.isoflop"):
            return Source(ISOFLOP, p.parent, _label(p.parent))
        if is_report_summary(data):
            return Source(SUMMARY, p, _label(p.parent))
        if isoflop_section(p) is not None:  # a study's summary.json / mini_study_summary.json
            return Source(ISOFLOP, p.parent, _label(p.parent))
    raise ReportInputError(f"report: {p} is not a file sodakit report can read; expected {EXPECTED}")


# ---------------------------------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------------------------------
def read_metrics(path: str | Path) -> tuple[list[dict], list[str]]:
    """The records of a metrics.jsonl and notes on what was skipped: a last line cut short by a kill is
    skipped; any other line that is not a JSON object is an error naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ReportInputError(f"report: cannot read {path} ({e})") from e
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    records, notes = [], []
    for i, (n, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(numbered) - 1:
                notes.append(f"{path}:{n}: the last line is incomplete (the run was stopped while writing it); skipped")
                continue
            raise ReportInputError(f"report: {path}:{n}: not a metrics record ({e})") from e
        records.append(record)
    return records, notes


@dataclass
class TrainingRun:
    label: str
    run_dir: Path
    records: list[dict]
    config: dict | None  # the run's config.yaml
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> list[dict]:
        """Records of logged training steps."""
        return [r for r in self.records if "loss" in r and "step" in r]

    @property
    def validations(self) -> list[dict]:
        return [r for r in self.records if "val_loss" in r and "step" in r]

    @property
    def events(self) -> list[dict]:
        return [r for r in self.records if "event" in r]

    def info(self) -> dict[str, Any]:
        """The run at a glance: shape, schedule, where it ran, how far it got, its latest numbers."""
        cfg = self.config or {}
        model, data, optim = cfg.get("model") or {}, cfg.get("data") or {}, cfg.get("optim") or {}
        start = (self.events or [{}])[-1]
        steps, vals = self.steps, self.validations
        last, last_val = (steps[-1] if steps else {}), (vals[-1] if vals else {})
        planned = cfg.get("steps")
        reached = max((int(r["step"]) for r in self.records if isinstance(r.get("step"), int)), default=0)
        ckpts = list_checkpoints(self.run_dir)
        rates = [r["tokens_per_s"] for r in steps if isinstance(r.get("tokens_per_s"), int | float)]
        info: dict[str, Any] = {
            "run directory": str(self.run_dir),
            "model": model.get("init_from") or model.get("preset"),
            "model overrides": ", ".join(f"{k}={v}" for k, v in (model.get("overrides") or {}).items()) or None,
            "parameters": start.get("params"),
            "steps": f"{reached:,} of {planned:,}" if isinstance(planned, int) else reached,
            "global batch x sequence": (f"{cfg['global_batch']} x {data['seq_len']}"
                                        if "global_batch" in cfg and "seq_len" in data else None),
            "tokens seen": last.get("tokens"),
            "peak learning rate": start.get("peak_lr", optim.get("lr")),
            "device": (f"{start['device']} x {start.get('world_size', 1)} (device={cfg.get('device', '?')})"
                       if "device" in start else cfg.get("device")),
            "precision": cfg.get("precision"),
            "final train loss": last.get("loss"),
            "final validation loss": last_val.get("val_loss"),
            "mean tokens/s": sum(rates) / len(rates) if rates else None,
            "last MFU": last.get("mfu"),
            "peak memory (GB)": last.get("peak_mem_gb"),
            "checkpoints": f"{len(ckpts)} (newest {ckpts[-1].name})" if ckpts else "none",
        }
        return {k: v for k, v in info.items() if v is not None}


def read_training_run(path: str | Path, label: str | None = None) -> TrainingRun:
    """A run from its directory or its metrics.jsonl (config.yaml beside it, when there is one)."""
    p = Path(path)
    metrics = p if p.is_file() else p / METRICS
    if not metrics.is_file():
        raise ReportInputError(f"report: {p}: no {METRICS} (expected a training run directory)")
    run_dir = metrics.parent
    records, notes = read_metrics(metrics)
    config = None
    if (run_dir / RUN_CONFIG).is_file():
        try:
            loaded = yaml.safe_load((run_dir / RUN_CONFIG).read_text())
        except (OSError, yaml.YAMLError) as e:
            notes.append(f"{run_dir / RUN_CONFIG}: unreadable ({e})")
        else:
            config = loaded if isinstance(loaded, dict) else None
    if not records:
        notes.append(f"{metrics}: no records yet")
    return TrainingRun(label or _label(run_dir), run_dir, records, config, notes)


# ---------------------------------------------------------------------------------------------------
# Eval results
# ---------------------------------------------------------------------------------------------------
def read_eval_results(path: str | Path) -> dict:
    data = _read_json(Path(path))
    if not is_eval_results(data):
        raise ReportInputError(f"report: {path}: not an eval results JSON (expected \"format\": \"{RESULTS_FORMAT}\")")
    return data


def read_item_log(path: Path, limit: int) -> tuple[list[dict], int]:
    """The first `limit` records of a per-item log and how many it holds (unreadable lines skipped)."""
    rows, total = [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            total += 1
            if len(rows) < limit:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    rows.append(record)
    return rows, total
