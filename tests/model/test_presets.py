"""The four SODA presets are shapes of docs/soda.md#model, and their parameter counts are pinned by hand.

The expected counts below are worked out matrix by matrix in this file (not read back from
`count_params`), then cross-checked against the modules themselves, built on the meta device so no
memory is spent on the 144,644 x d embeddings.
"""

from __future__ import annotations

import pytest
import torch

from sodakit.model import hf
from sodakit.model.config import PRESETS, SODA_VOCAB_SIZE, ModelConfig, RopeScaling, count_params
from sodakit.model.qwen3 import Qwen3

# docs/soda.md#model table: name -> (d_model, layers, heads, kv heads, head_dim, FFN)
SPEC_SHAPES = {
    "135M": (512, 15, 8, 8, 64, 1792),
    "600M": (1024, 28, 16, 8, 128, 3072),
    "1.7B": (2048, 28, 16, 8, 128, 6144),
    "4B": (2560, 36, 32, 8, 128, 9728),
}

# Hand-computed counts (vocab V = 144,644, untied embeddings). Per layer:
#   q: d*h*hd, k and v: d*kv*hd each, o: h*hd*d, SwiGLU: 3*d*ff, norms: 2*d (pre-attn, pre-MLP) + 2*hd (QK-norm)
# non-embedding = L * per_layer + d (final norm); embedding = 2 * V * d (input + output matrix).
#
# 135M: attn 4*512*512 = 1,048,576; mlp 3*512*1792 = 2,752,512; norms 1,152 -> layer 3,802,240
#       15 * 3,802,240 + 512 = 57,034,112; V*d = 74,057,728
# 600M: attn 1024*2048*2 + 1024*1024*2 = 6,291,456; mlp 3*1024*3072 = 9,437,184; norms 2,304
#       -> layer 15,730,944; 28 * 15,730,944 + 1,024 = 440,467,456; V*d = 148,115,456
# 1.7B: attn 2048*2048*2 + 2048*1024*2 = 12,582,912; mlp 3*2048*6144 = 37,748,736; norms 4,352
#       -> layer 50,336,000; 28 * 50,336,000 + 2,048 = 1,409,410,048; V*d = 296,230,912
# 4B:   attn 2560*4096*2 + 2560*1024*2 = 26,214,400; mlp 3*2560*9728 = 74,711,040; norms 5,376
#       -> layer 100,930,816; 36 * 100,930,816 + 2,560 = 3,633,511,936; V*d = 370,288,640
EXPECTED = {
    # name: (non_embedding, one embedding matrix)
    "135M": (57_034_112, 74_057_728),
    "600M": (440_467_456, 148_115_456),
    "1.7B": (1_409_410_048, 296_230_912),
    "4B": (3_633_511_936, 370_288_640),
}
# docs/soda.md#model: non-embedding counts 57M, 440M, 1.41B, 3.63B; the names count one embedding matrix.
SPEC_NON_EMBEDDING_ROUNDED = {"135M": 57.0e6, "600M": 440.5e6, "1.7B": 1.41e9, "4B": 3.63e9}
SPEC_NAMED = {"135M": 135e6, "600M": 600e6, "1.7B": 1.7e9, "4B": 4.0e9}

SODA = sorted(SPEC_SHAPES)


def _by_hand(d: int, n_layers: int, h: int, kv: int, hd: int, ff: int) -> int:
    per_layer = d * h * hd + d * kv * hd + d * kv * hd + h * hd * d + 3 * d * ff + 2 * d + 2 * hd
    return n_layers * per_layer + d


def test_presets_are_exactly_the_four_soda_sizes_plus_small_ones():
    assert set(SPEC_SHAPES) <= set(PRESETS)
    assert SODA_VOCAB_SIZE == 144_644


@pytest.mark.parametrize("name", SODA)
def test_preset_shape_matches_spec(name):
    cfg = PRESETS[name]
    d, n_layers, h, kv, hd, ff = SPEC_SHAPES[name]
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff) == (d, n_layers, h, kv, hd, ff)
    assert cfg.vocab_size == 144_644
    assert cfg.tie_embeddings is False
    assert cfg.max_seq_len == 4096
    assert cfg.rope_theta == 500_000.0
    assert cfg.rope_scaling == RopeScaling(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
    )
    assert cfg.norm_eps == 1e-5
    assert cfg.init_std == 0.02


@pytest.mark.parametrize("name", SODA)
def test_count_params_pinned(name):
    non_emb, one_matrix = EXPECTED[name]
    # the hand numbers in the comment and the formula agree
    assert _by_hand(*SPEC_SHAPES[name]) == non_emb
    assert one_matrix == 144_644 * SPEC_SHAPES[name][0]
    counts = count_params(PRESETS[name])
    assert counts.non_embedding == non_emb
    assert counts.embedding == 2 * one_matrix
    assert counts.total == non_emb + 2 * one_matrix
    assert counts.named == non_emb + one_matrix
    # and the rounded figures of docs/soda.md#model
    assert counts.non_embedding == pytest.approx(SPEC_NON_EMBEDDING_ROUNDED[name], rel=2e-3)
    assert counts.named == pytest.approx(SPEC_NAMED[name], rel=0.05)


def test_total_counts_pinned():
    totals = {name: count_params(PRESETS[name]).total for name in SODA}
    assert totals == {
        "135M": 205_149_568,
        "600M": 736_698_368,
        "1.7B": 2_001_871_872,
        "4B": 4_374_089_216,
    }


def test_tied_embeddings_count_one_matrix():
    cfg = PRESETS["600M"].replace(tie_embeddings=True)
    counts = count_params(cfg)
    assert counts.embedding == 148_115_456
    assert counts.total == counts.named == 440_467_456 + 148_115_456


@pytest.mark.parametrize("name", SODA)
def test_count_params_matches_built_module(name):
    cfg = PRESETS[name]
    with torch.device("meta"):
        model = Qwen3(cfg)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    embedding = params["embed.weight"].numel() + params["lm_head.weight"].numel()
    non_emb, one_matrix = EXPECTED[name]
    assert total == non_emb + 2 * one_matrix
    assert embedding == 2 * one_matrix
    assert not any("bias" in n for n in params)  # docs/soda.md#model: no biases


@pytest.mark.parametrize("name", SODA)
def test_preset_hf_config_and_transformers_param_count(name):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = PRESETS[name]
    raw = hf.to_hf_config(cfg)
    assert raw["vocab_size"] == 144_644
    assert raw["tie_word_embeddings"] is False
    assert raw["rope_parameters"] == {
        "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
    }
    assert raw["max_position_embeddings"] == 4096
    assert raw["rms_norm_eps"] == 1e-5
    assert hf.from_hf_config(raw) == cfg
    hcfg = Qwen3Config(**{k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype", "dtype")})
    with torch.device("meta"):
        theirs = Qwen3ForCausalLM(hcfg)
    non_emb, one_matrix = EXPECTED[name]
    assert sum(p.numel() for p in theirs.parameters()) == non_emb + 2 * one_matrix


def test_small_presets_are_valid_configs():
    for name in ("tiny", "mini"):
        cfg = PRESETS[name]
        assert isinstance(cfg, ModelConfig)
        assert cfg.n_heads % cfg.n_kv_heads == 0
