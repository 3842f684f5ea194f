"""Transcripts obey one policy in the string and the id form; codebook selection checks its span."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest

from sodakit.tokens.documents import (
    document_ids,
    document_string,
    recording_documents,
    text_document_ids,
    text_document_string,
)
from sodakit.tokens.soda_tokenizer import SodaTokenizer, TextInAudioRangeError, unescape_text
from sodakit.tokens.templates import MarkerInTextError
from sodakit.tokens.vocab import BOS_TEXT, EOS_TEXT, MARKERS, AudioSpanError, Vocab

TEXT_FORMATS = ["text_first", "audio_first"]


@dataclass
class Seg:
    id: str
    text: str
    codes: np.ndarray


def make_segments(*texts: str) -> list[Seg]:
    rng = np.random.default_rng(0)
    return [Seg(f"utt{i}", t, rng.integers(0, 2048, (8, 3))) for i, t in enumerate(texts)]


@pytest.fixture()
def tok(small_bpe):
    return SodaTokenizer(small_bpe)


@pytest.fixture()
def released_style(small_bpe, tmp_path):
    """The same BPE saved in the released shape: markers and audio characters are added tokens."""
    SodaTokenizer(small_bpe).save_pretrained(tmp_path)
    return SodaTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_string_form_rejects_audio_range_text_like_the_id_form(tok, fmt):
    segments = make_segments("fine", "a \ufeff BOM")
    with pytest.raises(TextInAudioRangeError, match=r"segment text\[1\] \(segment utt1\): character U\+FEFF at position 2"):
        document_ids(segments, fmt, tok)
    with pytest.raises(TextInAudioRangeError, match=r"segment text\[1\] \(segment utt1\): character U\+FEFF at position 2"):
        document_string(segments, fmt, tok.vocab)
    with pytest.raises(ValueError, match="pua_policy must be 'error' or 'escape'"):
        document_string(segments, fmt, tok.vocab, pua_policy="drop")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["text_first", "audio_first", "audio_only", "semantic_only"])
@pytest.mark.parametrize("released", [False, True])
def test_id_form_equals_tokenized_string_form_under_both_policies(tok, released_style, fmt, released):
    """README: the id form equals the tokenized string form; that must hold with escaped text too."""
    base = released_style if released else tok
    segments = make_segments("back\\slash and \ufeff here", "plain words")
    for policy in ("error", "escape"):
        if policy == "error" and fmt in TEXT_FORMATS:
            continue  # refused in both forms (test above)
        t = SodaTokenizer(base.text, base.vocab, pua_policy=policy)
        ids = document_ids(segments, fmt, t)
        assert ids.tolist() == t.encode(document_string(segments, fmt, t.vocab, pua_policy=policy), add_bos=False).tolist()
    escaped = document_string(segments, "text_first", base.vocab, pua_policy="escape")
    assert "\ufeff" not in escaped and "\\u{FEFF}" in escaped
    assert unescape_text("back\\\\slash and \\u{FEFF} here") == segments[0].text


@pytest.mark.parametrize("special", [*MARKERS, BOS_TEXT, EOS_TEXT])
@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_text_holding_a_marker_string_is_refused_in_both_forms(tok, released_style, special, fmt):
    segments = make_segments("fine", f"says {special} aloud")
    where = rf"segment text\[1\] \(segment utt1\): text holds the literal string '{re.escape(special)}' at position 5"
    with pytest.raises(MarkerInTextError, match=where):
        document_string(segments, fmt, tok.vocab)
    for t in (tok, released_style):
        with pytest.raises(MarkerInTextError, match=where):
            document_ids(segments, fmt, t)
        with pytest.raises(MarkerInTextError, match=where):
            recording_documents(segments, [fmt], t)
        with pytest.raises(MarkerInTextError, match=where):  # pre-encoded text does not bypass the check
            document_ids(segments, fmt, t, text_ids=[[5], [6]])
    with pytest.raises(MarkerInTextError):
        document_string(segments, fmt, tok.vocab, pua_policy="escape")  # escaping does not cover markers


def test_formats_without_text_ignore_the_transcript(tok):
    segments = make_segments("says <|audio_end|> and \ufeff")
    for fmt in ("audio_only", "semantic_only"):
        assert document_ids(segments, fmt, tok).tolist() == tok.encode(document_string(segments, fmt, tok.vocab), add_bos=False).tolist()


@pytest.mark.parametrize("select", [lambda v, s: v.select_codebooks(s, 2), lambda v, s: v.semantic_only(s)], ids=["select", "semantic"])
def test_codebook_selection_refuses_spans_out_of_order_or_with_text(select):
    v = Vocab.soda()
    flat = v.codes_to_ids(np.random.default_rng(2).integers(0, 2048, (8, 4)))
    with pytest.raises(AudioSpanError, match="frame 0 position 0 holds codebook 7, expected 0"):
        select(v, np.roll(flat, 1))  # one token late: every column is another codebook
    with pytest.raises(AudioSpanError, match=r"frame 0 position 0 holds codebook 7, expected 0 \(32 misplaced"):
        v.ids_to_codes(np.roll(flat, 1))  # the same error as ids_to_codes gives
    with_text = flat.copy()
    with_text[10] = 42
    with pytest.raises(AudioSpanError, match=r"non-audio ids \[42\]"):
        select(v, with_text)
    with pytest.raises(AudioSpanError, match=r"non-audio ids \[42\]"):
        select(v, with_text.astype(np.int64))
    # a valid span still works, partial trailing frame dropped, dtype kept
    got = v.select_codebooks(flat[:-3], 2)
    assert got.dtype == flat.dtype and got.tolist() == v.codes_to_ids(v.ids_to_codes(flat)[:2, :3]).tolist()


WEB_TEXT = "web text <|audio_start|> x <|begin_of_text|> y <|end_of_text|> z <|text_end|>"


@pytest.mark.parametrize("released", [False, True])
def test_text_only_documents_keep_special_strings_as_text(tok, released_style, released):
    """Web text is text: a marker/BOS/EOS string inside it becomes BPE pieces, with either tokenizer
    shape (the released shape holds the markers and audio characters as added tokens)."""
    t = released_style if released else tok
    v = t.vocab
    ids = text_document_ids(WEB_TEXT, t)
    assert ids[0] == v.bos_id and ids[-1] == v.eos_id  # BOS/EOS added as ids, once each
    inner = ids[1:-1].astype(np.int64)
    assert not v.is_marker(inner).any() and not v.is_audio(inner).any()
    assert v.bos_id not in inner and v.eos_id not in inner
    assert t.text.decode(inner.tolist()) == WEB_TEXT  # the characters, all of them, as text
    # the same ids whichever tokenizer shape (the plain BPE is the same model)
    assert ids.tolist() == text_document_ids(WEB_TEXT, tok if released else released_style).tolist()
    # plain text is unchanged: the id form still equals the tokenized string form
    assert text_document_ids("plain words", t).tolist() == t.encode(text_document_string("plain words"), add_bos=False).tolist()


def test_text_only_string_form_refuses_special_strings(tok):
    with pytest.raises(MarkerInTextError, match=re.escape("literal string '<|audio_start|>' at position 9")):
        text_document_string(WEB_TEXT)


def test_text_only_documents_still_follow_the_pua_policy(tok):
    with pytest.raises(TextInAudioRangeError, match=r"U\+FEFF"):
        text_document_ids("a \ufeff b", tok)
    escaped = SodaTokenizer(tok.text, tok.vocab, pua_policy="escape")
    assert tok.text.decode(text_document_ids("a \ufeff b", escaped)[1:-1].tolist()) == "a \\u{FEFF} b"
