from __future__ import annotations

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
from sodakit.tokens.soda_tokenizer import SodaTokenizer


@dataclass
class Seg:
    text: str
    codes: np.ndarray


@pytest.fixture()
def tok(small_bpe):
    return SodaTokenizer(small_bpe)


@pytest.fixture()
def segments():
    rng = np.random.default_rng(0)
    return [Seg("Hello there.", rng.integers(0, 2048, (8, 3))), Seg("General Kenobi!", rng.integers(0, 2048, (8, 2)))]


def test_string_templates_exactly_as_spec(tok, segments):
    v = tok.vocab
    a1, a2 = v.codes_to_pua(segments[0].codes), v.codes_to_pua(segments[1].codes)
    assert document_string(segments, "text_first", v) == (
        "<|begin_of_text|><|text_start|>Hello there.<|text_end|><|audio_start|>" + a1 + "<|audio_end|>"
        "<|text_start|>General Kenobi!<|text_end|><|audio_start|>" + a2 + "<|audio_end|><|end_of_text|>"
    )
    assert document_string(segments, "audio_first", v) == (
        "<|begin_of_text|><|audio_start|>" + a1 + "<|audio_end|><|text_start|>Hello there.<|text_end|>"
        "<|audio_start|>" + a2 + "<|audio_end|><|text_start|>General Kenobi!<|text_end|><|end_of_text|>"
    )
    assert document_string(segments, "audio_only", v) == (
        "<|begin_of_text|><|audio_start|>" + a1 + "<|audio_end|><|audio_start|>" + a2 + "<|audio_end|><|end_of_text|>"
    )
    s1 = "".join(chr(0xE000 + c) for c in segments[0].codes[0])
    s2 = "".join(chr(0xE000 + c) for c in segments[1].codes[0])
    assert document_string(segments, "semantic_only", v) == (
        "<|begin_of_text|><|audio_start|>" + s1 + "<|audio_end|><|audio_start|>" + s2 + "<|audio_end|><|end_of_text|>"
    )
    assert text_document_string("plain text") == "<|begin_of_text|>plain text<|end_of_text|>"


@pytest.mark.parametrize("fmt", ["text_first", "audio_first", "audio_only", "semantic_only"])
def test_id_form_equals_tokenized_string_form(tok, segments, fmt):
    ids = document_ids(segments, fmt, tok)
    assert ids.tolist() == tok.encode(document_string(segments, fmt, tok.vocab), add_bos=False).tolist()
    assert ids[0] == tok.vocab.bos_id and ids[-1] == tok.vocab.eos_id


def test_semantic_only_keeps_codebook_zero_ids(tok, segments):
    ids = document_ids(segments, "semantic_only", tok)
    audio = ids[tok.vocab.is_audio(ids.astype(np.int64))]
    assert tok.vocab.is_semantic(audio.astype(np.int64)).all() and len(audio) == 5


def test_text_document_and_recording_documents(tok, segments):
    ids = text_document_ids("plain text", tok)
    assert ids.tolist() == tok.encode(text_document_string("plain text"), add_bos=False).tolist()
    docs = recording_documents(segments, ["text_first", "audio_first"], tok)
    assert [d.tolist() for d in docs] == [document_ids(segments, f, tok).tolist() for f in ["text_first", "audio_first"]]
    with pytest.raises(ValueError, match="unknown document format"):
        document_string(segments, "weird", tok.vocab)


def test_semantic_only_checks_the_codes_it_keeps(tok, segments):
    """Codes outside the codebook used to become ids of another codebook in semantic_only documents."""
    bad = [Seg("x", np.array([[2048, 1]] + [[0, 0]] * 7))]
    with pytest.raises(ValueError, match=r"segment codes\[0\]: audio codes outside \[0, 2048\)"):
        document_ids(bad, "semantic_only", tok)
    with pytest.raises(ValueError, match="audio codes outside"):
        document_string(bad, "semantic_only", tok.vocab)
