"""WavLM speaker-verification judge (the paper uses WavLM-large) from a local directory.

Expects a `WavLMForXVector` checkpoint with its feature extractor, e.g. a local copy of
microsoft/wavlm-base-plus-sv. Similarity is the cosine of the x-vector embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sodakit.eval.judges._audio import resample
from sodakit.eval.judges.speaker_common import cosine_rows

SAMPLE_RATE = 16_000


class WavLMSpeaker:
    name = "wavlm-xvector"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"wavlm judge: {self.path} is not a model directory (no config.json)")
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.path)
        self.model = WavLMForXVector.from_pretrained(self.path, dtype=torch.float32).to(device).eval()
        self.device = device
        # The paper's judge is a WavLM-large speaker-verification model; other checkpoints are labelled.
        self.comparable_to_paper = "large" in self.path.name.lower()

    def describe(self) -> dict:
        return {
            "judge": self.name,
            "kind": "speaker",
            "model_path": str(self.path),
            "device": str(self.device),
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "similarity": "cosine of x-vector embeddings",
            "batching": "one clip per forward (padding would change the embedding)",
            "sample_rate": SAMPLE_RATE,
            "comparable_to_paper": self.comparable_to_paper,
        }

    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        import torch

        rows = []
        for i, wav in enumerate(waveforms):
            x = resample(wav, sample_rate, SAMPLE_RATE, where=f"waveform {i}")
            if x.size < SAMPLE_RATE // 10:
                raise ValueError(f"waveform {i}: {x.size} samples at 16 kHz is too short for a speaker embedding")
            feats = self.feature_extractor(x, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with torch.no_grad():
                emb = self.model(input_values=feats.input_values.to(self.device, torch.float32)).embeddings
            rows.append(emb[0].float().cpu().numpy())
        return np.stack(rows) if rows else np.zeros((0, self.model.config.xvector_output_dim), np.float32)

    def similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], sample_rate: int) -> list[float]:
        if len(a) != len(b):
            raise ValueError(f"similarity: {len(a)} clips vs {len(b)} clips")
        return cosine_rows(self.embed(a, sample_rate), self.embed(b, sample_rate))
