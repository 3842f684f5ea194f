"""Document builders (docs/soda.md#documents), in string form and id form.

A recording's segments (audio codes + transcript) in time order become

    text_first     <|begin_of_text|><|text_start|>T1<|text_end|><|audio_start|>A1<|audio_end|>...<|end_of_text|>
    audio_first    <|begin_of_text|><|audio_start|>A1<|audio_end|><|text_start|>T1<|text_end|>...<|end_of_text|>
    audio_only     audio_first with every text span removed ("S+A")
    semantic_only  audio_only keeping the semantic codebook(s) only ("S")

and a text-only corpus document is `<|begin_of_text|>text<|end_of_text|>` (no text markers). Nothing is
added inside the markers (no stray spaces). The id form equals the tokenization of the string form
(tests prove it); it is built directly because that is faster.

Transcripts obey the same rules in both forms: text with characters of the audio range follows the PUA
policy (`TextInAudioRangeError` by default, or escaped), and text holding a literal marker, BOS or EOS
string is refused (`MarkerInTextError`), since it would silently change the document's structure.

Text-only documents (web text) are different: their text is tokenized with every character as text, so
a marker or special-token string in it becomes ordinary BPE pieces, and BOS/EOS are added as ids, one
pair per document. Such text has no SODA string form (the string form would read those strings as
tokens), so `text_document_string` refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

from sodakit.tokens.soda_tokenizer import PuaPolicy, SodaTokenizer, apply_pua_policy
from sodakit.tokens.vocab import (
    AUDIO_END,
    AUDIO_START,
    BOS_TEXT,
    EOS_TEXT,
    MARKERS,
    TEXT_END,
    TEXT_START,
    Vocab,
)

DocFormat = Literal["text_first", "audio_first", "audio_only", "semantic_only"]
DOC_FORMATS: tuple[str, ...] = ("text_first", "audio_first", "audio_only", "semantic_only")
# SODA builds both orders from every recording, so each utterance appears twice in the corpus.
DEFAULT_FORMATS: tuple[str, ...] = ("text_first", "audio_first")


class MarkerInTextError(ValueError):
    """A transcript holds a literal marker (or BOS/EOS) string, which would change the document's structure."""


class SegmentLike(Protocol):
    text: str
    codes: np.ndarray  # [K, F]


def _check_format(fmt: str) -> None:
    if fmt not in DOC_FORMATS:
        raise ValueError(f"unknown document format {fmt!r}; choose from {DOC_FORMATS}")


def _segment_where(seg: SegmentLike, i: int) -> str:
    seg_id = getattr(seg, "id", None)
    return f"segment text[{i}]" + (f" (segment {seg_id})" if seg_id else "")


def _check_no_structure_strings(segments: Sequence[SegmentLike], specials: Sequence[str]) -> None:
    """Refuse transcripts holding a marker/BOS/EOS string: tokenized, it would become that token."""
    for i, seg in enumerate(segments):
        for special in specials:
            pos = seg.text.find(special)
            if pos >= 0:
                raise MarkerInTextError(
                    f"{_segment_where(seg, i)}: text holds the literal string {special!r} at position {pos}, which "
                    f"would act as that token and change the document's structure; remove it from the transcript"
                )


def _encode_segment_texts(segments: Sequence[SegmentLike], tokenizer: SodaTokenizer) -> list[list[int]]:
    """Transcripts -> text ids, after the tokenizer's PUA policy (errors name the segment)."""
    texts = [tokenizer.prepare_text(seg.text, _segment_where(seg, i)) for i, seg in enumerate(segments)]
    return tokenizer.text.encode_batch(texts)


def _segment_codes(seg: SegmentLike, vocab: Vocab, fmt: str) -> np.ndarray:
    codes = np.asarray(seg.codes)
    if codes.ndim != 2 or codes.shape[0] < vocab.num_codebooks:
        raise ValueError(
            f"segment codes must be [K>={vocab.num_codebooks}, F], got shape {codes.shape}"
        )
    codes = codes[: vocab.num_codebooks]
    if fmt == "semantic_only":
        codes = codes[list(vocab.semantic_codebooks)]
    return codes


def _semantic_string(vocab: Vocab, codes: np.ndarray) -> str:
    # Codebook k keeps its own character range even when the other codebooks are dropped.
    books = np.asarray(vocab.semantic_codebooks)
    cps = (codes.astype(np.int64) + 0xE000 + vocab.codebook_size * books[:, None]).T.reshape(-1)
    return cps.astype("<u4").tobytes().decode("utf-32-le")


