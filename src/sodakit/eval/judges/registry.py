"""Judge protocols and the name -> constructor registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ASRJudge(Protocol):
    name: str
    comparable_to_paper: bool

    def describe(self) -> dict: ...

    def transcribe(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]: ...


@runtime_checkable
class SpeakerJudge(Protocol):
    name: str
    comparable_to_paper: bool

    def describe(self) -> dict: ...

    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """[N, D] speaker embeddings, one row per waveform."""
        ...

    def similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], sample_rate: int) -> list[float]:
        """Cosine similarity of a[i] and b[i] for each i."""
        ...


def _pocketsphinx(path: str | None, device: str) -> ASRJudge:
    # no path: the LM bundled with the package; a path: an ARPA LM of the domain's text (judge_lm.py)
    from sodakit.eval.judges.asr_pocketsphinx import PocketSphinxASR

    return PocketSphinxASR(lm=path or None)


def _whisper(path: str | None, device: str) -> ASRJudge:
    if not path:
        raise ValueError("asr judge 'whisper' needs a local model directory: whisper:/path/to/whisper-large-v3")
    from sodakit.eval.judges.asr_whisper import WhisperASR

    return WhisperASR(path, device=device)


def _classical(path: str | None, device: str) -> SpeakerJudge:
    if path:
        raise ValueError("speaker judge 'classical' takes no path")
    from sodakit.eval.judges.speaker_classical import ClassicalSpeakerEmbedding

    return ClassicalSpeakerEmbedding()


def _wavlm(path: str | None, device: str) -> SpeakerJudge:
    if not path:
        raise ValueError("speaker judge 'wavlm' needs a local model directory: wavlm:/path/to/wavlm-base-plus-sv")
    from sodakit.eval.judges.speaker_wavlm import WavLMSpeaker

    return WavLMSpeaker(path, device=device)


# name -> constructor(path, device); the neural judges run on the device (the evaluated model's), the
# classical ones on the CPU whatever it is.
ASR_JUDGES: dict[str, Callable[[str | None, str], ASRJudge]] = {"pocketsphinx": _pocketsphinx, "whisper": _whisper}
SPEAKER_JUDGES: dict[str, Callable[[str | None, str], SpeakerJudge]] = {"classical": _classical, "wavlm": _wavlm}


def _split(spec: str) -> tuple[str, str | None]:
    name, sep, path = spec.partition(":")
    return name.strip().lower(), (path if sep else None)


def make_asr_judge(spec: str = "pocketsphinx", device: str = "cpu") -> ASRJudge:
    name, path = _split(spec)
    if name not in ASR_JUDGES:
        raise ValueError(f"unknown ASR judge {name!r}; known: {sorted(ASR_JUDGES)} (spec 'name' or 'name:path')")
    return ASR_JUDGES[name](path, device)


def make_speaker_judge(spec: str = "classical", device: str = "cpu") -> SpeakerJudge:
    name, path = _split(spec)
    if name not in SPEAKER_JUDGES:
        raise ValueError(
            f"unknown speaker judge {name!r}; known: {sorted(SPEAKER_JUDGES)} (spec 'name' or 'name:path')"
        )
    return SPEAKER_JUDGES[name](path, device)
