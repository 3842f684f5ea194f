"""Results JSON (one file per run) and optional per-item logs (JSONL per task), written atomically."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from sodakit import __version__
from sodakit.config import atomic_write_text

RESULTS_FORMAT = "sodakit.eval/1"


def run_header(command: list[str], model: dict, tokenizer: dict, codec: dict | None, settings: dict) -> dict:
    return {
        "format": RESULTS_FORMAT,
        "sodakit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": list(command),
        "environment": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
        "model": model,
        "tokenizer": tokenizer,
        "codec": codec,
        "settings": settings,
        "tasks": {},
    }


def write_results(path: Path, results: dict) -> None:
    atomic_write_text(Path(path), json.dumps(results, indent=2, default=str) + "\n")


def write_item_log(directory: Path, task: str, records: list[dict]) -> Path:
    path = Path(directory) / f"{task.replace('/', '_')}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))
    return path


# The columns of the published table (docs/soda.md#evaluation-protocol) and where each comes from in a results JSON.
SODA_COLUMNS: dict[str, tuple[str, str, float]] = {
    "sBLIMP": ("sblimp", "accuracy", 100.0),
    "sWUGGY": ("swuggy", "accuracy", 100.0),
    "SALMon": ("salmon", "accuracy", 100.0),  # the protocol's headline (soda: micro over all items)
    "tBLIMP": ("tblimp", "accuracy", 100.0),
    "tWUGGY": ("twuggy", "accuracy", 100.0),
    "HellaSwag": ("hellaswag", "acc_norm", 100.0),
    "ASR WER": ("asr", "wer", 100.0),
    "TTS WER": ("tts", "wer", 100.0),
    "TTS SIM": ("tts", "sim", 1.0),
}


def soda_scores(results: dict) -> dict[str, float]:
    """{column: value} in the units of the published table, for the tasks that ran successfully
    (the input `sodakit report` expects under evaluation.scores)."""
    out = {}
    tasks = results.get("tasks", {})
    for col, (task, metric, scale) in SODA_COLUMNS.items():
        t = tasks.get(task) or {}
        v = (t.get("metrics") or {}).get(metric) if t.get("status") == "ok" else None
        if isinstance(v, int | float):
            out[col] = round(float(v) * scale, 3)
    return out
