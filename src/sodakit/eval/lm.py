"""The model protocol the scorers need, and adapters for the models they get.

Scoring needs one thing from a causal LM: `token_logprobs(input_ids [B, T]) -> [B, T-1]`, where entry
t is log p(input_ids[:, t+1] | input_ids[:, :t+1]) in float32. The project's model
(`sodakit.model.qwen3`) provides it directly; any Hugging Face `*ForCausalLM` is adapted by
`HFCausalLM`, which runs the decoder once and applies the output head in position chunks so that
the [B, T, V] logits of a 144,644-entry vocabulary never exist at once.

Right padding is safe without an attention mask: with causal attention a position never sees the
padding after it, and RoPE positions start at 0 for every row, so a row's log-probs do not depend on
what else is in the batch (tests check batch 1 vs 16 agree to 1e-5).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

# Rows (batch x positions) per output-head chunk: bounds the transient logits to 512 * V floats
# (~300 MB for SODA's 144,644 ids); larger chunks only add memory traffic on CPU.
HEAD_ROWS = 512


@runtime_checkable
class ScoringLM(Protocol):
    vocab_size: int
    max_positions: int | None

    def token_logprobs(self, input_ids: torch.Tensor) -> torch.Tensor: ...


class VocabularyError(ValueError):
    """Task tokens that the model's embedding table does not cover."""


class HFCausalLM:
    """`token_logprobs` for a transformers causal LM (Qwen3ForCausalLM, LlamaForCausalLM, ...)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        cfg = model.config
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.max_positions = getattr(cfg, "max_position_embeddings", None)
        self._softcap = getattr(cfg, "final_logit_softcapping", None)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def token_logprobs(self, input_ids: torch.Tensor) -> torch.Tensor:
        input_ids = input_ids.to(self.device)
        base = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.base_model
        hidden = base(input_ids=input_ids).last_hidden_state[:, :-1]
        head = self.model.get_output_embeddings()
        b, t = input_ids.shape[0], input_ids.shape[1] - 1
        flat_h = hidden.reshape(b * t, hidden.shape[-1])
        flat_y = input_ids[:, 1:].reshape(b * t)
        out = torch.empty(b * t, dtype=torch.float32, device=self.device)
        for s in range(0, b * t, HEAD_ROWS):
            logits = head(flat_h[s : s + HEAD_ROWS]).float()
            if self._softcap:
                logits = torch.tanh(logits / self._softcap) * self._softcap
            # log p(y) = logit_y - logsumexp(logits): no second vocabulary-sized tensor.
            picked = logits.gather(-1, flat_y[s : s + HEAD_ROWS, None]).squeeze(-1)
            out[s : s + HEAD_ROWS] = picked - torch.logsumexp(logits, dim=-1)
        return out.reshape(b, t)


class NativeLM:
    """A model that already has `token_logprobs` (the project's Qwen3 model)."""

    def __init__(self, model: torch.nn.Module, vocab_size: int, max_positions: int | None):
        self.model = model.eval() if hasattr(model, "eval") else model
        self.vocab_size = vocab_size
        self.max_positions = max_positions

    @torch.no_grad()
    def token_logprobs(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.token_logprobs(input_ids).float()


def as_scoring_lm(model) -> ScoringLM:
    """Wrap whatever model we were given into the ScoringLM protocol."""
    if isinstance(model, HFCausalLM | NativeLM):
        return model
    if hasattr(model, "token_logprobs"):
        cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
        vocab = getattr(cfg, "vocab_size", None) or getattr(model, "vocab_size", None)
        if vocab is None:
            raise TypeError(f"{type(model).__name__}: has token_logprobs but no config.vocab_size")
        max_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "max_seq_len", None)
        return NativeLM(model, int(vocab), max_pos)
    if hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None:
        return HFCausalLM(model)
    raise TypeError(f"{type(model).__name__} is not a causal LM (no token_logprobs, no output embeddings)")
