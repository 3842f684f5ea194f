"""Modality-aware decoding: a small state machine over generated tokens that masks the logits.

Every row of a batch is in one of three modes, advanced by the tokens it emits:

    free   between spans (or in a plain text-only document): anything but audio ids, end markers, BOS
    text   after <|text_start|>: text ids (not BOS/EOS) and <|text_end|>
    audio  after <|audio_start|>, at position p of the span: only the ids of codebook
           span_codebooks[p mod K] (K = len(span_codebooks)), and <|audio_end|> only at a frame boundary
           (p mod K == 0, p > 0: spans hold at least one whole frame)

so every audio span that is closed is frame-complete and decodes.

An optional *span plan* makes a task's structure a constraint too: the spans still to come, e.g.
("text", "text", "audio") for S2ST after its prompt opened the source-transcript span. Between spans a
row may then only open the next planned span, and once the plan is complete only end the document
(EOS). Without a plan, "free" allows any text or span start.

The modes map onto a few "state classes" (free, text, audio-open, audio codebook j at slot j, and the
three planned free states) and each class has one row of a boolean table [S, V]. Each class also has a
*head window*: the smallest id range [lo, hi) holding everything it allows (plus a mask when not all of
it is allowed), so the decoding loop (decoding.py) computes the LM head over just those rows. Inside an
audio span that is one codebook (2,048 rows, with <|audio_end|> right before codebook 0 in the layout)
instead of the whole 144,644-id vocabulary -- the head is most of the cost of a decoding step in small models; text and free
states skip the 16,384 audio rows.

The table covers the model's vocabulary, which may be larger than the layout (padded embeddings):
ids past the layout are never allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sodakit.tokens.vocab import Vocab

MODE_FREE, MODE_TEXT, MODE_AUDIO = 0, 1, 2
SPAN_KINDS = ("text", "audio")
# State classes: free, text, audio right after <|audio_start|>, then one per slot of the frame, then the
# planned free states (only <|text_start|>, only <|audio_start|>, only EOS).
STATE_FREE, STATE_TEXT, STATE_AUDIO_OPEN = 0, 1, 2
AUDIO_SLOT0 = 3  # state of slot j of a frame (j = 0 is the frame boundary) is AUDIO_SLOT0 + j


class PromptStateError(ValueError):
    """A prompt whose last span is malformed (e.g. a non-audio token inside an open audio span)."""


@dataclass
class SpanState:
    """Per-row decoding state: mode, position inside the current audio span, and counters."""

    mode: Tensor  # [B] long: MODE_FREE / MODE_TEXT / MODE_AUDIO
    pos: Tensor  # [B] long: tokens inside the current text or audio span so far (prompt tokens included)
    closed: Tensor  # [B] long: spans closed since the end of the prompt (progress through a span plan)

    def clone(self) -> SpanState:
        return SpanState(self.mode.clone(), self.pos.clone(), self.closed.clone())

    def select(self, index: Tensor) -> SpanState:
        return SpanState(*(t.index_select(0, index) for t in (self.mode, self.pos, self.closed)))


class ModalityConstraints:
    """Mask tables and the state machine for one vocabulary layout.

    span_codebooks: the codebooks an audio span cycles through, frame-major (default all of the
    layout's codebooks, 0..K-1; `vocab.semantic_codebooks` for semantic-only "S" models).
    enabled=False keeps the state tracking (frames, spans, guards) but allows every id of the layout.
    plan: the spans still to come (see the module docstring), counting an open one the prompt ends in.
    """

    def __init__(
        self,
        vocab: Vocab,
        model_vocab_size: int | None = None,
        span_codebooks: Sequence[int] | None = None,
        enabled: bool = True,
        device: torch.device | str = "cpu",
        plan: Sequence[str] | None = None,
    ) -> None:
        self.vocab = vocab
        self.model_vocab_size = int(model_vocab_size or vocab.size)
        if self.model_vocab_size < vocab.size:
            raise ValueError(f"model vocabulary ({self.model_vocab_size}) is smaller than the layout ({vocab.size})")
        books = tuple(range(vocab.num_codebooks)) if span_codebooks is None else tuple(int(k) for k in span_codebooks)
        if not books or any(not 0 <= k < vocab.num_codebooks for k in books):
            raise ValueError(f"span_codebooks {books} must be non-empty codebooks of 0..{vocab.num_codebooks - 1}")
        self.span_codebooks = books
        self.frame_size = len(books)
        self.enabled = enabled
        self.device = torch.device(device)
        self.expect_text = AUDIO_SLOT0 + self.frame_size
        self.expect_audio, self.expect_eos = self.expect_text + 1, self.expect_text + 2
        self.num_states = self.expect_text + 3
        if plan is not None and any(k not in SPAN_KINDS for k in plan):
            raise ValueError(f"span plan {tuple(plan)}: entries must be 'text' or 'audio'")
        self.plan = None if plan is None else tuple(plan)
        # Free-state class per plan step, then EOS once the plan is done.
        expect = [self.expect_text if k == "text" else self.expect_audio for k in (self.plan or ())]
        self._plan_states = torch.tensor([*expect, self.expect_eos], dtype=torch.long, device=self.device)
        self.table = self._build_table().to(self.device)
        self._windows = self._build_windows()

    # ---- tables ----------------------------------------------------------------------------------
    def _build_table(self) -> Tensor:
        v, n = self.vocab, self.model_vocab_size
        t = torch.zeros(self.num_states, n, dtype=torch.bool)
        if not self.enabled:
            t[:, : v.size] = True
            return t
        tv = v.text_vocab_size
        # free: text ids, start markers, EOS; not BOS (documents start once), not end markers, not audio.
        t[STATE_FREE, :tv] = True
        t[STATE_FREE, v.bos_id] = False
        t[STATE_FREE, v.text_start_id] = True
        t[STATE_FREE, v.audio_start_id] = True
        # text span: text ids but not BOS/EOS (a span is closed before a document ends), and <|text_end|>.
        t[STATE_TEXT, :tv] = True
        t[STATE_TEXT, v.bos_id] = False
        t[STATE_TEXT, v.eos_id] = False
        t[STATE_TEXT, v.text_end_id] = True
        lo, hi = v.codebook_range(self.span_codebooks[0])
        t[STATE_AUDIO_OPEN, lo:hi] = True
        for j, k in enumerate(self.span_codebooks):
            lo, hi = v.codebook_range(k)
            t[AUDIO_SLOT0 + j, lo:hi] = True
        t[AUDIO_SLOT0, v.audio_end_id] = True
        t[self.expect_text, v.text_start_id] = True
        t[self.expect_audio, v.audio_start_id] = True
        t[self.expect_eos, v.eos_id] = True
        return t

    def _build_windows(self) -> list[tuple[int, int, Tensor | None]]:
        """Per state: (lo, hi, mask over [lo, hi) or None when every id there is allowed)."""
        windows = []
        for s in range(self.num_states):
            allowed = torch.nonzero(self.table[s]).flatten()
            lo, hi = int(allowed[0]), int(allowed[-1]) + 1
            inside = self.table[s, lo:hi]
            windows.append((lo, hi, None if bool(inside.all()) else inside.clone()))
        return windows

    def head_window(self, state: int) -> tuple[int, int, Tensor | None]:
        """(lo, hi, mask): state `state` allows only ids in [lo, hi), those where mask is True (None = all)."""
        return self._windows[state]

    # ---- state machine -------------------------------------------------------------------------
    def initial_state(self, prompts: Sequence[Sequence[int]]) -> SpanState:
        """The state after each prompt: the mode of its last marker and the position inside an open span."""
        v = self.vocab
        modes, poss = [], []
        markers = {v.text_start_id, v.text_end_id, v.audio_start_id, v.audio_end_id}
        for r, p in enumerate(prompts):
            ids = [int(x) for x in p]
            last = next((i for i in range(len(ids) - 1, -1, -1) if ids[i] in markers), None)
            mode, pos = MODE_FREE, 0
            if last is not None and ids[last] == v.text_start_id:
                mode, pos = MODE_TEXT, len(ids) - last - 1
            elif last is not None and ids[last] == v.audio_start_id:
                tail = torch.tensor(ids[last + 1 :], dtype=torch.long)
                if tail.numel() and not bool(v.is_audio(tail).all()):
                    raise PromptStateError(f"prompt {r}: the open audio span holds non-audio ids")
                mode, pos = MODE_AUDIO, int(tail.numel())
                if self.enabled and tail.numel():
                    expected = torch.tensor([self.span_codebooks[i % self.frame_size] for i in range(tail.numel())])
                    if not torch.equal(v.codebook_of(tail), expected):
                        raise PromptStateError(
                            f"prompt {r}: the open audio span is not in codebook order {self.span_codebooks}"
                        )
            modes.append(mode)
            poss.append(pos)
        return SpanState(
            torch.tensor(modes, dtype=torch.long, device=self.device),
            torch.tensor(poss, dtype=torch.long, device=self.device),
            torch.zeros(len(modes), dtype=torch.long, device=self.device),
        )

    def state_index(self, st: SpanState) -> Tensor:
        """[B] index into `table` for each row's state."""
        slot = st.pos % self.frame_size
        audio = torch.where(st.pos == 0, torch.full_like(st.pos, STATE_AUDIO_OPEN), AUDIO_SLOT0 + slot)
        free = torch.full_like(st.mode, STATE_FREE)
        if self.plan is not None and self.enabled:
            free = self._plan_states[st.closed.clamp(max=len(self.plan))]
        return torch.where(st.mode == MODE_AUDIO, audio, torch.where(st.mode == MODE_TEXT, STATE_TEXT, free))

    def allowed(self, st: SpanState) -> Tensor:
        """[B, V] boolean mask of the ids each row may emit next."""
        return self.table.index_select(0, self.state_index(st))

    def advance(self, st: SpanState, tokens: Tensor) -> SpanState:
        """The state after each row emits `tokens` [B]."""
        v = self.vocab
        mode, pos = st.mode.clone(), st.pos.clone()
        inside = ((mode == MODE_AUDIO) & v.is_audio(tokens)) | ((mode == MODE_TEXT) & v.is_text(tokens))
        pos = torch.where(inside, pos + 1, pos)
        opened_text, opened_audio = tokens == v.text_start_id, tokens == v.audio_start_id
        mode = torch.where(opened_text, MODE_TEXT, torch.where(opened_audio, MODE_AUDIO, mode))
        pos = torch.where(opened_text | opened_audio, torch.zeros_like(pos), pos)
        closed = (tokens == v.text_end_id) | (tokens == v.audio_end_id)
        mode = torch.where(closed, MODE_FREE, mode)
        return SpanState(mode, pos, st.closed + closed.long())

    def at_frame_boundary(self, st: SpanState) -> Tensor:
        """[B] rows inside an audio span with only whole frames so far (and at least one)."""
        return (st.mode == MODE_AUDIO) & (st.pos > 0) & (st.pos % self.frame_size == 0)
