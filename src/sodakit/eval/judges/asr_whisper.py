"""Whisper ASR judge (the paper's judge is Whisper-large-v3) loaded from a local directory.

The directory is what `save_pretrained` writes for the model and its processor (config.json,
model.safetensors, generation_config.json, tokenizer + preprocessor files), e.g. a downloaded copy of
openai/whisper-large-v3. Nothing is fetched from a hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sodakit.eval.judges._audio import resample

SAMPLE_RATE = 16_000  # Whisper's feature extractor works at 16 kHz
CHUNK_SECONDS = 30  # Whisper's encoder window; longer audio goes through long-form generation


class WhisperASR:
    name = "whisper"

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 8, language: str = "en") -> None:
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"whisper judge: {self.path} is not a model directory (no config.json)")
        self.processor = AutoProcessor.from_pretrained(self.path)
        # fp32: the judge must not add its own numeric noise to the WER (and fp16 is unusable on CPU).
        self.model = WhisperForConditionalGeneration.from_pretrained(self.path, dtype=torch.float32).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.language = language
        name = str(getattr(self.model.config, "_name_or_path", "") or self.path.name)
        # Only Whisper-large-v3 is the paper's judge; any other checkpoint is labelled not comparable.
        self.comparable_to_paper = "large-v3" in name or "large-v3" in self.path.name

    def describe(self) -> dict:
        return {
            "judge": self.name,
            "kind": "asr",
            "model_path": str(self.path),
            "device": str(self.device),
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "language": self.language,
            "decoding": "greedy",
            "sample_rate": SAMPLE_RATE,
            "comparable_to_paper": self.comparable_to_paper,
        }

    def _max_new_tokens(self) -> int:
        # Whisper's decoder holds max_target_positions tokens, 4 of them the start/lang/task/notimestamps prompt.
        return int(self.model.config.max_target_positions) - 4

    def transcribe(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        import torch

        audio = [resample(w, sample_rate, SAMPLE_RATE, where=f"waveform {i}") for i, w in enumerate(waveforms)]
        out: list[str] = []
        for start in range(0, len(audio), self.batch_size):
            batch = audio[start : start + self.batch_size]
            long_form = any(x.size > CHUNK_SECONDS * SAMPLE_RATE for x in batch)
            # Empty clips are padded to one sample so the feature extractor has something to read.
            batch = [x if x.size else np.zeros(1, dtype=np.float32) for x in batch]
            kwargs = {"sampling_rate": SAMPLE_RATE, "return_tensors": "pt", "return_attention_mask": True}
            if long_form:
                kwargs.update(truncation=False, padding="longest")
            feats = self.processor.feature_extractor(batch, **kwargs)
            gen = {"language": self.language, "task": "transcribe"}
            if not long_form:
                gen["max_new_tokens"] = self._max_new_tokens()
            with torch.no_grad():
                ids = self.model.generate(
                    feats.input_features.to(self.device, torch.float32),
                    attention_mask=feats.attention_mask.to(self.device),
                    **gen,
                )
            out.extend(t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True))
        return out
