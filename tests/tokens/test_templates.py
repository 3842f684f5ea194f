"""The token language table: every format rendered by hand, in id and string form, and the scored positions.

A character-level tokenizer (one id per character) and a layout of 2 codebooks x 4 codes keep every
expected sequence writable by hand:

    0 BOS, 1 EOS, 2.. one per character of ALPHABET, 36..39 the markers, 40 + 4*k + c audio code c of codebook k
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

from sodakit.tokens.soda_tokenizer import SodaTokenizer, TextInAudioRangeError
from sodakit.tokens.templates import (
    DOC_FORMATS,
    TEMPLATES,
    MarkerInTextError,
    render_ids,
    render_string,
    s2st_sequence,
)
from sodakit.tokens.text_tokenizer import TextTokenizer
from sodakit.tokens.vocab import Vocab

ALPHABET = "<>/ abcdefghijklmnopqrstuvwxyz"
BOS, EOS, TS, TE, AS, AE = 0, 1, 32, 33, 34, 35
B, E = "<|begin_of_text|>", "<|end_of_text|>"
ts, te, as_, ae = "<|text_start|>", "<|text_end|>", "<|audio_start|>", "<|audio_end|>"


def c(s: str) -> list[int]:
    """The character tokenizer's ids of `s`."""
    return [2 + ALPHABET.index(ch) for ch in s]


def a(k: int, code: int) -> int:
    """Audio id of code `code` of codebook `k`."""
    return 36 + 4 * k + code


def pua(k: int, code: int) -> str:
    return chr(0xE000 + 4 * k + code)


@dataclass
class Seg:
    text: str
    codes: np.ndarray


@pytest.fixture(scope="module")
def tok() -> SodaTokenizer:
    vocab = {B: 0, E: 1, **{ch: 2 + i for i, ch in enumerate(ALPHABET)}}
    t = Tokenizer(models.WordLevel(vocab, unk_token=B))
    t.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    t.add_special_tokens([AddedToken(B, special=True), AddedToken(E, special=True)])
    text = TextTokenizer(t)
    assert text.vocab_size == 32
    return SodaTokenizer(text, Vocab(text_vocab_size=32, bos_id=0, eos_id=1, num_codebooks=2, codebook_size=4))


# Two segments: "hi" with 2 frames (codes cb0 [1, 2], cb1 [3, 0]), "yo" with 1 frame (cb0 [0], cb1 [1]).
SEGMENTS = [Seg("hi", np.array([[1, 2], [3, 0]])), Seg("yo", np.array([[0], [1]]))]
A1, A2 = [a(0, 1), a(1, 3), a(0, 2), a(1, 0)], [a(0, 0), a(1, 1)]
P1, P2 = pua(0, 1) + pua(1, 3) + pua(0, 2) + pua(1, 0), pua(0, 0) + pua(1, 1)

DOCUMENTS = {
    "text_first": ([BOS, TS, *c("hi"), TE, AS, *A1, AE, TS, *c("yo"), TE, AS, *A2, AE, EOS],
                   f"{B}{ts}hi{te}{as_}{P1}{ae}{ts}yo{te}{as_}{P2}{ae}{E}"),
    "audio_first": ([BOS, AS, *A1, AE, TS, *c("hi"), TE, AS, *A2, AE, TS, *c("yo"), TE, EOS],
                    f"{B}{as_}{P1}{ae}{ts}hi{te}{as_}{P2}{ae}{ts}yo{te}{E}"),
    "audio_only": ([BOS, AS, *A1, AE, AS, *A2, AE, EOS], f"{B}{as_}{P1}{ae}{as_}{P2}{ae}{E}"),
    "semantic_only": ([BOS, AS, a(0, 1), a(0, 2), AE, AS, a(0, 0), AE, EOS],
                      f"{B}{as_}{pua(0, 1)}{pua(0, 2)}{ae}{as_}{pua(0, 0)}{ae}{E}"),
}


@pytest.mark.parametrize("fmt", list(DOCUMENTS))
def test_documents_by_hand(tok, fmt):
    ids, string = DOCUMENTS[fmt]
    assert render_ids(fmt, {"segments": SEGMENTS}, tok).ids.tolist() == ids
    assert render_string(fmt, {"segments": SEGMENTS}, tok.vocab) == string
    assert tok.encode(string, add_bos=False).tolist() == ids


def test_every_document_format_is_in_the_table():
    assert set(DOC_FORMATS) == set(DOCUMENTS)


def test_text_only_document_by_hand(tok):
    assert render_ids("text_only", {"text": "a b"}, tok).ids.tolist() == [BOS, *c("a b"), EOS]
    assert render_string("text_only", {"text": "a b"}, tok.vocab) == f"{B}a b{E}"


