"""Pluggable judges: ASR (for WER) and speaker embedding (for similarity).

A judge is chosen by a spec string, `name` or `name:path`:

    asr:      pocketsphinx (offline default) | pocketsphinx:/domain-lm.arpa | whisper:/local/whisper-dir
    speaker:  classical (offline default)    | wavlm:/local/wavlm-xvector-dir

Every judge has `describe() -> dict` (recorded in results) and a `comparable_to_paper` flag: only the
paper's own judges (Whisper-large-v3, WavLM-large speaker verification) produce numbers comparable to
the published tables, and results JSON says so next to each number.
"""

from __future__ import annotations

from sodakit.eval.judges.asr_pocketsphinx import PocketSphinxASR
from sodakit.eval.judges.registry import (
    ASR_JUDGES,
    SPEAKER_JUDGES,
    ASRJudge,
    SpeakerJudge,
    make_asr_judge,
    make_speaker_judge,
)

__all__ = [
    "ASR_JUDGES",
    "SPEAKER_JUDGES",
    "ASRJudge",
    "PocketSphinxASR",
    "SpeakerJudge",
    "make_asr_judge",
    "make_speaker_judge",
]
