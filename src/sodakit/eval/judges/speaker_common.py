"""Shared pieces of the speaker judges."""

from __future__ import annotations

import numpy as np


def cosine_rows(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Cosine similarity of a[i] and b[i]; a zero vector gives 0 rather than NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cosine_rows: shapes differ {a.shape} vs {b.shape}")
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return [float(n / d) if d > 0 else 0.0 for n, d in zip(num, den)]
