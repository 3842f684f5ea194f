"""The codec interface every downstream stage depends on.

A codec turns mono waveforms at its `sample_rate` into integer codes `[K, F]` (K codebooks of
`codebook_size` entries, F frames at `frame_rate` Hz) and back. An item of `n` samples always gets
exactly `num_frames(n) = ceil(n / samples_per_frame)` frames. Downstream code (documents, generation,
evaluation) sees only this interface and `info()` (name + config hash), which travels with the data.

The implementations subclass `Codec` in their own modules and are opened by name or path through
`sodakit.audio.registry.load_codec`, the one way to get a codec; this interface knows none of them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from sodakit.audio.io import resample, to_mono
from sodakit.data.segments import CodecInfo

# Seconds of audio per encode batch in the convenience API: bounds memory without starving the matmuls.
DEFAULT_BATCH_SECONDS = 240.0


class CodecError(ValueError):
    """A codec that cannot be loaded, or input that does not fit it."""


def pad_batch(waveforms: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms with zeros into a float32 [B, T] tensor; also return their lengths [B]."""
    items = [torch.as_tensor(np.asarray(w, dtype=np.float32)) if not torch.is_tensor(w) else w.float() for w in waveforms]
    for i, w in enumerate(items):
        if w.ndim != 1:
            raise CodecError(f"waveform {i}: expected a 1-D mono waveform, got shape {tuple(w.shape)}")
    lengths = torch.tensor([len(w) for w in items], dtype=torch.long)
    out = torch.zeros(len(items), int(lengths.max()) if len(items) else 0)
    for i, w in enumerate(items):
        out[i, : len(w)] = w
    return out, lengths


