"""Tiny layouts and random-init models for the generation tests (built in code, no downloads)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

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


class _NoCache:
    def reorder(self, index) -> None:
        pass


class PreferenceModel(torch.nn.Module):
    """A stand-in decoder that ignores its context: the logit of id i is always `scores[i]` (its hidden
    state is the constant 1 and its LM head one column). Makes the guards' behaviour exact to test."""

    def __init__(self, scores: torch.Tensor, max_seq_len: int = 4096) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(1, 1)
        self.cfg = SimpleNamespace(vocab_size=int(scores.numel()), max_seq_len=max_seq_len)
        self.register_buffer("scores", scores.float()[:, None])

    @property
    def head_weight(self) -> torch.Tensor:
        return self.scores

    def new_cache(self, batch_size: int, max_len: int) -> _NoCache:
        return _NoCache()

    def hidden_states(self, input_ids, attention_mask=None, cache=None):
        return torch.ones(input_ids.shape[0], input_ids.shape[1], 1)


def silent_model(vocab: Vocab) -> PreferenceModel:
    """Prefers code 0 of every codebook (a held "silence" that never ends: <|audio_end|> scores lowest)
    and text id 0 inside text spans (a text span that never ends)."""
    scores = torch.zeros(vocab.size)
    for k in range(vocab.num_codebooks):
        scores[vocab.audio_id(k, 0)] = 1.0
    scores[0] = 0.5
    scores[vocab.audio_end_id] = scores[vocab.text_end_id] = -1.0
    return PreferenceModel(scores)
