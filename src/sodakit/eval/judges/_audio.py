"""Waveform plumbing shared by the judges: mono float32, resampled with soxr."""

from __future__ import annotations

import numpy as np
import soxr


def to_mono_float(wav: np.ndarray, where: str) -> np.ndarray:
    """[T] or [T, C] (soundfile's layout) -> mono float32 [T]; channels are averaged."""
    x = np.asarray(wav)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"{where}: expected a waveform of shape [T] or [T, C], got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: waveform holds NaN/inf samples")
    return x


def resample(wav: np.ndarray, sample_rate: int, target_rate: int, where: str = "waveform") -> np.ndarray:
    if sample_rate <= 0:
        raise ValueError(f"{where}: sample_rate must be positive, got {sample_rate}")
    x = to_mono_float(wav, where)
    if sample_rate == target_rate or x.size == 0:
        return x
    return soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
