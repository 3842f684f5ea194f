"""Prompt templates of docs/soda.md#evaluation-protocol as token sequences, and the positions each task scores.

- speech score:  BOS <|audio_start|> {audio} <|audio_end|>, mean log-prob over the audio tokens;
- text score:    BOS <|text_start|> {text} <|text_end|>,   mean log-prob over the text tokens;
- continuation:  BOS {context} {continuation} (or the same inside text markers), summed over the
                 continuation tokens (HellaSwag).

Audio spans are flat and frame-major: cb0(t), cb1(t), ..., cb{K-1}(t), cb0(t+1), ... Keeping "the first
k codebooks" of a span of K per frame means reshaping the span's positions to (frames, K) and keeping
columns [:k] -- never (K, frames), the mistake of a published eval script. `AudioSelection` says which
codebooks go into the input (all K, the first k, or the semantic one(s) only, as in "S" documents)
and which of those are scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sodakit.eval.scoring import ScoreRequest
from sodakit.tokens.vocab import AudioSpanError, Vocab


@dataclass(frozen=True)
class AudioSelection:
    """input: "all", "semantic" or an int k (first k codebooks);
    score: "all", "semantic" or an int k (first k codebooks of the input)."""

    input: str | int = "all"
    score: str | int = "all"

    def describe(self, vocab: Vocab) -> dict:
        return {
            "input_codebooks": self.input_books(vocab),
            "scored_codebooks": [self.input_books(vocab)[j] for j in self.score_columns(vocab)],
            "layout": "frame-major; selection by reshape(frames, K)[:, cols]",
        }

    def input_books(self, vocab: Vocab) -> list[int]:
        if self.input == "all":
            return list(range(vocab.num_codebooks))
        if self.input == "semantic":
            return list(vocab.semantic_codebooks)
        k = int(self.input)
        if not 1 <= k <= vocab.num_codebooks:
            raise ValueError(f"input codebooks k={k} outside 1..{vocab.num_codebooks}")
        return list(range(k))

    def score_columns(self, vocab: Vocab) -> list[int]:
        """Columns (within one input frame) whose tokens are scored."""
        books = self.input_books(vocab)
        if self.score == "all":
            return list(range(len(books)))
        if self.score == "semantic":
            cols = [j for j, b in enumerate(books) if b in vocab.semantic_codebooks]
            if not cols:
                raise ValueError("scoring the semantic codebook needs it in the input")
            return cols
        k = int(self.score)
        if not 1 <= k <= len(books):
            raise ValueError(f"scored codebooks k={k} outside 1..{len(books)} (the input holds {len(books)})")
        return list(range(k))


def audio_span_ids(codes: np.ndarray, vocab: Vocab, sel: AudioSelection) -> np.ndarray:
    """codes [K_codec, F] -> flat frame-major ids of the selected input codebooks (int64)."""
    codes = np.asarray(codes)
    books = sel.input_books(vocab)
    if codes.ndim != 2 or codes.shape[0] <= max(books):
        raise ValueError(f"codes must be [K, F] with K > {max(books)}, got shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= vocab.codebook_size):
        raise ValueError(f"codes outside [0, {vocab.codebook_size})")
    offsets = vocab.audio_offset + vocab.codebook_size * np.asarray(books, dtype=np.int64)
    return (codes[books].astype(np.int64) + offsets[:, None]).T.reshape(-1)


def frame_columns(span_len: int, per_frame: int, cols: list[int]) -> np.ndarray:
    """Offsets within a flat frame-major span of the tokens in columns `cols` of each frame."""
    if span_len % per_frame:
        raise AudioSpanError(f"audio span of {span_len} tokens is not a multiple of {per_frame} codebooks")
    grid = np.arange(span_len, dtype=np.int64).reshape(span_len // per_frame, per_frame)
    return grid[:, cols].reshape(-1)


def check_codebook_order(span: np.ndarray, vocab: Vocab, books: list[int]) -> None:
    """Every token of a flat span must belong to the codebook its position says (frame-major)."""
    per = len(books)
    got = vocab.codebook_of(np.asarray(span, dtype=np.int64)).reshape(-1, per)
    want = np.asarray(books)[None, :]
    if not (got == want).all():
        t, j = np.argwhere(got != want)[0]
        raise AudioSpanError(f"frame {t} column {j} holds codebook {got[t, j]}, expected {books[j]}")


def speech_request(codes: np.ndarray, vocab: Vocab, sel: AudioSelection, add_bos: bool = True) -> ScoreRequest:
    span = audio_span_ids(codes, vocab, sel)
    if span.size == 0:
        raise ValueError("empty audio span (0 frames)")
    books = sel.input_books(vocab)
    check_codebook_order(span, vocab, books)
    head = ([vocab.bos_id] if add_bos else []) + [vocab.audio_start_id]
    ids = np.concatenate([np.asarray(head, np.int64), span, [vocab.audio_end_id]])
    positions = len(head) + frame_columns(span.size, len(books), sel.score_columns(vocab))
    return ScoreRequest(ids=ids, positions=np.sort(positions))


def text_request(text_ids, vocab: Vocab, add_bos: bool = True, markers: bool = True) -> ScoreRequest:
    """BOS <|text_start|> text <|text_end|>, scoring the text ids (not the markers)."""
    t = np.asarray(text_ids, dtype=np.int64).reshape(-1)
    if t.size == 0:
        raise ValueError("empty text (0 tokens)")
    head = ([vocab.bos_id] if add_bos else []) + ([vocab.text_start_id] if markers else [])
    tail = [vocab.text_end_id] if markers else []
    ids = np.concatenate([np.asarray(head, np.int64), t, np.asarray(tail, np.int64)])
    return ScoreRequest(ids=ids, positions=np.arange(len(head), len(head) + t.size, dtype=np.int64))


def continuation_request(
    context_ids, continuation_ids, vocab: Vocab, add_bos: bool = True, markers: bool = False
) -> ScoreRequest:
    """BOS [<|text_start|>] context continuation [<|text_end|>], scoring the continuation ids."""
    c = np.asarray(context_ids, dtype=np.int64).reshape(-1)
    x = np.asarray(continuation_ids, dtype=np.int64).reshape(-1)
    if x.size == 0:
        raise ValueError("empty continuation (0 tokens)")
    head = ([vocab.bos_id] if add_bos else []) + ([vocab.text_start_id] if markers else [])
    if not head and c.size == 0:
        raise ValueError("nothing to condition the first continuation token on (no BOS, no context)")
    tail = [vocab.text_end_id] if markers else []
    ids = np.concatenate([np.asarray(head, np.int64), c, x, np.asarray(tail, np.int64)])
    start = len(head) + c.size
    return ScoreRequest(ids=ids, positions=np.arange(start, start + x.size, dtype=np.int64))
