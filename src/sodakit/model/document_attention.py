"""Per-document causal attention without a dense [B, 1, T, T] mask: FlexAttention with a block mask.

The dense boolean mask keeps SDPA off its flash kernel and costs B x T x T bytes per step. A block mask
(`create_block_mask`) instead records, per 128 x 128 tile of the score matrix, whether it is empty,
full or partial, so the fused FlexAttention kernel skips the empty tiles (other documents, the future)
and evaluates the mask only inside partial ones. Training selects it on CUDA (`Qwen3.document_attention
= "auto"`); on the CPU the dense-mask path stays, as FlexAttention's CPU kernel has no backward.

On CUDA both the block mask and the attention are compiled (`torch.compile`, once per shape); eagerly,
as on the CPU, FlexAttention computes the same values through its unfused reference implementation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

IMPLEMENTATIONS = ("auto", "flex", "dense")
_compiled: dict[str, Callable] = {}


def use_flex(choice: str, device: torch.device) -> bool:
    """Whether `choice` ("auto", "flex" or "dense") means FlexAttention on `device`."""
    if choice not in IMPLEMENTATIONS:
        raise ValueError(f"document attention {choice!r} unknown; choose one of {list(IMPLEMENTATIONS)}")
    return choice == "flex" or (choice == "auto" and device.type == "cuda")


def document_block_mask(segment_ids: Tensor) -> BlockMask:
    """Causal attention within each document of `segment_ids [B, T]` (equal ids = one document)."""
    b, t = segment_ids.shape

    def same_document_causal(batch: Tensor, head: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx <= q_idx) & (segment_ids[batch, q_idx] == segment_ids[batch, kv_idx])

    return create_block_mask(same_document_causal, b, None, t, t, device=segment_ids.device,
                             _compile=segment_ids.is_cuda)


def flex_attend(q: Tensor, k: Tensor, v: Tensor, block_mask: BlockMask, enable_gqa: bool) -> Tensor:
    """FlexAttention of q [B, H, T, hd] over k, v [B, H_kv, T, hd] (grouped-query natively)."""
    if q.is_cuda:
        if "flex" not in _compiled:
            _compiled["flex"] = torch.compile(flex_attention, dynamic=False)
        return _compiled["flex"](q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)
    with warnings.catch_warnings():  # eager on purpose: the CPU has no fused kernel to compile to
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)
