"""Tiny layouts and random-init models for the generation tests (built in code, no downloads)."""

from __future__ import annotations

import pytest

from sodakit.model.config import ModelConfig
from sodakit.model.qwen3 import build_model
from sodakit.tokens.vocab import Vocab

# 4 codebooks of 16 codes: frames are short and every state of the machine is visited quickly.
SMALL_VOCAB = Vocab(text_vocab_size=200, bos_id=1, eos_id=2, num_codebooks=4, codebook_size=16)


def tiny_model(vocab_size: int, seed: int = 0, max_seq_len: int = 1024):
    cfg = ModelConfig(
        vocab_size=vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=128,
        max_seq_len=max_seq_len,
    )
    return build_model(cfg, seed=seed).eval()


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return SMALL_VOCAB


@pytest.fixture(scope="module")
def model(vocab):
    # 7 padding ids past the layout: the constraints must never let them through.
    return tiny_model(vocab.size + 7)
