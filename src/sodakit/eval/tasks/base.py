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

from sodakit.errors import UserError
from sodakit.eval.items import ItemError
from sodakit.eval.lm import ScoringLM, VocabularyError
from sodakit.eval.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
from sodakit.eval.spans import AudioSelection
from sodakit.tokens.soda_tokenizer import SodaTokenizer


class TaskError(UserError, RuntimeError):
    """A task that cannot run at all (no data, a model that does not fit the task, ...)."""


@dataclass
class EvalContext:
    lm: ScoringLM
    tokenizer: SodaTokenizer
    batch_size: int = 8
    codec: object | None = None  # sodakit.audio.codec.Codec, needed by spoken tasks
    audio: AudioSelection = field(default_factory=AudioSelection)
    limit: int | None = None
    log_items: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    progress: bool = False
    # Generation tasks (ASR / TTS): the model behind `lm`, the codec it was trained with, the judges.
    codec_record: dict | None = None
    generator: object | None = None  # a sodakit.generate SodaGenerator (built on first use)
    asr_judge: str = "pocketsphinx"
    speaker_judge: str = "classical"
    asr_shots: int = 3
    asr_max_new_tokens: int | None = None  # None: the protocol's (soda 200, sodakit 448)
    tts_max_new_tokens: int = 1500  # docs/soda.md#evaluation-protocol
    audio_out: Path | None = None  # where generated TTS audio is written (optional)
    seed: int | None = None  # None: the protocol's (soda 42, as the authors' scripts; sodakit 0)
    protocol: str = DEFAULT_PROTOCOL  # see sodakit.eval.protocols

    def __post_init__(self) -> None:
        get_protocol(self.protocol)  # an unknown name fails here, before any task runs

    @property
    def rules(self) -> Protocol:
        return get_protocol(self.protocol)

    @property
    def rng_seed(self) -> int:
        return self.rules.default_seed if self.seed is None else int(self.seed)

    @property
    def asr_budget(self) -> int:
        return self.rules.asr_max_new_tokens if self.asr_max_new_tokens is None else int(self.asr_max_new_tokens)

    @property
    def vocab(self):
        return self.tokenizer.vocab

    def require_codec(self, task: str):
        if self.codec is None:
            raise TaskError(
                f"task {task} scores speech and needs a codec: pass --codec (a Mimi directory such as ./mimi, "
                "or an offline codec directory), or use a model whose sodakit.json records its codec source"
            )
        v, c = self.vocab, self.codec
        if c.codebook_size != v.codebook_size or c.num_codebooks < v.num_codebooks:
            raise TaskError(
                f"task {task}: codec {c.name} gives {c.num_codebooks} codebooks of {c.codebook_size} but the "
                f"model's vocabulary expects {v.num_codebooks} of {v.codebook_size}"
            )
        return c

    def get_generator(self, task: str):
        """The generator for ASR/TTS prompting; needs the project's model (sodakit backend)."""
        if self.generator is None:
            model = getattr(self.lm, "model", None)
            if model is None or not hasattr(model, "hidden_states"):
                raise TaskError(f"task {task} generates with sodakit.generate, which needs the project's Qwen3 "
                                "model: load the checkpoint with --backend sodakit (or auto)")
            from sodakit.generate.tasks import SodaGenerator

            codec = self.require_codec(task)
            self.generator = SodaGenerator(model, self.vocab, self.tokenizer, codec, self.codec_record, self.batch_size)
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
    from sodakit.eval import tasks as _  # noqa: F401  (registers the built-in tasks)

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
