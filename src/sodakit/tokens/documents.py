"""Training documents (docs/soda.md#documents) in id form and string form, rendered from tokens/templates.py.

A recording's segments (audio codes + transcript) in time order become one document per format
(`DOC_FORMATS`: text_first, audio_first, audio_only, semantic_only; the table in templates.py says what
each holds), and a text-only corpus document is `<|begin_of_text|>text<|end_of_text|>`.

Transcripts obey the template rules in both forms (PUA policy; a literal marker, BOS or EOS string is
refused with `MarkerInTextError`). Text-only documents keep every character of their text as text, so
`text_document_string` refuses text holding a special-token string (only the id form can carry it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from sodakit.tokens.soda_tokenizer import PuaPolicy, SodaTokenizer
from sodakit.tokens.templates import DOC_FORMATS, render_ids, render_string
from sodakit.tokens.vocab import Vocab

# SODA builds both orders from every recording, so each utterance appears twice in the corpus.
DEFAULT_FORMATS: tuple[str, ...] = ("text_first", "audio_first")


class SegmentLike(Protocol):
    text: str
    codes: np.ndarray  # [K, F]


def _check_format(fmt: str) -> None:
    if fmt not in DOC_FORMATS:
        raise ValueError(f"unknown document format {fmt!r}; choose from {DOC_FORMATS}")


def document_string(segments: Sequence[SegmentLike], fmt: str, vocab: Vocab, pua_policy: PuaPolicy = "error") -> str:
    """The SODA string form of one recording's document; transcripts obey `pua_policy` as in the id form."""
    _check_format(fmt)
    return render_string(fmt, {"segments": segments}, vocab, pua_policy)


def text_document_string(text: str, vocab: Vocab | None = None, pua_policy: PuaPolicy = "error") -> str:
    """The string form of a text-only document (`vocab`: the layout whose audio range the PUA policy guards,
    SODA's by default); refused for text holding a marker/BOS/EOS string."""
    return render_string("text_only", {"text": text}, vocab or Vocab.soda(), pua_policy)


def document_ids(
    segments: Sequence[SegmentLike], fmt: str, tokenizer: SodaTokenizer,
    text_ids: Sequence[Sequence[int]] | None = None, text_cache: dict | None = None,
) -> np.ndarray:
    """The id form of one recording's document (uint32). `text_ids` may carry pre-encoded transcripts (one per
    segment); the transcripts themselves are still checked."""
    _check_format(fmt)
    if text_ids is not None:
        text_cache = {(False, seg.text): list(ids) for seg, ids in zip(segments, text_ids, strict=True)}
    return render_ids(fmt, {"segments": segments}, tokenizer, text_cache=text_cache).ids


def text_document_ids(text: str, tokenizer: SodaTokenizer, text_ids: Sequence[int] | None = None) -> np.ndarray:
    """BOS, the text as text (special-token strings in it become ordinary BPE pieces), EOS: ids (uint32).
    `text_ids` may carry the text pre-encoded with `tokenizer.encode_plain_texts`."""
    cache = None if text_ids is None else {(True, text): text_ids}
    return render_ids("text_only", {"text": text}, tokenizer, text_cache=cache).ids


def recording_documents(segments: Sequence[SegmentLike], formats: Sequence[str], tokenizer: SodaTokenizer) -> list[np.ndarray]:
    """Every requested document of one recording, each transcript encoded once."""
    cache: dict = {}
    return [document_ids(segments, f, tokenizer, text_cache=cache) for f in formats]
