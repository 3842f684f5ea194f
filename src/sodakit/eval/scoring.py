"""The likelihood primitive: sum and mean log-probability of chosen positions of token sequences.

A `ScoreRequest` is a full token sequence plus the positions whose tokens are scored (position t
scores ids[t] given ids[:t]; t >= 1). Which positions to choose -- the text tokens, the audio tokens,
only the first k codebooks of an audio span -- is decided by `sodakit.eval.spans`, so this module stays
one small loop: sort by length, right-pad into batches, call `token_logprobs`, gather, sum in float64.
Results do not depend on batch size or on which other requests share a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sodakit.eval.lm import ScoringLM, VocabularyError


@dataclass(frozen=True)
class ScoreRequest:
    ids: np.ndarray  # int64 [T]
    positions: np.ndarray  # int64 [N], each in [1, T)


@dataclass(frozen=True)
class SpanScore:
    sum_logprob: float
    num_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.sum_logprob / self.num_tokens


def check_request(req: ScoreRequest, lm: ScoringLM) -> str | None:
    """Why `req` cannot be scored by `lm` (None if it can)."""
    ids, pos = np.asarray(req.ids), np.asarray(req.positions)
    if ids.ndim != 1 or ids.size < 2:
        return f"sequence of {ids.size} tokens: need at least 2"
    if pos.size == 0:
        return "no positions to score (empty span)"
    if pos.min() < 1 or pos.max() >= ids.size:
        return f"scored positions outside [1, {ids.size})"
    if ids.min() < 0 or ids.max() >= lm.vocab_size:
        return (f"token id {int(ids.max())} outside the model's vocabulary of {lm.vocab_size} "
                f"(the model does not cover the task's tokens)")
    if lm.max_positions is not None and ids.size > lm.max_positions:
        return f"sequence of {ids.size} tokens exceeds the model's {lm.max_positions} positions"
    return None


def score_requests(
    lm: ScoringLM,
    requests: Sequence[ScoreRequest],
    batch_size: int = 8,
    pad_id: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[SpanScore]:
    """Score every request; raises ValueError naming the first request that cannot be scored."""
    rows = position_logprobs(lm, requests, batch_size, pad_id, progress)
    return [SpanScore(sum_logprob=float(r.sum()), num_tokens=int(r.size)) for r in rows]


def position_logprobs(
    lm: ScoringLM,
    requests: Sequence[ScoreRequest],
    batch_size: int = 8,
    pad_id: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Per request, the float64 log-probs of its positions (in the order of `positions`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, r in enumerate(requests):
        why = check_request(r, lm)
        if why:
            raise VocabularyError(f"request {i}: {why}") if "vocabulary" in why else ValueError(f"request {i}: {why}")
    # Longest first: batches of similar length waste little padding; order is restored at the end.
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].ids))
    out: list[np.ndarray | None] = [None] * len(requests)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(requests[i].ids) for i in chunk)
        batch = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        for row, i in enumerate(chunk):
            ids = torch.as_tensor(np.asarray(requests[i].ids, dtype=np.int64))
            batch[row, : ids.numel()] = ids
        logp = lm.token_logprobs(batch).detach().to("cpu", torch.float64).numpy()
        for row, i in enumerate(chunk):
            out[i] = logp[row, np.asarray(requests[i].positions, dtype=np.int64) - 1]
        if progress:
            progress(len(chunk))
    return out  # type: ignore[return-value]