def document_string(
    segments: Sequence[SegmentLike], fmt: DocFormat, vocab: Vocab, pua_policy: PuaPolicy = "error"
) -> str:
    """The SODA string form of one recording's document; transcripts obey `pua_policy` as in the id form."""
    _check_format(fmt)
    if pua_policy not in ("error", "escape"):
        raise ValueError(f"pua_policy must be 'error' or 'escape', got {pua_policy!r}")
    with_text = fmt in ("text_first", "audio_first")
    if with_text:
        _check_no_structure_strings(segments, (*MARKERS, BOS_TEXT, EOS_TEXT))
    parts = [BOS_TEXT]
    for i, seg in enumerate(segments):
        codes = _segment_codes(seg, vocab, fmt)
        audio = _semantic_string(vocab, codes) if fmt == "semantic_only" else vocab.codes_to_pua(codes)
        audio_span = f"{AUDIO_START}{audio}{AUDIO_END}"
        text = apply_pua_policy(seg.text, vocab.num_audio_tokens, pua_policy, _segment_where(seg, i)) if with_text else ""
        text_span = f"{TEXT_START}{text}{TEXT_END}"
        if fmt == "text_first":
            parts += [text_span, audio_span]
        elif fmt == "audio_first":
            parts += [audio_span, text_span]
        else:
            parts.append(audio_span)
    parts.append(EOS_TEXT)
    return "".join(parts)


def text_document_string(text: str) -> str:
    """The string form of a text-only document; refused for text holding a marker/BOS/EOS string."""
    found = sorted((text.find(s), s) for s in (*MARKERS, BOS_TEXT, EOS_TEXT) if s in text)
    if found:
        pos, special = found[0]
        raise MarkerInTextError(
            f"text holds the literal string {special!r} at position {pos}: the string form would read it as "
            f"that token; build the document in id form (text_document_ids), which keeps it as text"
        )
    return f"{BOS_TEXT}{text}{EOS_TEXT}"


def document_ids(
    segments: Sequence[SegmentLike], fmt: DocFormat, tokenizer: SodaTokenizer, text_ids: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """The id form of one recording's document (uint32). `text_ids` may carry pre-encoded transcripts."""
    _check_format(fmt)
    v = tokenizer.vocab
    if fmt in ("text_first", "audio_first"):
        _check_no_structure_strings(segments, (*MARKERS, tokenizer.text.bos_token, tokenizer.text.eos_token))
        if text_ids is None:
            text_ids = _encode_segment_texts(segments, tokenizer)
    parts: list[np.ndarray] = [np.array([v.bos_id], dtype=np.uint32)]
    ts, te = np.array([v.text_start_id], np.uint32), np.array([v.text_end_id], np.uint32)
    as_, ae = np.array([v.audio_start_id], np.uint32), np.array([v.audio_end_id], np.uint32)
    for i, seg in enumerate(segments):
        codes = _segment_codes(seg, v, fmt)
        if fmt == "semantic_only":
            books = np.asarray(v.semantic_codebooks)
            audio = (codes.astype(np.int64) + v.audio_offset + v.codebook_size * books[:, None]).T.reshape(-1)
            audio = audio.astype(np.uint32)
        else:
            audio = v.codes_to_ids(codes)
        if fmt == "text_first":
            parts += [ts, np.asarray(text_ids[i], np.uint32), te, as_, audio, ae]  # type: ignore[index]
        elif fmt == "audio_first":
            parts += [as_, audio, ae, ts, np.asarray(text_ids[i], np.uint32), te]  # type: ignore[index]
        else:
            parts += [as_, audio, ae]
    parts.append(np.array([v.eos_id], dtype=np.uint32))
    return np.concatenate(parts)


def text_document_ids(text: str, tokenizer: SodaTokenizer, text_ids: Sequence[int] | None = None) -> np.ndarray:
    """BOS, the text as text (special-token strings in it become ordinary BPE pieces), EOS: ids (uint32).
    `text_ids` may carry the text pre-encoded with `tokenizer.encode_plain_texts`."""
    v = tokenizer.vocab
    ids = tokenizer.encode_plain_texts([text])[0] if text_ids is None else text_ids
    return np.concatenate([[v.bos_id], np.asarray(ids, np.int64), [v.eos_id]]).astype(np.uint32)


def recording_documents(
    segments: Sequence[SegmentLike], formats: Sequence[str], tokenizer: SodaTokenizer
) -> list[np.ndarray]:
    """Every requested document of one recording, transcripts encoded once."""
    need_text = any(f in ("text_first", "audio_first") for f in formats)
    text_ids = _encode_segment_texts(segments, tokenizer) if need_text else None
    return [document_ids(segments, f, tokenizer, text_ids) for f in formats]  # type: ignore[arg-type]
