"""Batched autoregressive decoding over the model's KV cache, with modality constraints and guards.

    results = generate(model, prompts, vocab, GenerationConfig(max_new_tokens=300, stop_ids=(vocab.audio_end_id,)))

Prompts of different lengths are left-padded into one batch and prefilled in one forward pass (the model
counts RoPE positions per row from the real tokens, so padding changes nothing). Each step feeds the last
token of every unfinished row through the cache and chooses the next one (see sampling.py). The LM head
is computed on the last position only, and only over the rows the constraints can allow (one codebook
inside an audio span, the text ids and markers in text), not the whole 144,644-id vocabulary.

A row stops when it emits a stop id, when its token budget ends, or when a guard fires at a frame
boundary: the duration cap (`max_audio_frames` generated frames), the silence stop (`silence_stop_frames`
trailing silent frames, see silence.py), or a budget too small for another whole frame. Guards close the
open audio span with a forced <|audio_end|>, so every audio span in the output is frame-complete. The
text-span cap (`max_text_tokens`) closes a runaway text span with a forced <|text_end|> and lets the row
go on (e.g. from a looping transcript to the translation that follows it).
Finished rows are dropped from the batch (and the cache) once they make up a quarter of it.

`on_frame` receives each audio frame (K codes) as soon as its last code is chosen: the streaming hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sodakit.generate.constraints import MODE_AUDIO, MODE_TEXT, ModalityConstraints
from sodakit.generate.sampling import SamplingConfig, choose
from sodakit.generate.silence import SilenceDetector
from sodakit.tokens.vocab import Vocab

STOP_TOKEN = "stop_token"
STOP_BUDGET = "max_new_tokens"
STOP_DURATION = "max_duration"
STOP_SILENCE = "silence"
STOP_TEXT_CAP = "max_text_tokens"  # a forced <|text_end|> that was also a stop id


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # A row finishes after emitting one of these (the stop id is kept in its output).
    stop_ids: tuple[int, ...] = ()
    # Modality constraints (logit masks); False samples from the whole layout.
    constrain: bool = True
    # Codebooks an audio span cycles through; None = all of the layout's, in order.
    span_codebooks: tuple[int, ...] | None = None
    # Duration cap: at most this many generated audio frames per row (None = no cap).
    max_audio_frames: int | None = None
    # Silence stop: finish after this many trailing silent frames (None = off); needs a detector.
    silence_stop_frames: int | None = None
    # Text-span cap: close a text span with a forced <|text_end|> after this many tokens (None = off).
    max_text_tokens: int | None = None
    # Spans still to come, e.g. ("text", "text", "audio") for S2ST (see constraints.py); None = free.
    span_plan: tuple[str, ...] | None = None
    # LM head over the allowed codebook only inside audio spans (exact; off only for comparisons).
    restricted_head: bool = True
    # Close an open audio span when the budget cannot fit another frame (off only for comparisons with
    # decoders that lack this guard).
    close_audio_at_budget: bool = True
    # Refuse prompts + budget longer than the model's max_seq_len (positions it never saw in training).
    allow_longer_than_trained: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        for name in ("max_audio_frames", "silence_stop_frames", "max_text_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")


@dataclass
class Generation:
    """One row's output: the new tokens (stop id or forced <|audio_end|> included) and why it stopped."""

    tokens: list[int]
    stop_reason: str
    audio_frames: int  # whole audio frames generated
    trailing_silence: int  # silent frames at the end of the last span when the silence stop fired


@dataclass
class FrameEvent:
    row: int  # index of the prompt
    span: int  # index of the audio span among this row's generated spans (0 = the first; -1 = prompt's open span)
    frame: int  # index of the frame within that span (prompt frames of an open span included)
    codes: np.ndarray  # [K] int64 codes, in span codebook order


@dataclass
class DecodeStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    steps: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor | None]:
    lengths = [len(p) for p in prompts]
    if min(lengths) < 1:
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    t = max(lengths)
    ids = torch.full((len(prompts), t), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), t, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, t - len(p) :] = torch.as_tensor(np.asarray(p, dtype=np.int64))
        mask[i, t - len(p) :] = 1
    return ids, (None if all(n == t for n in lengths) else mask)


