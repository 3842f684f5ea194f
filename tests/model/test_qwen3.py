"""The decoder's contract: chunked loss == naive loss, masking, logprobs, KV cache, document masking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sodakit.model import qwen3
from sodakit.model.config import ModelConfig, RopeScaling, count_params
from sodakit.model.qwen3 import build_model, rope_inv_freq

V = 300
CFG = ModelConfig(
    vocab_size=V, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=24, d_ff=96, max_seq_len=128,
    rope_scaling=RopeScaling(original_max_position_embeddings=32),
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(CFG, seed=0)
    m.ce_chunk_elements = V * 7  # 7 rows per chunk: several chunks per batch, the last one ragged
    return m


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(qwen3, "MIN_CE_ROWS", 1)
    monkeypatch.setattr(qwen3, "CE_ROWS_PER_WIDTH", 0)


def naive_loss(model, x, y, mask, z):
    logits = model(x).float().reshape(-1, V)
    ce = F.cross_entropy(logits, y.reshape(-1), reduction="none")
    lse = torch.logsumexp(logits, dim=-1)
    m = mask.reshape(-1).float()
    return ((ce + z * lse**2) * m).sum() / m.sum(), ce


def grads(model):
    g = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return g


def test_chunked_loss_matches_naive_value_and_gradients(model):
    ids = torch.randint(0, V, (3, 41))
    x, y = ids[:, :-1], ids[:, 1:]
    mask = (torch.rand(3, 40) > 0.3).float()
    out = model(x, y, loss_mask=mask, z_loss_weight=1e-2)
    out.loss.backward()
    g_ours = grads(model)
    ref, ce = naive_loss(model, x, y, mask, 1e-2)
    ref.backward()
    g_ref = grads(model)
    assert torch.allclose(out.loss, ref, rtol=1e-5, atol=1e-6)
    for name in g_ref:
        assert torch.allclose(g_ours[name], g_ref[name], rtol=1e-4, atol=1e-6), name
    assert torch.allclose(out.token_nll.reshape(-1), ce.detach() * mask.reshape(-1), atol=1e-5)
    assert out.num_tokens.item() == mask.sum().item()
    assert torch.allclose(out.ce_sum, (ce.detach() * mask.reshape(-1)).sum(), rtol=1e-5)


def test_masked_positions_contribute_nothing(model):
    ids = torch.randint(0, V, (2, 25))
    x, y = ids[:, :-1], ids[:, 1:].clone()
    mask = torch.ones(2, 24)
    mask[:, :10] = 0  # e.g. a fine-tuning prompt
    out1 = model(x, y, loss_mask=mask, z_loss_weight=1e-4)
    out1.loss.backward()
    g1 = grads(model)
    y2 = y.clone()
    y2[:, :10] = torch.randint(0, V, (2, 10))  # change only masked targets
    out2 = model(x, y2, loss_mask=mask, z_loss_weight=1e-4)
    out2.loss.backward()
    g2 = grads(model)
    assert torch.equal(out1.loss, out2.loss)
    for name in g1:
        assert torch.equal(g1[name], g2[name]), name
    assert torch.all(out1.token_nll[:, :10] == 0)


def test_token_logprobs(model):
    ids = torch.randint(0, V, (2, 17))
    with torch.no_grad():
        ref = torch.log_softmax(model(ids[:, :-1]).float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    lp = model.token_logprobs(ids)
    assert lp.shape == (2, 16)
    assert torch.allclose(lp, ref, atol=1e-5)
    lp_t = model.token_logprobs(ids[:, :-1], targets=ids[:, 1:])
    assert torch.allclose(lp_t, ref, atol=1e-5)


def test_kv_cache_greedy_equals_full_forward_argmax(model):
    model.eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, V, (n,), generator=g) for n in (5, 11, 1)]
    b, length, steps = len(prompts), max(len(p) for p in prompts), 6
    ids = torch.zeros(b, length, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding
        ids[i, length - len(p) :] = p
        mask[i, length - len(p) :] = 1
    with torch.no_grad():
        cache = model.new_cache(b, length + steps)
        logits = model(ids, cache=cache, attention_mask=mask)
        for i, p in enumerate(prompts):  # padding changes nothing for the real tokens
            assert torch.allclose(logits[i, length - len(p) :], model(p[None])[0], atol=1e-5)
        nxt = logits[:, -1].argmax(-1)
        got = [nxt]
        for _ in range(steps - 1):
            nxt = model(nxt[:, None], cache=cache)[:, -1].argmax(-1)
            got.append(nxt)
        got = torch.stack(got, 1)
        for i, p in enumerate(prompts):
            seq = p.clone()
            for _ in range(steps):
                seq = torch.cat([seq, model(seq[None])[0, -1].argmax()[None]])
            assert got[i].tolist() == seq[len(p) :].tolist()
    assert cache.length == length + steps - 1
    assert cache.next_pos.tolist() == [len(p) + steps - 1 for p in prompts]
    model.train()


def test_document_masking_isolates_documents(model):
    a, b = torch.randint(0, V, (1, 7)), torch.randint(0, V, (1, 9))
    packed = torch.cat([a, b], 1)
    seg = torch.tensor([[0] * 7 + [1] * 9])
    with torch.no_grad():
        both = model(packed, segment_ids=seg)
        alone = model(b)
        unmasked = model(packed)
    assert torch.allclose(both[:, 7:], alone, atol=1e-5)  # RoPE is relative: no position reset needed
    assert not torch.allclose(unmasked[:, 7:], alone, atol=1e-3)


def test_flex_attention_document_masking_gives_the_dense_masks_logits():
    """FlexAttention with a block mask (what CUDA uses) against the dense boolean mask (the CPU path), on
    documents that cross the 128-token tiles of the block mask, with grouped-query attention."""
    model = build_model(CFG.replace(max_seq_len=256), seed=2)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (2, 160), generator=g)
    seg = torch.cumsum(torch.rand(2, 160, generator=g) < 0.04, dim=1)  # a few documents per row
    seg[1, 100:] += 7  # a document boundary just before a tile boundary
    model.eval()
    try:
        with torch.no_grad():
            model.document_attention = "dense"
            dense = model(ids, segment_ids=seg)
            model.document_attention = "flex"
            flex = model(ids, segment_ids=seg)
            unmasked = model(ids)
    finally:
        model.document_attention = "auto"
    assert (flex - dense).abs().max().item() < 1e-5
    assert (unmasked - dense).abs().max().item() > 1e-2  # the masks did restrict attention
    assert model.document_attention == "auto" and not qwen3.use_flex("auto", torch.device("cpu"))
    with pytest.raises(ValueError, match="document attention 'sparse' unknown"):
        qwen3.use_flex("sparse", torch.device("cpu"))


def test_activation_checkpointing_same_gradients():
    m = build_model(CFG, seed=3)
    ids = torch.randint(0, V, (2, 21))
    m(ids[:, :-1], ids[:, 1:]).loss.backward()
    g1 = grads(m)
    m.activation_checkpointing = True
    m(ids[:, :-1], ids[:, 1:]).loss.backward()
    g2 = grads(m)
    for name in g1:
        assert torch.allclose(g1[name], g2[name], atol=1e-7), name


def test_param_count_and_init():
    m = build_model(CFG, seed=0)
    counts = count_params(CFG)
    assert sum(p.numel() for p in m.parameters()) == counts.total
    assert abs(m.embed.weight.std().item() - 0.02) < 2e-3
    assert torch.equal(build_model(CFG, seed=0).lm_head.weight, m.lm_head.weight)
    tied = build_model(CFG.replace(tie_embeddings=True), seed=0)
    assert tied.lm_head is None and sum(p.numel() for p in tied.parameters()) == count_params(tied.cfg).total


def test_llama3_rope_scaling_slows_low_frequencies():
    plain = rope_inv_freq(CFG.replace(rope_scaling=None))
    scaled = rope_inv_freq(CFG)
    assert torch.allclose(scaled[0], plain[0])  # highest frequency untouched
    assert torch.allclose(scaled[-1], plain[-1] / 8)  # lowest slowed by the factor


def test_bad_shapes_are_refused(model):
    ids = torch.randint(0, V, (2, 8))
    with pytest.raises(ValueError, match="targets shape"):
        model(ids, ids[:, :-1])
    with pytest.raises(ValueError, match="loss_mask shape"):
        model(ids, ids, loss_mask=torch.ones(2, 7))


def test_fused_loss_bf16_compute_path():
    """bf16 hidden states (FSDP mixed precision): same loss and gradients as fp32 up to bf16 rounding."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 16, generator=g)
    w = torch.randn(50, 16, generator=g) * 0.3
    t = torch.randint(0, 50, (37,), generator=g)
    weights = (torch.rand(37, generator=g) > 0.2).float()
    h32, w32 = h.clone().requires_grad_(), w.clone().requires_grad_()
    total32, _, _ = qwen3.fused_linear_cross_entropy(h32, w32, t, weights, 1e-3, chunk_elements=50 * 8)
    total32.backward()
    h16, w16 = h.bfloat16().requires_grad_(), w.bfloat16().requires_grad_()
    total16, _, _ = qwen3.fused_linear_cross_entropy(h16, w16, t, weights, 1e-3, chunk_elements=50 * 8)
    total16.backward()
    assert h16.grad.dtype == torch.bfloat16 and w16.grad.dtype == torch.bfloat16
    assert torch.allclose(total16, total32, rtol=2e-2)
    assert torch.allclose(h16.grad.float(), h32.grad, atol=2e-2)
    assert torch.allclose(w16.grad.float(), w32.grad, atol=2e-2)


def test_fused_loss_follows_autocast(model):
    """Under bf16 autocast (fp32 weights), the head runs in bf16 and returns fp32 gradients."""
    ids = torch.randint(0, V, (2, 30))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids[:, :-1], ids[:, 1:])
    out.loss.backward()
    g = grads(model)
    assert g["lm_head.weight"].dtype == torch.float32 and g["embed.weight"].dtype == torch.float32
    ref = model(ids[:, :-1], ids[:, 1:])
    assert torch.allclose(out.loss, ref.loss, rtol=2e-2)
    model.zero_grad(set_to_none=True)
