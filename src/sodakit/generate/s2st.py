"""Voice-preserving speech-to-speech translation of a whole manifest (docs/soda.md#speech-to-speech-translation).

`translate_manifest` loads each item's source clip, translates it with a fine-tuned model and, given a
directory, writes `<wav_dir>/<id>.wav` (the id percent-encoded into a plain file name). `translation_record`
is what an item's translation says (the generated source language and transcript, the translation text,
duration, stop reason). Scoring the translations (ASR-BLEU, speaker similarity) is the `s2st` task of
`sodakit eval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sodakit.audio.io import load_audio, save_wav
from sodakit.data.s2st_manifest import S2STItem
from sodakit.fileio import path_inside
from sodakit.generate.sampling import SamplingConfig
from sodakit.generate.tasks import S2ST_MAX_TEXT_TOKENS, TTS_MAX_NEW_TOKENS, SodaGenerator, TaskOutput


@dataclass
class Translation:
    item: S2STItem
    source: np.ndarray  # the source clip at the generator's sample rate
    output: TaskOutput
    audio_path: Path | None = None  # where the translation's speech was written, if it was

    @property
    def audio(self) -> np.ndarray:
        return self.output.audio if self.output.audio is not None else np.zeros(0, np.float32)


def translate_manifest(
    generator: SodaGenerator,
    items: Sequence[S2STItem],
    wav_dir: str | Path | None = None,
    sampling: SamplingConfig | None = None,
    max_new_tokens: int = TTS_MAX_NEW_TOKENS,
    max_seconds: float | None = None,
    silence_stop_seconds: float | None = None,
    force_source_lang: bool = False,
    max_text_tokens: int | None = S2ST_MAX_TEXT_TOKENS,
) -> list[Translation]:
    """Translate every item (its source language forced into the prompt with `force_source_lang`)."""
    sr = generator.sample_rate
    sources = [load_audio(it.source_audio, sr) for it in items]
    outputs = generator.s2st(
        sources,
        sr,
        source_lang=[it.source_lang for it in items] if force_source_lang else None,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        max_seconds=max_seconds,
        silence_stop_seconds=silence_stop_seconds,
        max_text_tokens=max_text_tokens,
    )
    translations = [Translation(it, src, out) for it, src, out in zip(items, sources, outputs)]
    if wav_dir is not None:
        for t in translations:
            # Manifest ids are encoded so that they can only name a file inside wav_dir.
            t.audio_path = save_wav(path_inside(wav_dir, t.item.id, ".wav"), t.audio, sr)
    return translations


def translation_record(t: Translation, sample_rate: int) -> dict:
    return {
        "id": t.item.id,
        "source_lang": t.item.source_lang,
        "generated_source_lang": t.output.extra.get("source_lang"),
        "generated_source_text": t.output.extra.get("source_text"),
        "generated_target_text": t.output.text,
        "reference_target_text": t.item.target_text,
        "seconds": len(t.audio) / sample_rate,
        "stop_reason": t.output.stop_reason,
    } | ({"error": t.output.error} if t.output.error is not None else {})