class Codec(ABC):
    """A neural or classical audio codec with the shape of Mimi: K codebooks per frame, one frame rate."""

    name: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    semantic_codebooks: list[int]
    source: str | None = None  # where it was loaded from (directory or hub id)

    @property
    @abstractmethod
    def config_hash(self) -> str:
        """Identifies the exact codec (configuration and weights): codes are only comparable under one hash."""

    @property
    def samples_per_frame(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(int(num_samples) / self.samples_per_frame)

    @abstractmethod
    def _encode_batch(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, F_max] of a padded float32 batch [B, T] at `sample_rate`; F_max = num_frames(T)."""

    @abstractmethod
    def _decode_batch(self, codes: torch.Tensor, frames: torch.Tensor) -> list[np.ndarray]:
        """Waveforms of codes [B, K, F_max], item b using its first frames[b] frames."""

    def encode(
        self, waveforms: torch.Tensor | Sequence[np.ndarray | torch.Tensor], lengths: torch.Tensor | Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of mono waveforms at `self.sample_rate`.

        `waveforms` is a padded [B, T] tensor (with `lengths`, or all of length T) or a list of 1-D
        waveforms. Returns (codes [B, K, F] LongTensor, frames [B]): item b's codes are
        codes[b, :, :frames[b]], frames[b] = ceil(lengths[b] / samples_per_frame); the rest is zero.
        """
        if isinstance(waveforms, torch.Tensor | np.ndarray) and np.ndim(waveforms) in (2, 3):
            wav = torch.as_tensor(waveforms).float()
            if wav.ndim == 3:
                if wav.shape[1] != 1:
                    raise CodecError(f"expected mono [B, T] or [B, 1, T] waveforms, got {tuple(wav.shape)}")
                wav = wav[:, 0]
            if lengths is None:
                lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long)
            lengths = torch.as_tensor(lengths, dtype=torch.long)
            if lengths.shape != (wav.shape[0],) or (lengths > wav.shape[1]).any() or (lengths < 0).any():
                raise CodecError(f"lengths {lengths.tolist()} do not fit waveforms of shape {tuple(wav.shape)}")
        else:
            if lengths is not None:
                raise CodecError("lengths are only for a padded [B, T] tensor; a list carries its own lengths")
            wav, lengths = pad_batch(list(waveforms))
        if wav.shape[0] == 0:
            return torch.zeros(0, self.num_codebooks, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        if (lengths == 0).any():
            raise CodecError(f"cannot encode empty waveforms (items {torch.nonzero(lengths == 0).flatten().tolist()})")
        # Zero the padding so that what lies past an item's end never depends on the caller.
        mask = torch.arange(wav.shape[1])[None, :] < lengths[:, None]
        wav = torch.where(mask, wav, torch.zeros(()))
        frames = torch.tensor([self.num_frames(int(n)) for n in lengths], dtype=torch.long)
        wav = wav[:, : int(lengths.max())]
        codes = self._encode_batch(wav, lengths).long().cpu()
        fmax = int(frames.max())
        if codes.shape[:2] != (wav.shape[0], self.num_codebooks) or codes.shape[2] < fmax:
            raise RuntimeError(f"{self.name}: encoder returned codes {tuple(codes.shape)}, expected [B, {self.num_codebooks}, >={fmax}]")
        codes = codes[:, :, :fmax].clone()
        for b, f in enumerate(frames.tolist()):
            codes[b, :, f:] = 0
        return codes, frames

    def decode(self, codes: torch.Tensor | np.ndarray, frames: torch.Tensor | Sequence[int] | None = None) -> list[np.ndarray]:
        """Waveforms (float32 at `sample_rate`, num_frames * samples_per_frame samples each) of codes.

        `codes` is [B, K, F] (or a single [K, F]); `frames` gives each item's frame count (default F).
        """
        codes = torch.as_tensor(np.asarray(codes) if isinstance(codes, np.ndarray) else codes).long()
        if codes.ndim == 2:
            codes = codes[None]
        if codes.ndim != 3 or codes.shape[1] != self.num_codebooks:
            raise CodecError(f"{self.name}: expected codes [B, {self.num_codebooks}, F], got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise CodecError(f"{self.name}: codes outside [0, {self.codebook_size})")
        frames = torch.full((codes.shape[0],), codes.shape[2]) if frames is None else torch.as_tensor(frames).long()
        if frames.shape != (codes.shape[0],) or (frames > codes.shape[2]).any() or (frames < 0).any():
            raise CodecError(f"frames {frames.tolist()} do not fit codes of shape {tuple(codes.shape)}")
        if codes.shape[0] == 0:
            return []
        out = self._decode_batch(codes, frames)
        return [np.asarray(w, dtype=np.float32)[: int(f) * self.samples_per_frame] for w, f in zip(out, frames.tolist())]

    def encode_audio(
        self,
        waveforms: Sequence[np.ndarray],
        sample_rate: int,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        on_encoded: Callable[[int], None] | None = None,
    ) -> list[np.ndarray]:
        """Convenience: waveforms at any rate ([N] or [N, C]) -> list of codes [K, F_i] (int64 numpy).

        Mixes to mono, resamples to the codec's rate with soxr, and encodes in length-sorted batches of
        at most `batch_seconds` of padded audio (sorting keeps padding small; results do not depend on it).
        `on_encoded(n)` is called after each batch with the number of waveforms it held (progress).
        """
        mono = [resample(to_mono(np.asarray(w, dtype=np.float32)), sample_rate, self.sample_rate) for w in waveforms]
        order = sorted(range(len(mono)), key=lambda i: -len(mono[i]))
        out: list[np.ndarray | None] = [None] * len(mono)
        budget = max(1, int(batch_seconds * self.sample_rate))
        i = 0
        while i < len(order):
            longest = max(1, len(mono[order[i]]))
            n = max(1, budget // longest)
            idx = order[i : i + n]
            codes, frames = self.encode([mono[j] for j in idx])
            for j, c, f in zip(idx, codes, frames.tolist()):
                out[j] = c[:, :f].numpy()
            i += n
            if on_encoded is not None:
                on_encoded(len(idx))
        return out  # type: ignore[return-value]

    def info(self) -> CodecInfo:
        return CodecInfo(
            name=self.name,
            config_hash=self.config_hash,
            sample_rate=int(self.sample_rate),
            frame_rate=float(self.frame_rate),
            num_codebooks=int(self.num_codebooks),
            codebook_size=int(self.codebook_size),
            semantic_codebooks=list(self.semantic_codebooks),
            source=self.source,
        )

    def bitrate(self) -> float:
        """Bits per second of the codes: frame_rate * K * log2(codebook_size)."""
        return self.frame_rate * self.num_codebooks * math.log2(self.codebook_size)