class _Head:
    """The LM head on the last hidden state, per state class, over the class's head window only."""

    def __init__(self, model, constraints: ModalityConstraints, restricted: bool) -> None:
        self.weight = model.head_weight
        self.c = constraints
        self.restricted = restricted

    def choose(self, h: Tensor, state_idx: Tensor, cfg: SamplingConfig, gen: torch.Generator | None) -> Tensor:
        w = self.weight.to(h.dtype)
        states = state_idx.tolist()
        kinds = sorted(set(states))
        out = torch.empty(h.shape[0], dtype=torch.long, device=h.device)
        for s in kinds:
            rows = None if len(kinds) == 1 else torch.tensor([i for i, x in enumerate(states) if x == s], device=h.device)
            hs = h if rows is None else h.index_select(0, rows)
            if self.restricted:
                lo, hi, mask = self.c.head_window(s)
            else:
                lo, hi, mask = 0, w.shape[0], self.c.table[s]
            logits = F.linear(hs, w[lo:hi]).float()
            if mask is not None:
                logits = logits.masked_fill(~mask, float("-inf"))
            tok = choose(logits, cfg, gen) + lo
            if rows is None:
                return tok
            out[rows] = tok
        return out


class _RowTracker:
    """Python-side per-row bookkeeping for streaming and the silence stop (only built when needed)."""

    def __init__(self, prompts, constraints: ModalityConstraints, state) -> None:
        v = constraints.vocab
        self.k = constraints.frame_size
        self.offsets = np.array([v.audio_offset + v.codebook_size * b for b in constraints.span_codebooks])
        # Span -1 is an audio span left open by the prompt (continuation); generated spans count from 0.
        self.span = [-1] * len(prompts)
        self.opened_spans = [0] * len(prompts)
        self.frame_in_span = [int(p) // self.k if int(m) == MODE_AUDIO else 0 for m, p in zip(state.mode.tolist(), state.pos.tolist())]
        # Ids of the current partial frame (a prompt may end inside one) and the generated frames of the span.
        self.partial: list[list[int]] = []
        for p, m, pos in zip(prompts, state.mode.tolist(), state.pos.tolist()):
            tail = int(pos) % self.k if m == MODE_AUDIO else 0
            self.partial.append([int(x) for x in list(p)[len(p) - tail :]] if tail else [])
        self.frames: list[list[np.ndarray]] = [[] for _ in prompts]

    def opened(self, row: int) -> None:
        self.span[row] = self.opened_spans[row]
        self.opened_spans[row] += 1
        self.frame_in_span[row] = 0
        self.partial[row] = []
        self.frames[row] = []

    def token(self, row: int, tok: int) -> np.ndarray | None:
        """Record an audio token; return the frame's codes when it completes a frame."""
        self.partial[row].append(tok)
        if len(self.partial[row]) < self.k:
            return None
        codes = np.asarray(self.partial[row], dtype=np.int64) - self.offsets
        self.partial[row] = []
        self.frames[row].append(codes)
        self.frame_in_span[row] += 1
        return codes


class _Decoding:
    """The state of one batched decoding: the rows still in the cache, their span states, and what each
    prompt has produced so far. `generate` drives it step by step."""

    def __init__(self, model, prompts: Sequence[Sequence[int]], vocab: Vocab, cfg: GenerationConfig,
                 on_frame: Callable[[FrameEvent], None] | None, silence: SilenceDetector | None) -> None:
        self.model, self.vocab, self.cfg = model, vocab, cfg
        self.on_frame, self.silence = on_frame, silence
        self.device = model.embed.weight.device
        self.constraints = ModalityConstraints(vocab, model.cfg.vocab_size, cfg.span_codebooks, cfg.constrain,
                                               self.device, cfg.span_plan)
        for i, p in enumerate(prompts):
            vocab.check_ids(np.asarray(p, dtype=np.int64), f"prompt {i}")
        self.ids, self.mask = _left_pad(prompts, pad_id=vocab.eos_id)
        self.total = self.ids.shape[1] + cfg.max_new_tokens
        if self.total > model.cfg.max_seq_len and not cfg.allow_longer_than_trained:
            raise ValueError(
                f"prompt ({self.ids.shape[1]} tokens) + max_new_tokens ({cfg.max_new_tokens}) = {self.total} exceeds "
                f"the model's max_seq_len {model.cfg.max_seq_len}; shorten the prompt or lower max_new_tokens"
            )
        self.state = self.constraints.initial_state(prompts)
        self.head = _Head(model, self.constraints, cfg.restricted_head)
        self.gen = cfg.sampling.generator(self.device)
        self.stop_ids = torch.tensor(sorted(set(cfg.stop_ids)), dtype=torch.long, device=self.device)
        track = on_frame is not None or silence is not None
        self.tracker = _RowTracker(prompts, self.constraints, self.state) if track else None
        self.k = self.constraints.frame_size

        b = len(prompts)
        self.out = torch.full((b, cfg.max_new_tokens), -1, dtype=torch.long)
        self.lengths = [0] * b
        self.reasons = [STOP_BUDGET] * b
        self.frames = torch.zeros(b, dtype=torch.long)
        self.silent_tail = [0] * b
        self.rows = torch.arange(b)  # original row of each cache row
        self.done_in_cache = torch.zeros(b, dtype=torch.bool)
        self.cache = None

    def prefill(self) -> Tensor:
        """Run the prompts through the model into a fresh cache; the last hidden state of every row."""
        self.cache = self.model.new_cache(len(self.rows), self.total)
        mask = None if self.mask is None else self.mask.to(self.device)
        return self.model.hidden_states(self.ids.to(self.device), attention_mask=mask, cache=self.cache)[:, -1]

    def forced_tokens(self, remaining: int) -> tuple[Tensor, dict[int, str]]:
        """The guards: a forced token per cache row (-1 = none) and, for rows that end with it, the reason."""
        cfg, vocab, state = self.cfg, self.vocab, self.state
        forced = torch.full((len(self.rows),), -1, dtype=torch.long)
        finish: dict[int, str] = {}
        if not self.constraints.enabled:
            return forced, finish
        live = ~self.done_in_cache
        boundary = self.constraints.at_frame_boundary(state).cpu()
        opening = ((state.mode == MODE_AUDIO) & (state.pos == 0)).cpu()
        # Not enough budget for another whole frame plus <|audio_end|>: close the span now.
        if cfg.close_audio_at_budget and remaining < self.k + 1:
            for i in torch.nonzero((boundary | opening) & live).flatten().tolist():
                forced[i], finish[i] = vocab.audio_end_id, STOP_BUDGET
        if cfg.max_audio_frames is not None:
            capped = boundary & live & (self.frames[self.rows] >= cfg.max_audio_frames)
            for i in torch.nonzero(capped).flatten().tolist():
                forced[i], finish[i] = vocab.audio_end_id, STOP_DURATION
        if cfg.silence_stop_frames is not None:
            for i in torch.nonzero(boundary & live).flatten().tolist():
                if self.silent_tail[int(self.rows[i])] >= cfg.silence_stop_frames:
                    forced[i], finish[i] = vocab.audio_end_id, STOP_SILENCE
        if cfg.max_text_tokens is not None:
            long_text = ((state.mode == MODE_TEXT) & (state.pos >= cfg.max_text_tokens)).cpu() & live
            forced = torch.where(long_text, torch.full_like(forced, vocab.text_end_id), forced)
        return forced, finish

    def choose(self, h: Tensor, forced: Tensor) -> Tensor:
        """The next token of every cache row: sampled under the constraints, or the guard's forced one."""
        nxt = self.head.choose(h, self.constraints.state_index(self.state), self.cfg.sampling, self.gen)
        if (forced >= 0).any():
            nxt = torch.where((forced >= 0).to(self.device), forced.to(self.device), nxt)
        return nxt

    def record(self, nxt: Tensor, forced: Tensor, finish: dict[int, str]) -> None:
        """Append the chosen tokens to the unfinished rows, count frames, feed the streaming and silence
        bookkeeping, and finish the rows a guard or a stop id ended."""
        vocab, k = self.vocab, self.k
        live = ~self.done_in_cache
        nxt_cpu = nxt.cpu()
        new_state = self.constraints.advance(self.state, nxt)
        completed = (new_state.mode == MODE_AUDIO) & (new_state.pos > 0) & (new_state.pos % k == 0)
        completed = (completed & vocab.is_audio(nxt)).cpu()
        stop_hit = (torch.isin(nxt, self.stop_ids).cpu() if self.stop_ids.numel()
                    else torch.zeros(len(self.rows), dtype=torch.bool))
        for i in torch.nonzero(live).flatten().tolist():
            r = int(self.rows[i])
            tok = int(nxt_cpu[i])
            self.out[r, self.lengths[r]] = tok
            self.lengths[r] += 1
            if completed[i]:
                self.frames[r] += 1
            if self.tracker is not None:
                self.track(r, tok, int(new_state.mode[i]))
            if i in finish:
                self.reasons[r] = finish[i]
                self.done_in_cache[i] = True
            elif stop_hit[i]:
                self.reasons[r] = STOP_TEXT_CAP if forced[i] == vocab.text_end_id else STOP_TOKEN
                self.done_in_cache[i] = True
        self.state = new_state

    def track(self, r: int, tok: int, mode: int) -> None:
        """Streaming and silence bookkeeping of prompt row r for its new token."""
        tracker, vocab, cfg = self.tracker, self.vocab, self.cfg
        assert tracker is not None
        if tok == vocab.audio_start_id:
            tracker.opened(r)
        elif vocab.is_audio(tok) and mode == MODE_AUDIO:
            codes = tracker.token(r, tok)
            if codes is not None:
                if self.on_frame is not None:
                    self.on_frame(FrameEvent(r, tracker.span[r], tracker.frame_in_span[r] - 1, codes))
                if self.silence is not None and cfg.silence_stop_frames is not None:
                    span_frames = np.stack(tracker.frames[r])
                    self.silent_tail[r] = self.silence.trailing_silence(span_frames, cfg.silence_stop_frames)

    def all_done(self) -> bool:
        return bool(self.done_in_cache.all())

    def drop_finished(self, nxt: Tensor) -> Tensor:
        """Drop finished rows once they are a quarter of the batch (compaction copies the whole cache);
        returns the tokens of the rows that stay."""
        n_done = int(self.done_in_cache.sum())
        if not n_done or n_done * 4 < len(self.rows):
            return nxt
        keep = torch.nonzero(~self.done_in_cache).flatten()
        self.cache.reorder(keep.to(self.device))
        self.rows, self.state = self.rows[keep], self.state.select(keep.to(self.device))
        self.done_in_cache = torch.zeros(len(self.rows), dtype=torch.bool)
        return nxt.index_select(0, keep.to(self.device))

    def feed(self, nxt: Tensor) -> Tensor:
        """Run the chosen tokens through the cache; the new last hidden state of every row."""
        return self.model.hidden_states(nxt[:, None], cache=self.cache)[:, -1]

    def results(self) -> list[Generation]:
        return [
            Generation(
                tokens=self.out[r, : self.lengths[r]].tolist(),
                stop_reason=self.reasons[r],
                audio_frames=int(self.frames[r]),
                trailing_silence=self.silent_tail[r] if self.reasons[r] == STOP_SILENCE else 0,
            )
            for r in range(len(self.lengths))
        ]


@torch.inference_mode()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    vocab: Vocab,
    cfg: GenerationConfig | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
    silence: SilenceDetector | None = None,
    stats: DecodeStats | None = None,
) -> list[Generation]:
    """Continue every prompt (token ids) and return one `Generation` per prompt, in order."""
    cfg = cfg or GenerationConfig()
    if not prompts:
        return []
    if cfg.silence_stop_frames is not None and silence is None:
        raise ValueError("silence_stop_frames is set but no silence detector was given")
    run = _Decoding(model, prompts, vocab, cfg, on_frame, silence)
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    h = run.prefill()
    t1 = time.perf_counter()
    step = 0
    for step in range(cfg.max_new_tokens):
        forced, finish = run.forced_tokens(remaining=cfg.max_new_tokens - step)
        nxt = run.choose(h, forced)
        run.record(nxt, forced, finish)
        if run.all_done() or step == cfg.max_new_tokens - 1:
            break
        h = run.feed(run.drop_finished(nxt))
    t2 = time.perf_counter()
    if was_training:
        model.train()
    if stats is not None:
        stats.prompt_tokens += int(sum(len(p) for p in prompts))
        stats.new_tokens += int(sum(run.lengths))
        stats.steps += step + 1
        stats.prefill_s += t1 - t0
        stats.decode_s += t2 - t1
    return run.results()
