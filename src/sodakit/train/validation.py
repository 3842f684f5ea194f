"""Held-out validation during training: this rank's share of `data.val_path`, and the NLL over it."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sodakit.data.loader import sequential_batches
from sodakit.tokens.vocab import Vocab
from sodakit.train import distributed as D
from sodakit.train.batches import split_batch
from sodakit.train.config import TrainConfig
from sodakit.train.metrics import TOKEN_TYPES, token_type_sums, type_losses


def val_batches(cfg: TrainConfig, ctx: D.DistContext, vocab: Vocab) -> list[tuple[dict[str, Tensor], float]]:
    """This rank's held-out batches with a weight (0 marks padding slots so every rank runs as many)."""
    if not cfg.data.val_path:
        return []
    every = list(
        sequential_batches(
            cfg.data.val_path,
            cfg.data.seq_len,
            cfg.micro_batch,
            max_batches=cfg.data.val_batches * ctx.world_size,
            expected_vocab=vocab,
            return_segment_ids=cfg.data.document_masking,
        )
    )
    slots = math.ceil(len(every) / ctx.world_size) * ctx.world_size
    return [(every[i % len(every)], 1.0 if i < len(every) else 0.0) for i in range(ctx.rank, slots, ctx.world_size)]


def validation_losses(
    model: nn.Module, batches: list[tuple[dict[str, Tensor], float]], vocab: Vocab, ctx: D.DistContext
) -> dict[str, float]:
    """Validation NLL over all scored tokens and per token type (collective): {"val_loss", "val_loss_<type>"}."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(2 + 2 * len(TOKEN_TYPES), device=ctx.device)
    with torch.no_grad():
        for batch, weight in batches:
            b = split_batch(batch, ctx.device)
            w = b["weights"] * weight
            out = model(b["inputs"], b["targets"], loss_mask=w, segment_ids=b["segment_ids"])
            sums[0] += out.ce_sum.float()
            sums[1] += out.num_tokens.float()
            sums[2:] += token_type_sums(out.token_nll, b["targets"], w, vocab)
    D.all_reduce_sum(sums)
    model.train(was_training)
    vals = sums.tolist()
    res = {"val_loss": vals[0] / max(vals[1], 1.0)}
    res.update(type_losses(sums[2:], prefix="val_loss"))
    return res
