"""Task registry, the evaluation context, and task results.

A task is a small declaration: which reader (layout) it takes its items from, which prompt template
and scored span it uses, and how outcomes aggregate into metrics. The shared primitives live in
`sodakit.eval.scoring` / `spans` / `metrics`; a task never computes log-probabilities itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sodakit.audio.codec import Codec
from sodakit.audio.registry import CodecMismatchError, check_codec_fits
from sodakit.errors import UserError
from sodakit.eval.config import EvalConfig
from sodakit.eval.items import ItemError
from sodakit.eval.lm import ScoringLM, VocabularyError
from sodakit.generate.tasks import SodaGenerator
from sodakit.progress import Progress
from sodakit.tokens.soda_tokenizer import SodaTokenizer


class TaskError(UserError, RuntimeError):
    """A task that cannot run at all (no data, a model that does not fit the task, ...)."""


@dataclass
class EvalContext:
    """What a task runs with: the scorer, its tokenizer and codec, and the run's settings."""

    lm: ScoringLM
    tokenizer: SodaTokenizer
    codec: Codec | None = None  # needed by spoken tasks
    cfg: EvalConfig = field(default_factory=EvalConfig)
    codec_record: dict | None = None  # the codec the model was trained with, as recorded
    generator: SodaGenerator | None = None  # for generation tasks; built on first use
    device: str = "cpu"  # where the model runs (resolved); neural judges (Whisper, WavLM) run there too

    @property
    def vocab(self):
        return self.tokenizer.vocab

    def progress(self, task: str, total: int, unit: str = "item") -> Progress:
        """The progress of one task (a bar on a terminal, a status line now and then in a log)."""
        return Progress(f"eval {task}", total=total, unit=unit, quiet=self.cfg.quiet)

    def require_codec(self, task: str) -> Codec:
        if self.codec is None:
            raise TaskError(
                f"task {task} scores speech and needs a codec: pass --codec (a Mimi directory such as ./mimi, "
                "or an offline codec directory), or use a model whose sodakit.json records its codec source"
            )
        try:
            check_codec_fits(self.codec, self.vocab)
        except CodecMismatchError as e:
            raise TaskError(f"task {task}: {e}") from e
        return self.codec

    def get_generator(self, task: str) -> SodaGenerator:
        """The generator for ASR/TTS/S2ST prompting; needs the project's model (sodakit backend)."""
        if self.generator is None:
            model = getattr(self.lm, "model", None)
            if model is None or not hasattr(model, "hidden_states"):
                raise TaskError(f"task {task} generates with sodakit.generate, which needs the project's Qwen3 "
                                "model: load the checkpoint with --backend sodakit (or auto)")
            codec = self.require_codec(task)
            self.generator = SodaGenerator(model, self.vocab, self.tokenizer, codec, self.codec_record,
                                           self.cfg.batch_size)
        return self.generator

    def require_ids(self, task: str, ids: list[int], what: str) -> None:
        """The model must have embeddings for the ids the task's template uses."""
        top = max(ids)
        if top >= self.lm.vocab_size:
            raise VocabularyError(
                f"task {task}: {what} need token id {top}, but the model's vocabulary has {self.lm.vocab_size} "
                f"entries (tokenizer layout: {self.vocab.size} ids); the model does not cover the task's tokens"
            )


@dataclass
class TaskResult:
    task: str
    metrics: dict
    counts: dict
    protocol: dict
    data: dict
    excluded: list[ItemError] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)  # per-item log records (when asked for)
    breakdown: dict = field(default_factory=dict)
    seconds: float = 0.0
    comparable_to_paper: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "status": "ok",
            "metrics": self.metrics,
            "counts": self.counts,
            "breakdown": self.breakdown,
            "protocol": self.protocol,
            "data": self.data,
            "excluded": [e.to_dict() for e in self.excluded],
            "comparable_to_paper": self.comparable_to_paper,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    data_help: str
    run: Callable[[EvalContext, Path | None], TaskResult]
    default_data: Callable[[], Path | None] = lambda: None
    needs_codec: bool = False


TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name} registered twice")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def counts(read_total: int, read_errors: int, scored: int, excluded: int) -> dict:
    """The denominators, always reported next to the metrics."""
    return {
        "items_read": read_total,
        "read_errors": read_errors,
        "scored": scored,
        "excluded_after_read": excluded,
        "denominator": scored,
    }


def grouped_mean(values: list[float], groups: list[str]) -> float:
    """Mean over groups of the mean within each group (ZeroSpeech: voices of one pair id)."""
    by: dict[str, list[float]] = {}
    for v, g in zip(values, groups):
        by.setdefault(g, []).append(v)
    return float(np.mean([np.mean(v) for v in by.values()]))


def breakdown_by(values: list[float], keys: list[str | None]) -> dict:
    by: dict[str, list[float]] = {}
    for v, k in zip(values, keys):
        if k is not None and k != "":
            by.setdefault(str(k), []).append(v)
    return {k: {"accuracy": float(np.mean(v)), "n": len(v)} for k, v in sorted(by.items())}


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