def test_s2st_sequence_by_hand(tok):
    src, tgt = np.array([[1], [2]]), np.array([[3, 0], [0, 3]])
    ids, start = s2st_sequence(tok, src, "fr", "oui", "yes", tgt)
    head = [BOS, AS, a(0, 1), a(1, 2), AE, TS]
    src_text = c("<language>fr</language>oui")
    tgt_text = c("<language>en</language>yes")
    assert ids.tolist() == [*head, *src_text, TE, TS, *tgt_text, TE, AS, a(0, 3), a(1, 0), a(0, 0), a(1, 3), AE, EOS]
    assert start == len(head)
    assert s2st_sequence(tok, src, "fr", "oui", "yes", tgt, response_from="target_text")[1] == len(head) + len(src_text) + 2
    assert s2st_sequence(tok, src, "fr", "oui", "yes", tgt, response_from="target_audio")[1] == len(ids) - 6
    values = {"source_audio": src, "source_language": "fr", "source_text": "oui", "target_language": "en",
              "target_text": "yes", "target_audio": tgt}
    assert render_string("s2st", values, tok.vocab) == (
        f"{B}{as_}{pua(0, 1)}{pua(1, 2)}{ae}{ts}<language>fr</language>oui{te}{ts}<language>en</language>yes{te}"
        f"{as_}{pua(0, 3)}{pua(1, 0)}{pua(0, 0)}{pua(1, 3)}{ae}{E}"
    )
    with pytest.raises(ValueError, match="response_from must be one of"):
        s2st_sequence(tok, src, "fr", "oui", "yes", tgt, response_from="everything")  # type: ignore[arg-type]


def test_scoring_spans_by_hand(tok):
    v = tok.vocab
    codes = np.array([[1, 2, 3], [0, 1, 2]])  # 3 frames
    r = render_ids("speech_score", {"audio": codes}, v)
    assert r.ids.tolist() == [BOS, AS, a(0, 1), a(1, 0), a(0, 2), a(1, 1), a(0, 3), a(1, 2), AE]
    assert r.scored.tolist() == [2, 3, 4, 5, 6, 7]
    first = render_ids("speech_score", {"audio": codes}, v, score_columns=[0])
    assert first.ids.tolist() == r.ids.tolist() and first.scored.tolist() == [2, 4, 6]  # frame-major columns
    sem = render_ids("speech_score", {"audio": codes}, v, audio_books=[0])
    assert sem.ids.tolist() == [BOS, AS, a(0, 1), a(0, 2), a(0, 3), AE] and sem.scored.tolist() == [2, 3, 4]
    t = render_ids("text_score", {"text": [7, 8]}, v)
    assert t.ids.tolist() == [BOS, TS, 7, 8, TE] and t.scored.tolist() == [2, 3]
    cont = render_ids("continuation_score", {"context": [5, 6], "continuation": [7, 8, 9]}, v)
    assert cont.ids.tolist() == [BOS, 5, 6, 7, 8, 9] and cont.scored.tolist() == [3, 4, 5]
    inside = render_ids("continuation_score_in_text", {"context": [5, 6], "continuation": [7]}, v)
    assert inside.ids.tolist() == [BOS, TS, 5, 6, 7, TE] and inside.scored.tolist() == [4]
    # scored text given as a string is tokenized on its own, not joined with the context
    s = render_ids("continuation_score", {"context": "ab", "continuation": "c"}, tok)
    assert s.ids.tolist() == [BOS, *c("abc")] and s.scored.tolist() == [3]


def test_generation_prompts_by_hand(tok):
    codes, shot = np.array([[1], [2]]), np.array([[3], [3]])
    asr = render_ids("asr_prompt", {"audio": codes, "shots": [{"codes": shot, "text": "ok"}]}, tok)
    assert asr.ids.tolist() == [BOS, AS, a(0, 3), a(1, 3), AE, TS, *c("ok"), TE, EOS, BOS, AS, a(0, 1), a(1, 2), AE, TS]
    assert render_string("asr_prompt", {"audio": codes, "shots": []}, tok.vocab) == f"{B}{as_}{pua(0, 1)}{pua(1, 2)}{ae}{ts}"
    voice = Seg("me", shot)
    tts = render_ids("tts_prompt", {"text": "hey", "voice": voice}, tok)
    assert tts.ids.tolist() == [BOS, TS, *c("me"), TE, AS, a(0, 3), a(1, 3), AE, TS, *c("hey"), TE, AS]
    assert render_ids("tts_prompt", {"text": "hey", "voice": None}, tok).ids.tolist() == [BOS, TS, *c("hey"), TE, AS]
    assert render_ids("continuation_prompt", {"audio": codes}, tok.vocab).ids.tolist() == [BOS, AS, a(0, 1), a(1, 2)]


