"""What readers produce: benchmark items, per-item errors, and a description of the data read.

Readers never raise on one broken item: they return it as an `ItemError` (naming the item and file)
next to the good items, so a run reports "N items, M scored, K excluded (reasons)" and the metric's
denominator is always stated, never silently changed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from sodakit.audio.io import AudioError, check_waveform, load_audio, resample, to_mono


@dataclass(frozen=True)
class ItemError:
    """One item that cannot be used, and why."""

    item: str
    reason: str
    file: str | None = None
    stage: str = "read"  # read | encode | score | generate | judge

    def to_dict(self) -> dict:
        return {"item": self.item, "stage": self.stage, "file": self.file, "reason": self.reason}

    def __str__(self) -> str:
        where = f" ({self.file})" if self.file else ""
        return f"[{self.stage}] item {self.item}{where}: {self.reason}"


@dataclass(frozen=True)
class AudioRef:
    """A waveform that is loaded on demand: a file on disk or encoded bytes (e.g. from Parquet)."""

    path: Path | None = None
    data: bytes | None = None
    # Lazily fetched encoded bytes (e.g. one cell of a Parquet file), so big data sets stay on disk.
    fetch: Callable[[], bytes] | None = None
    name: str = ""  # for error messages when there is no path

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.path, self.data, self.fetch)) != 1:
            raise ValueError("AudioRef needs exactly one of path, data or fetch")

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else (self.name or "<bytes>")

    def load(self, sample_rate: int) -> np.ndarray:
        """Float32 mono at `sample_rate`; raises sodakit.audio.io.AudioError naming the source."""
        if self.path is not None:
            return load_audio(self.path, sample_rate)
        try:
            data = self.data if self.data is not None else self.fetch()  # type: ignore[misc]
            wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        except Exception as e:
            raise AudioError(self.where, "unreadable", f"{type(e).__name__}: {e}") from e
        wav = check_waveform(wav, self.where)
        return check_waveform(resample(to_mono(wav), int(sr), sample_rate), self.where)


@dataclass
class PairItem:
    """A minimal pair: the positive (word, grammatical, consistent) should score higher.

    `pos` / `neg` are `AudioRef` for spoken tasks and `str` for text tasks. `group` is what accuracy is
    first averaged over (ZeroSpeech averages the voices of one pair id); `meta` carries type, subtype,
    voice, transcriptions and anything else the layout provides.
    """

    id: str
    pos: AudioRef | str
    neg: AudioRef | str
    group: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class ChoiceItem:
    """Multiple choice (HellaSwag): `context` then one of `endings`; `gold` indexes the right one."""

    id: str
    context: str
    endings: list[str]
    gold: int
    meta: dict = field(default_factory=dict)


@dataclass
class SpeechTextItem:
    """An utterance with its transcript (ASR, and the shots of N-shot ASR)."""

    id: str
    audio: AudioRef
    text: str
    meta: dict = field(default_factory=dict)


@dataclass
class TTSItem:
    """A Seed-TTS-eval style line: speak `target_text` in the voice of `prompt_audio`."""

    id: str
    prompt_audio: AudioRef
    prompt_text: str
    target_text: str
    meta: dict = field(default_factory=dict)


@dataclass
class DataProvenance:
    """Where the items came from, recorded next to every number computed on them."""

    path: str
    layout: str
    checksum: str
    checksum_method: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "layout": self.layout,
            "checksum": self.checksum,
            "checksum_method": self.checksum_method,
            **self.extra,
        }


@dataclass
class ReadResult:
    items: list
    errors: list[ItemError]
    source: DataProvenance

    def limited(self, limit: int | None) -> ReadResult:
        """The first `limit` readable items; read errors of the whole data set are still reported."""
        if limit is None or limit >= len(self.items):
            return self
        return ReadResult(self.items[:limit], self.errors, self.source)
