"""Model shapes: the Qwen3-style decoder's config, SODA presets, parameter and FLOP accounting.

FLOP accounting is shared by training (MFU), the scaling planner and the fitters, so there is one
definition of each convention here (docs/soda.md#isoflop-sweep):

- `forward_flops_per_token`: SODA's forward count, attention (with the full sequence length) and LM head
  included, embedding lookups not. Training FLOPs per token = 3 x that ("paper" convention).
- `6N`: 6 x parameters per token, N either all parameters or the non-embedding ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SODA_VOCAB_SIZE = 144_644


@dataclass
class RopeScaling:
    """Llama-3 style RoPE frequency scaling (SODA: factor 8, low 1, high 4, original 8192)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass
class ModelConfig:
    vocab_size: int = SODA_VOCAB_SIZE
    d_model: int = 512
    n_layers: int = 15
    n_heads: int = 8
    n_kv_heads: int = 8
    head_dim: int = 64
    d_ff: int = 1792
    max_seq_len: int = 4096
    rope_theta: float = 500_000.0
    # None disables scaling; SODA uses the Llama-3 rule.
    rope_scaling: RopeScaling | None = field(default_factory=RopeScaling)
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # SODA keeps input and output embeddings separate ("untied").
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"ModelConfig.n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )

    def replace(self, **changes: object) -> ModelConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# docs/soda.md#model. The names count one embedding matrix of the 144,644-token vocabulary.
PRESETS: dict[str, ModelConfig] = {
    "135M": ModelConfig(d_model=512, n_layers=15, n_heads=8, n_kv_heads=8, head_dim=64, d_ff=1792),
    "600M": ModelConfig(d_model=1024, n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128, d_ff=3072),
    "1.7B": ModelConfig(d_model=2048, n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128, d_ff=6144),
    "4B": ModelConfig(d_model=2560, n_layers=36, n_heads=32, n_kv_heads=8, head_dim=128, d_ff=9728),
    # CPU-sized shapes for tests, the demo and laptop sweeps (vocab set by the data at train time).
    "tiny": ModelConfig(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32, d_ff=384, max_seq_len=1024),
    "mini": ModelConfig(d_model=256, n_layers=6, n_heads=4, n_kv_heads=4, head_dim=64, d_ff=768, max_seq_len=2048),
}

# Width used by SODA's peak-LR rule for each preset (the 135M model uses 1024 there, docs/soda.md#training-recipe).
LR_RULE_WIDTH = {"135M": 1024}


def preset(name: str, **overrides: object) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)


@dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int  # input embedding + (untied) output embedding
    non_embedding: int
    # Non-embedding + a single embedding matrix: how the SODA model names (135M, ...) are counted.
    named: int


def count_params(cfg: ModelConfig) -> ParamCounts:
    d, hd = cfg.d_model, cfg.head_dim
    attn = d * cfg.n_heads * hd + 2 * d * cfg.n_kv_heads * hd + cfg.n_heads * hd * d
    mlp = 3 * d * cfg.d_ff
    norms = 2 * d + 2 * hd  # pre-attention and pre-MLP RMSNorm, QK-norm on q and k
    per_layer = attn + mlp + norms
    non_embedding = cfg.n_layers * per_layer + d  # + final norm
    one_matrix = cfg.vocab_size * d
    embedding = one_matrix * (1 if cfg.tie_embeddings else 2)
    return ParamCounts(
        total=non_embedding + embedding,
        embedding=embedding,
        non_embedding=non_embedding,
        named=non_embedding + one_matrix,
    )


def forward_flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """SODA's forward FLOPs per token (docs/soda.md#isoflop-sweep), attention over the full `seq_len`."""
    s = cfg.max_seq_len if seq_len is None else seq_len
    d, hd, h, kv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    per_layer = 6 * d * cfg.d_ff + 2 * d * (h * hd + 2 * kv * hd) + 2 * h * hd * d + s * (4 * h * hd + 3 * h)
    return float(cfg.n_layers * per_layer + 2 * d * cfg.vocab_size)


FLOP_CONVENTIONS = ("soda", "6N", "6N_nonembedding")


def train_flops_per_token(cfg: ModelConfig, seq_len: int | None = None, convention: str = "soda") -> float:
    """Training FLOPs per token under a named convention (recorded with every plan, fit and MFU)."""
    if convention == "soda":
        return 3.0 * forward_flops_per_token(cfg, seq_len)
    counts = count_params(cfg)
    if convention == "6N":
        return 6.0 * counts.total
    if convention == "6N_nonembedding":
        return 6.0 * counts.non_embedding
    raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {FLOP_CONVENTIONS}")