def test_s2st_prompt_forces_the_given_fields_in_order(tok):
    src = np.array([[1], [2]])
    head = [BOS, AS, a(0, 1), a(1, 2), AE, TS]

    def prompt(**given):
        return render_ids("s2st_prompt", {"source_audio": src, **given}, tok).ids.tolist()

    assert prompt() == head
    assert prompt(source_language="fr") == [*head, *c("<language>fr</language>")]
    assert prompt(source_language="fr", source_text="oui") == [*head, *c("<language>fr</language>oui"), TE, TS]
    full = prompt(source_language="fr", source_text="oui", target_language="en", target_text="yes")
    assert full == [*head, *c("<language>fr</language>oui"), TE, TS, *c("<language>en</language>yes"), TE, AS]
    with pytest.raises(ValueError, match="s2st_prompt: forcing target language needs source text too"):
        prompt(source_language="fr", target_language="en", target_text="yes")


def test_id_form_equals_the_tokenized_string_form(small_bpe):
    """With real BPE merges: the text pieces of one run (a language tag and its text) are encoded together."""
    tok = SodaTokenizer(small_bpe)
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 2048, (8, n)) for n in (3, 2)]
    segments = [Seg("The quick fox.", codes[0]), Seg("She sells sea shells.", codes[1])]
    values = {
        "text_only": {"text": "Speech and text tokens."},
        "s2st": {"source_audio": codes[0], "source_language": "fr", "source_text": "le renard", "target_language": "en",
                 "target_text": "the fox", "target_audio": codes[1]},
        "asr_prompt": {"audio": codes[0], "shots": [{"codes": codes[1], "text": "the lazy dog"}]},
        "tts_prompt": {"text": "by the sea shore", "voice": segments[0]},
        "continuation_prompt": {"audio": codes[1]},
        "s2st_prompt": {"source_audio": codes[0], "source_language": "fr", "source_text": "le renard"},
        **{f: {"segments": segments} for f in DOC_FORMATS},
    }
    assert set(values) == {k for k, t in TEMPLATES.items() if t.role != "scoring"}  # every template with a string form
    for name, vals in values.items():
        string = render_string(name, vals, tok.vocab)
        assert render_ids(name, vals, tok).ids.tolist() == tok.encode(string, add_bos=False).tolist(), name


def test_text_rules_hold_in_every_template(tok):
    codes = np.array([[1], [2]])
    # A marker string in prompt text used to become that marker token: it is refused like in documents.
    with pytest.raises(MarkerInTextError, match=r"tts_prompt\.text: text holds the literal string '<\|audio_end\|>'"):
        render_ids("tts_prompt", {"text": "say <|audio_end|>"}, tok)
    with pytest.raises(MarkerInTextError, match=r"shot text\[0\]"):
        render_ids("asr_prompt", {"audio": codes, "shots": [{"codes": codes, "text": "a <|end_of_text|>"}]}, tok)
    with pytest.raises(TextInAudioRangeError, match=r"voice prompt text: character U\+E001"):
        render_ids("tts_prompt", {"text": "x", "voice": Seg("a \ue001", codes)}, tok)
    with pytest.raises(TextInAudioRangeError):
        render_string("text_only", {"text": "a \ue001"}, tok.vocab)


def test_bad_values_are_named(tok):
    v = tok.vocab
    with pytest.raises(ValueError, match=r"segment codes\[0\]: audio codes outside \[0, 4\): min 9, max 9"):
        render_ids("semantic_only", {"segments": [Seg("hi", np.array([[9], [0]]))]}, tok)
    with pytest.raises(ValueError, match=r"speech_score\.audio: empty audio span \(0 frames\)"):
        render_ids("speech_score", {"audio": np.zeros((2, 0), int)}, v)
    with pytest.raises(ValueError, match="empty text"):
        render_ids("text_score", {"text": []}, v)
    with pytest.raises(ValueError, match=r"audio codes must be \[K>=2, frames\]"):
        render_ids("continuation_prompt", {"audio": np.zeros((1, 3), int)}, v)
    with pytest.raises(ValueError, match=r"tts_prompt\.text: no value given"):
        render_ids("tts_prompt", {}, tok)
    with pytest.raises(ValueError, match="no tokenizer"):
        render_ids("text_score", {"text": "hi"}, v)
    with pytest.raises(ValueError, match="the string form needs the text"):
        render_string("text_score", {"text": [3, 4]}, v)
    with pytest.raises(ValueError, match="unknown template 'nope'"):
        render_ids("nope", {}, v)
    # documents may hold a segment without frames; prompts may not
    assert render_ids("audio_only", {"segments": [Seg("", np.zeros((2, 0), int))]}, tok).ids.tolist() == [BOS, AS, AE, EOS]
