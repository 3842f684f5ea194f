"""Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus), seeded.

The order is the usual one (and the one `transformers` uses): disallowed ids are already -inf, then
temperature scales the logits, top-k keeps the k largest, top-p keeps the smallest set whose probability
reaches p (always at least the most likely token), and one id is drawn with a `torch.Generator`, so a seed
reproduces a run exactly on the same machine and batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SamplingConfig:
    # 0 = greedy (argmax); SODA's TTS protocol samples at 0.9 (docs/soda.md#evaluation-protocol).
    temperature: float = 0.0
    # 0 = off. Keeps the k most likely ids before sampling.
    top_k: int = 0
    # 1.0 = off. SODA's TTS protocol uses 0.8.
    top_p: float = 1.0
    # Seed of the sampling generator; None draws from torch's global generator.
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(int(self.seed))


def filter_logits(logits: Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Temperature, top-k and top-p applied to fp32 logits [N, C]; removed entries become -inf."""
    logits = logits.float() / temperature
    c = logits.shape[-1]
    if 0 < top_k < c:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop an entry when the mass before it already reaches top_p; the first entry always stays.
        drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> Tensor:
    """Index [N] of the chosen entry of each row of logits [N, C] (masked entries are -inf)."""
    if cfg.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
