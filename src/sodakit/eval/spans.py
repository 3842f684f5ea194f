"""The scoring spans of docs/soda.md#evaluation-protocol as `ScoreRequest`s, rendered from the token
language (tokens/templates.py: speech_score, text_score, continuation_score[_in_text],
text_after_audio_score, audio_after_text_score):

- speech score:  BOS <|audio_start|> {audio} <|audio_end|>, mean log-prob over the audio tokens;
- text score:    BOS <|text_start|> {text} <|text_end|>,   mean log-prob over the text tokens;
- continuation:  BOS {context} {continuation} (or the same inside text markers), summed over the
                 continuation tokens (HellaSwag);
- text after audio: BOS <|audio_start|> {audio} <|audio_end|> <|text_start|> {text} <|text_end|>, the
                 text tokens scored (speech-text matching, the ASR order);
- audio after text: BOS <|text_start|> {text} <|text_end|> <|audio_start|> {audio} <|audio_end|>, the
                 audio tokens scored (text-speech matching, the TTS order).

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
from sodakit.tokens.templates import render_ids
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


def check_codebook_order(span: np.ndarray, vocab: Vocab, books: list[int]) -> None:
    """Every token of a flat span must belong to the codebook its position says (frame-major)."""
    per = len(books)
    got = vocab.codebook_of(np.asarray(span, dtype=np.int64)).reshape(-1, per)
    want = np.asarray(books)[None, :]
    if not (got == want).all():
        t, j = np.argwhere(got != want)[0]
        raise AudioSpanError(f"frame {t} column {j} holds codebook {got[t, j]}, expected {books[j]}")


def _audio_scored_request(template: str, values: dict, vocab: Vocab, sel: AudioSelection) -> ScoreRequest:
    """A template whose `audio` span is scored: the selected codebooks, in frame-major order (checked)."""
    books = sel.input_books(vocab)
    r = render_ids(template, values, vocab, audio_books=books, score_columns=sel.score_columns(vocab), dtype=np.int64)
    check_codebook_order(r.ids[r.starts["audio"] : -1], vocab, books)
    return ScoreRequest(ids=r.ids, positions=r.scored)


def speech_request(codes: np.ndarray, vocab: Vocab, sel: AudioSelection) -> ScoreRequest:
    """BOS <|audio_start|> audio <|audio_end|>, scoring the selected codebooks of the audio tokens."""
    return _audio_scored_request("speech_score", {"audio": codes}, vocab, sel)


def text_request(text_ids, vocab: Vocab) -> ScoreRequest:
    """BOS <|text_start|> text <|text_end|>, scoring the text ids (not the markers)."""
    r = render_ids("text_score", {"text": text_ids}, vocab, dtype=np.int64)
    return ScoreRequest(ids=r.ids, positions=r.scored)


def text_after_audio_request(codes: np.ndarray, text_ids, vocab: Vocab, sel: AudioSelection) -> ScoreRequest:
    """BOS <|audio_start|> audio <|audio_end|> <|text_start|> text <|text_end|>, scoring the text ids."""
    books = sel.input_books(vocab)
    r = render_ids("text_after_audio_score", {"audio": codes, "text": text_ids}, vocab, audio_books=books,
                   dtype=np.int64)
    return ScoreRequest(ids=r.ids, positions=r.scored)


def audio_after_text_request(codes: np.ndarray, text_ids, vocab: Vocab, sel: AudioSelection) -> ScoreRequest:
    """BOS <|text_start|> text <|text_end|> <|audio_start|> audio <|audio_end|>, scoring the selected codebooks
    of the audio tokens (as `speech_request` does)."""
    return _audio_scored_request("audio_after_text_score", {"audio": codes, "text": text_ids}, vocab, sel)


def continuation_request(context_ids, continuation_ids, vocab: Vocab, markers: bool = False) -> ScoreRequest:
    """BOS [<|text_start|>] context continuation [<|text_end|>], scoring the continuation ids."""
    name = "continuation_score_in_text" if markers else "continuation_score"
    r = render_ids(name, {"context": context_ids, "continuation": continuation_ids}, vocab, dtype=np.int64)
    return ScoreRequest(ids=r.ids, positions=r.scored)
