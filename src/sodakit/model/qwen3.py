"""The Qwen3-style decoder (docs/soda.md#model), readable in one sitting and written for training speed.

Architecture: token embedding -> L x [pre-RMSNorm -> attention (GQA, QK-norm, RoPE with Llama-3 scaling,
`scaled_dot_product_attention`) -> residual -> pre-RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm ->
untied LM head. No biases. All weights are initialised N(0, 0.02), norms to 1.

Speed choices (the weights map 1:1 onto Hugging Face `Qwen3ForCausalLM`, see `model/hf.py`):
- q/k/v are one fused projection (`wqkv`) and gate/up one fused projection (`w_gate_up`): fewer, larger
  matmuls and one read of the input instead of three/two.
- Attention goes through SDPA with the `is_causal` fast path when there is no mask, and native GQA
  (`enable_gqa`, no repeated K/V heads) wherever a fused kernel supports it (CPU; flash attention in
  bf16 on GPU); with a mask on GPU, K/V are expanded for the memory-efficient kernel instead of letting
  SDPA fall back to its slow "math" kernel.
- The loss never builds fp32 logits over the whole vocabulary for the whole batch: `fused_linear_cross_entropy`
  runs the LM head chunk by chunk, computes the gradient of each chunk on the spot (as Liger's fused
  linear cross-entropy does) and keeps only grad(hidden) and grad(W_head), so peak memory holds one
  chunk of logits instead of [B*T, V] logits, their softmax and their gradient.

Public contract (used by training, evaluation and generation):
- `model(input_ids) -> logits [B, T, V]` (plain call; for short evaluation inputs).
- `model(input_ids, targets=..., loss_mask=..., z_loss_weight=..., normalizer=...) -> LossOutput`: the
  training loss; masked positions contribute exactly nothing (weight 0 in value and gradient).
- `model.token_logprobs(input_ids, targets=None) -> [B, T-1]`: log p(x_t | x_<t), chunk-wise.
- Incremental decoding: `cache = model.new_cache(batch, max_len)`, then
  `model(ids, cache=cache, attention_mask=mask)` for the (left-padded) prompts and
  `model(next_ids, cache=cache)` per step. Positions are counted per row from the valid tokens, so
  left padding changes nothing for the real tokens.
- Per-document attention: pass `segment_ids [B, T]` (the loader's) and tokens only attend within their
  own document. RoPE is relative, so positions need no reset. `model.document_attention` picks how:
  "auto" (FlexAttention block masks on CUDA, a dense boolean mask through SDPA elsewhere), "flex" or
  "dense" (model/document_attention.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask
from torch.utils.checkpoint import checkpoint

from sodakit.model.config import ModelConfig
from sodakit.model.document_attention import document_block_mask, flex_attend, use_flex

# Logits computed at once by the chunked loss (fp32 elements). GPU: 2**27 = 512 MiB (~930 rows at the
# 144,644 SODA vocabulary): big matmuls. CPU: 2**22 = 16 MiB, so a chunk stays in cache (measured 2.5x
# faster than 2**26 at vocabulary 8192).
DEFAULT_CE_CHUNK_ELEMENTS = {"cuda": 2**27, "cpu": 2**22}
# Every chunk also adds its part of grad(W_head) [V, d] into an fp32 accumulator: a few passes over V*d
# against about ten passes over rows*V for the chunk's softmax, so rows >= d keeps the accumulation
# a minor cost; with 2*d it stays under ~15% (and in bf16 on CPU the matmuls are cheap enough that it
# otherwise dominates). The floor keeps tiny models from degenerate one-row chunks.
CE_ROWS_PER_WIDTH = 2
MIN_CE_ROWS = 64


# ---------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 (as Qwen3 does), scaled by a learned weight, output in the input dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return y * self.weight.to(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> Tensor:
    """RoPE inverse frequencies over head_dim, with Llama-3 frequency scaling when configured."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.rope_scaling
    if rs is None:
        return inv_freq
    # Llama 3.1: wavelengths longer than the original context / low_freq_factor are slowed down by
    # `factor`, shorter than original / high_freq_factor are kept, and the band between is interpolated.
    low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor
    high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq)
    smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) / (
        rs.high_freq_factor - rs.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope_cos_sin(inv_freq: Tensor, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin [B|1, T, 1, head_dim/2] for positions [B|1, T] (angles computed in fp32)."""
    angles = positions[..., None].float() * inv_freq.float()
    return angles.cos().to(dtype)[:, :, None, :], angles.sin().to(dtype)[:, :, None, :]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, T, H, hd] by position; halves convention (the one Hugging Face Qwen3 uses)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def _native_gqa_ok(q: Tensor, mask: Tensor | None) -> bool:
    """Whether SDPA can run grouped-query attention natively in a fused kernel for these inputs:
    the CPU flash kernel does; on GPU only flash attention does (half precision, no explicit mask)."""
    if q.device.type == "cpu":
        return mask is None
    return mask is None and q.dtype in (torch.bfloat16, torch.float16)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.wqkv = nn.Linear(cfg.d_model, q_dim + 2 * kv_dim, bias=False)
        self.wo = nn.Linear(q_dim, cfg.d_model, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | BlockMask | None,
                cache: KVCache | None) -> Tensor:
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.wqkv(x).split([self.n_heads * hd, self.n_kv_heads * hd, self.n_kv_heads * hd], dim=-1)
        q = apply_rope(self.q_norm(q.view(b, t, self.n_heads, hd)), cos, sin).transpose(1, 2)
        k = apply_rope(self.k_norm(k.view(b, t, self.n_kv_heads, hd)), cos, sin).transpose(1, 2)
        v = v.view(b, t, self.n_kv_heads, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        gqa = self.n_heads != self.n_kv_heads
        if isinstance(mask, BlockMask):
            y = flex_attend(q, k, v, mask, enable_gqa=gqa)
            return self.wo(y.transpose(1, 2).reshape(b, t, self.n_heads * hd))
        if gqa and not _native_gqa_ok(q, mask):
            # Only the flash kernels honour enable_gqa; anything else would silently run the slow
            # "math" kernel, so expand K/V for the memory-efficient kernel instead.
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            gqa = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa)
        return self.wo(y.transpose(1, 2).reshape(b, t, self.n_heads * hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up fused into one matmul."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w_gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.w_down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w_gate_up(x).chunk(2, dim=-1)
        return self.w_down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | BlockMask | None,
                cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.mlp(self.mlp_norm(x))


# ---------------------------------------------------------------------------------------------------
# KV cache for incremental decoding
# ---------------------------------------------------------------------------------------------------
class KVCache:
    """Pre-allocated keys/values for every layer plus which slots hold real (non-padding) tokens.

    Slots are shared by the rows of the batch (left-padded prompts line up on the right), so one
    `length` counts the filled slots; `valid [B, max_len]` marks padding, and `next_pos [B]` is each
    row's next RoPE position (its count of real tokens so far).
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device, dtype: torch.dtype) -> None:
        shape = (batch_size, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.length = 0
        self.max_len = max_len
        self.batch_size = batch_size

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write the new keys/values after the filled slots; return all keys/values so far."""
        start, stop = self.length, self.length + k.shape[2]
        self.k[layer][:, :, start:stop] = k
        self.v[layer][:, :, start:stop] = v
        return self.k[layer][:, :, :stop], self.v[layer][:, :, :stop]

    def reorder(self, index: Tensor) -> None:
        """Keep/reorder batch rows (beam search, dropping finished rows)."""
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.valid = self.valid.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)
        self.batch_size = int(index.numel())


# ---------------------------------------------------------------------------------------------------
# Chunked LM head + cross-entropy + z-loss
# ---------------------------------------------------------------------------------------------------
@dataclass
class LossOutput:
    """What the training loss returns.

    loss: (sum_i w_i * (ce_i + z * lse_i^2)) / normalizer -- the scalar to backpropagate.
    ce_sum / z_sum: sums of cross-entropy and lse^2 over unmasked positions (detached, fp32).
    num_tokens: number of unmasked positions.
    token_nll: per-position cross-entropy [B, T] (detached, fp32; 0 where masked) for per-type metrics.
    """

    loss: Tensor
    ce_sum: Tensor
    z_sum: Tensor
    num_tokens: Tensor
    token_nll: Tensor


def _chunk_rows(vocab_size: int, width: int, chunk_elements: int) -> int:
    return max(MIN_CE_ROWS, CE_ROWS_PER_WIDTH * width, chunk_elements // vocab_size)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """sum_i w_i * (lse_i - logit_i[y_i] + z * lse_i^2) with logits = h @ W^T, chunk by chunk.

    When gradients are needed they are computed in the forward pass, chunk by chunk (the logits of a
    chunk are turned into d loss / d logits in place), so nothing of size [N, V] outlives a chunk.
    The backward pass only scales the stored grad(h) and grad(W) by the incoming scalar gradient.
    Returns (total, nll [N], lse [N]); nll and lse are not differentiable.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor, weights: Tensor, z: float, rows: int, dtype):
        ctx.h_dtype, ctx.weight_dtype = h.dtype, weight.dtype
        with torch.autocast(h.device.type, enabled=False):  # the compute dtype is explicit
            return _FusedLinearCrossEntropy._forward(ctx, h.to(dtype), weight.to(dtype), targets, weights, z, rows)

    @staticmethod
    def _forward(ctx, h: Tensor, w_mat: Tensor, targets: Tensor, weights: Tensor, z: float, rows: int):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, vocab = h.shape[0], w_mat.shape[0]
        nll = torch.empty(n, dtype=torch.float32, device=h.device)
        lse = torch.empty(n, dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.empty(w_mat.shape, dtype=torch.float32, device=h.device) if need_w else None
        # One logits buffer reused by every chunk (fp32), plus one in the compute dtype when that is not
        # fp32: no allocation per chunk, and on CPU a chunk stays cache-resident.
        rows = min(rows, n)
        buf = torch.empty(rows, vocab, dtype=torch.float32, device=h.device)
        low = None if h.dtype == torch.float32 else torch.empty(rows, vocab, dtype=h.dtype, device=h.device)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            hc, tc, wc = h[s:e], targets[s:e], weights[s:e]
            logits = buf[: e - s]
            if low is None:
                torch.mm(hc, w_mat.t(), out=logits)
            else:
                logits.copy_(torch.mm(hc, w_mat.t(), out=low[: e - s]))
            target_logit = logits.gather(1, tc[:, None]).squeeze(1)
            top = logits.amax(dim=-1)
            probs = logits.sub_(top[:, None]).exp_()  # in place: the buffer now holds exp(logit - max)
            total_exp = probs.sum(dim=-1)
            lse_c = top + total_exp.log()
            nll[s:e] = lse_c - target_logit
            lse[s:e] = lse_c
            if need_h or need_w:
                # d/dlogits of w*(lse - logit_y + z*lse^2) = w*(1 + 2z*lse)*softmax - w*onehot(y)
                probs.mul_((wc * (1.0 + 2.0 * z * lse_c) / total_exp)[:, None])
                probs.scatter_add_(1, tc[:, None], -wc[:, None])
                g = probs if low is None else low[: e - s].copy_(probs)
                if need_h:
                    torch.mm(g, w_mat, out=grad_h[s:e])
                if need_w:  # the first chunk writes the accumulator, later ones add to it
                    if low is None:
                        if s == 0:
                            torch.mm(g.t(), hc, out=grad_w)
                        else:
                            grad_w.addmm_(g.t(), hc)
                    elif s == 0:
                        grad_w.copy_(g.t() @ hc)
                    else:
                        grad_w.add_(g.t() @ hc)
        if grad_w is not None and n == 0:
            grad_w.zero_()
        total = (weights * (nll + z * lse.square())).sum()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(nll, lse)
        return total, nll, lse

    @staticmethod
    def backward(ctx, grad_total: Tensor, _grad_nll, _grad_lse):
        grad_h, grad_w = ctx.saved_tensors
        # In place: these buffers exist only for this backward (no double backward through the loss).
        gh = grad_h.mul_(grad_total.to(grad_h.dtype)).to(ctx.h_dtype) if grad_h is not None else None
        gw = grad_w.mul_(grad_total).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None


def fused_linear_cross_entropy(
    h: Tensor,
    weight: Tensor,
    targets: Tensor,
    weights: Tensor,
    z_loss_weight: float = 0.0,
    chunk_elements: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """h [N, d], weight [V, d], targets [N] (any value where weights == 0), weights [N] float.

    Returns (total, nll [N], lse [N]) where total = sum_i weights_i * (nll_i + z * lse_i^2).
    chunk_elements: logits per chunk; None picks the device default (DEFAULT_CE_CHUNK_ELEMENTS).
    """
    if chunk_elements is None:
        chunk_elements = DEFAULT_CE_CHUNK_ELEMENTS["cuda" if h.is_cuda else "cpu"]
    safe_targets = torch.where(weights != 0, targets, torch.zeros_like(targets))
    rows = _chunk_rows(weight.shape[0], weight.shape[1], chunk_elements)
    # Matmuls in the hidden states' dtype (bf16 under FSDP mixed precision), or autocast's when it is on.
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    return _FusedLinearCrossEntropy.apply(h, weight, safe_targets, weights.float(), float(z_loss_weight), rows, dtype)


# ---------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------
class Qwen3(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # RoPE frequencies stay fp32 whatever dtype the weights are cast to, so they are not a buffer.
        self._inv_freq: dict[torch.device, Tensor] = {}
        self.activation_checkpointing = False
        self.ce_chunk_elements: int | None = None  # None: device default
        self.document_attention = "auto"  # with segment_ids: "auto" (flex on CUDA, else dense), "flex", "dense"
        self.init_weights()

    # ---- setup ----------------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """N(0, init_std) for embeddings and every linear weight, ones for norms.

        With a (CPU) `generator`, weights are drawn on the CPU and copied, so they do not depend on the
        device or the process: every rank of a data-parallel run starts from the same weights.
        """
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                if generator is None:
                    module.weight.normal_(0.0, std)
                else:
                    w = torch.empty(module.weight.shape, dtype=torch.float32).normal_(0.0, std, generator=generator)
                    module.weight.copy_(w)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
        self._inv_freq.clear()

    def inv_freq(self, device: torch.device) -> Tensor:
        if device not in self._inv_freq:
            self._inv_freq[device] = rope_inv_freq(self.cfg).to(device)
        return self._inv_freq[device]

    @property
    def head_weight(self) -> Tensor:
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        p = self.embed.weight
        return KVCache(self.cfg, batch_size, max_len, p.device, dtype or p.dtype)

    # ---- trunk ----------------------------------------------------------------------------------
    def hidden_states(
        self,
        input_ids: Tensor,
        positions: Tensor | None = None,
        segment_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Final-norm hidden states [B, T, d].

        attention_mask [B, T] (1 = real token, 0 = padding) marks padding of the new tokens; with a
        cache the earlier slots keep the padding recorded when they were written.
        """
        b, t = input_ids.shape
        x = self.embed(input_ids)
        device = input_ids.device
        if attention_mask is not None:
            attention_mask = attention_mask.to(device=device, dtype=torch.bool)
        explicit_positions = positions is not None
        if positions is None:
            if attention_mask is not None:
                offset = cache.next_pos[:, None] if cache is not None else 0
                positions = (torch.cumsum(attention_mask.long(), dim=1) - 1).clamp_min(0) + offset
            elif cache is not None:
                positions = cache.next_pos[:, None] + torch.arange(t, device=device)[None, :]
            else:
                positions = torch.arange(t, device=device)[None, :]
        cos, sin = rope_cos_sin(self.inv_freq(device), positions, x.dtype)
        mask: Tensor | BlockMask | None
        if (segment_ids is not None and attention_mask is None and cache is None
                and use_flex(self.document_attention, device)):
            mask = document_block_mask(segment_ids.to(device))
        else:
            mask = self._attention_mask(b, t, device, segment_ids, attention_mask, cache)
        for layer in self.layers:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask, cache, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache)
        if cache is not None:
            cache.valid[:, cache.length : cache.length + t] = True if attention_mask is None else attention_mask
            if explicit_positions:
                cache.next_pos = (positions[:, -1] + 1).expand(b).clone()
            else:
                cache.next_pos = cache.next_pos + (t if attention_mask is None else attention_mask.sum(1))
            cache.length += t
        return self.norm(x)

    @staticmethod
    def _attention_mask(
        b: int,
        t: int,
        device: torch.device,
        segment_ids: Tensor | None,
        attention_mask: Tensor | None,
        cache: KVCache | None,
    ) -> Tensor | None:
        """Boolean mask [B, 1, T, S] (True = may attend), or None for the plain causal fast path.

        Every query may always attend to itself, so padding rows never become all-masked (which would
        give NaN through SDPA and leak into the cache); real tokens never see padding.
        """
        past = cache.length if cache is not None else 0
        if segment_ids is None and attention_mask is None and past == 0:
            return None
        if cache is not None and past + t > cache.max_len:
            raise ValueError(f"KV cache full: {past} + {t} tokens > max_len {cache.max_len}")
        q_idx = torch.arange(past, past + t, device=device)[:, None]
        k_idx = torch.arange(past + t, device=device)[None, :]
        allowed = (k_idx <= q_idx)[None, None]  # [1, 1, T, S]
        if segment_ids is not None:
            if past:
                raise ValueError("segment_ids are for training-style full sequences, not cached decoding")
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            allowed = allowed & same[:, None]
        key_valid = None
        if cache is not None:
            key_valid = cache.valid[:, : past + t].clone()
            key_valid[:, past:] = attention_mask if attention_mask is not None else True
        elif attention_mask is not None:
            key_valid = attention_mask
        if key_valid is not None:
            allowed = allowed & key_valid[:, None, None, :]
            allowed = allowed | (k_idx == q_idx)[None, None]
        return allowed.expand(b, 1, t, past + t) if allowed.shape[0] != b else allowed

    # ---- heads ----------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        targets: Tensor | None = None,
        *,
        loss_mask: Tensor | None = None,
        z_loss_weight: float = 0.0,
        normalizer: float | Tensor | None = None,
        positions: Tensor | None = None,
        segment_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor | LossOutput:
        """Logits [B, T, V] (no targets), or the chunked training loss as a `LossOutput` (targets [B, T]).

        With targets, position t is scored on targets[:, t] (the caller shifts: inputs = tokens[:, :-1],
        targets = tokens[:, 1:]). loss_mask [B, T] (0/1 or weights) removes positions from value and
        gradient. normalizer divides the weighted sum (default: number of unmasked positions); the
        trainer passes the global token count so gradient accumulation and data parallelism average
        over all tokens of the global batch.
        """
        h = self.hidden_states(input_ids, positions, segment_ids, attention_mask, cache)
        if targets is None:
            return F.linear(h, self.head_weight.to(h.dtype))
        if targets.shape != input_ids.shape:
            raise ValueError(f"targets shape {tuple(targets.shape)} != input_ids shape {tuple(input_ids.shape)}")
        b, t = targets.shape
        if loss_mask is None:
            weights = torch.ones(b * t, dtype=torch.float32, device=h.device)
        else:
            if loss_mask.shape != targets.shape:
                raise ValueError(f"loss_mask shape {tuple(loss_mask.shape)} != targets shape {tuple(targets.shape)}")
            weights = loss_mask.reshape(-1).to(device=h.device, dtype=torch.float32)
        total, nll, lse = fused_linear_cross_entropy(
            h.reshape(b * t, -1),
            self.head_weight,
            targets.reshape(-1),
            weights,
            z_loss_weight,
            self.ce_chunk_elements,
        )
        active = weights != 0
        num_tokens = weights.sum()
        if normalizer is None:
            normalizer = num_tokens.clamp_min(1.0)
        token_nll = torch.where(active, nll, torch.zeros_like(nll)).view(b, t)
        return LossOutput(
            loss=total / normalizer,
            ce_sum=(weights * nll).sum().detach(),
            z_sum=(weights * lse.square()).sum().detach(),
            num_tokens=num_tokens.detach(),
            token_nll=token_nll.detach(),
        )

    @torch.no_grad()
    def token_logprobs(
        self,
        input_ids: Tensor,
        targets: Tensor | None = None,
        *,
        attention_mask: Tensor | None = None,
        segment_ids: Tensor | None = None,
    ) -> Tensor:
        """Log-probabilities (fp32), computed chunk-wise without full fp32 logits.

        targets None: [B, T-1], entry t-1 = log p(input_ids[:, t] | input_ids[:, :t]).
        targets [B, T]: [B, T], entry t = log p(targets[:, t] | input_ids[:, :t+1]).
        """
        if targets is None:
            if input_ids.shape[1] < 2:
                raise ValueError("token_logprobs needs at least 2 tokens per row")
            inputs, targets = input_ids[:, :-1], input_ids[:, 1:]
            if attention_mask is not None:
                attention_mask = attention_mask[:, :-1]
            if segment_ids is not None:
                segment_ids = segment_ids[:, :-1]
        else:
            inputs = input_ids
        out = self(inputs, targets, attention_mask=attention_mask, segment_ids=segment_ids)
        assert isinstance(out, LossOutput)
        return -out.token_nll


def build_model(cfg: ModelConfig, device: torch.device | str | None = None, seed: int | None = None) -> Qwen3:
    """A freshly initialised fp32 model on `device`; with `seed`, identical weights on every process.

    The module is built on the meta device first, so no time is spent on a throw-away initialisation.
    """
    with torch.device("meta"):
        model = Qwen3(cfg)
    model.to_empty(device=device or "cpu")
    gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    model.init_weights(gen)
    return model
