"""Where training batches come from, and how one batch becomes inputs, targets and loss weights.

Batches: {"tokens": [B, L+1] int64, optional "segment_ids": [B, L+1], optional "loss_mask": [B, L+1],
optional "real_tokens": int}; inputs = tokens[:, :-1], targets = tokens[:, 1:], and loss_mask[:, t] = 0
removes token t as a target (so loss_mask[:, 0] is unused). Sources that pad (fine-tuning) say in
"real_tokens" how many positions are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from sodakit.data.loader import MixtureLoader
from sodakit.tokens.vocab import Vocab
from sodakit.train import distributed as D
from sodakit.train.config import TrainConfig


class BatchSource(Protocol):
    vocab: Vocab

    def next_batch(self, batch_size: int) -> dict[str, Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def build_source(cfg: TrainConfig, ctx: D.DistContext) -> BatchSource:
    """The packed mixture of `data.sources`, this rank's share of it."""
    if not cfg.data.sources:
        raise ValueError("data.sources is empty: give at least one packed dataset, e.g. "
                         "'data.sources=[{path: data/packed, weight: 1.0}]'")
    return MixtureLoader(
        sources=[(s.path, s.weight) for s in cfg.data.sources],
        seq_len=cfg.data.seq_len,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        return_segment_ids=cfg.data.document_masking,
    )


def source_metadata(source: BatchSource, cfg: TrainConfig) -> tuple[dict | None, str | None]:
    """(codec info, tokenizer.json path) recorded with the data, for the checkpoint sidecar."""
    meta = {}
    datasets = getattr(source, "datasets", None)
    if datasets:
        meta = getattr(datasets[0], "metadata", {}) or {}
    codec = meta.get("codec") or getattr(source, "codec", None)
    tok = cfg.data.tokenizer or (meta.get("tokenizer") or {}).get("path") or getattr(source, "tokenizer", None)
    if tok:
        p = Path(tok)
        p = p / "tokenizer.json" if p.is_dir() else p
        tok = str(p) if p.is_file() else None
        if tok is None and cfg.data.tokenizer:
            raise FileNotFoundError(f"data.tokenizer={cfg.data.tokenizer}: no tokenizer.json there")
    return codec, tok


def split_batch(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor | None]:
    """{"inputs", "targets", "segment_ids" (or None), "weights"} on `device`; weights are 0/1 floats."""
    tokens = batch["tokens"].to(device, non_blocking=True)
    out: dict[str, Tensor | None] = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": None}
    if "segment_ids" in batch:
        out["segment_ids"] = batch["segment_ids"][:, :-1].to(device)
    mask = batch.get("loss_mask")
    if mask is not None:
        if mask.shape != tokens.shape:
            raise ValueError(f"batch loss_mask shape {tuple(mask.shape)} != tokens shape {tuple(tokens.shape)}")
        out["weights"] = mask[:, 1:].to(device=device, dtype=torch.float32)
    else:
        out["weights"] = torch.ones(out["targets"].shape, device=device, dtype=torch.float32)
    return out
