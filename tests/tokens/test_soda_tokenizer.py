from __future__ import annotations

import random

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer
from tokenizers.processors import TemplateProcessing

from sodakit.tokens.soda_tokenizer import SodaTokenizer, TextInAudioRangeError, unescape_text
from sodakit.tokens.text_tokenizer import TextTokenizer
from sodakit.tokens.vocab import AUDIO_END, AUDIO_START, MARKERS, PUA_BASE, TEXT_END, TEXT_START


def released_style(text: TextTokenizer, n_audio: int) -> Tokenizer:
    """Built independently, the way the released SODA tokenizer was: BPE + markers + PUA added tokens."""
    tok = Tokenizer.from_str(text.tokenizer.to_str())
    tok.add_special_tokens([AddedToken(m, special=True) for m in MARKERS])
    tok.add_tokens([AddedToken(chr(PUA_BASE + i), normalized=False) for i in range(n_audio)])
    tok.post_processor = TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", text.bos_id)]
    )
    return tok


def random_soda_string(rng: random.Random, vocab) -> str:
    pieces = ["<|begin_of_text|>"] if rng.random() < 0.5 else []
    words = [" hello", "The dog", " x y ", "", "..!", " naïve café", "42", "\n", "  spaced  "]
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.4:
            pieces.append(TEXT_START + rng.choice(words) + rng.choice(words) + TEXT_END)
        elif r < 0.8:
            frames = rng.randint(0, 30)
            codes = np.array([[rng.randrange(vocab.codebook_size) for _ in range(frames)] for _ in range(vocab.num_codebooks)])
            pieces.append(AUDIO_START + vocab.codes_to_pua(codes) + AUDIO_END)
        else:  # text glued to audio characters, partial markers, stray EOS
            pieces.append(rng.choice(["stray", "<|text_", "|>", "<|end_of_text|>", chr(PUA_BASE + 3) + "ab"]))
    return "".join(pieces)


def test_matches_released_style_tokenizer_on_random_strings(small_bpe):
    soda = SodaTokenizer(small_bpe)
    reference = released_style(small_bpe, soda.vocab.num_audio_tokens)
    rng = random.Random(0)
    strings = [random_soda_string(rng, soda.vocab) for _ in range(400)]
    ours = soda.encode_batch(strings)
    for s, mine in zip(strings, ours):
        assert mine.tolist() == reference.encode(s).ids, s[:80]
    # our own export of the released-style tokenizer gives the same ids too
    exported = soda.to_hf_tokenizer()
    assert all(exported.encode(s).ids == reference.encode(s).ids for s in strings[:50])


def test_decode_inverts_encode(small_bpe):
    soda = SodaTokenizer(small_bpe)
    rng = random.Random(1)
    for _ in range(100):
        s = random_soda_string(rng, soda.vocab)
        ids = soda.encode(s, add_bos=False)
        assert soda.decode(ids) == s


def test_text_in_audio_range_is_rejected_or_escaped(small_bpe):
    strict = SodaTokenizer(small_bpe)
    with pytest.raises(TextInAudioRangeError, match=r"U\+FEFF"):
        strict.encode_texts(["ok", "bom\ufeffhere"])
    escaping = SodaTokenizer(small_bpe, pua_policy="escape")
    original = "a\\b \ufeff \uff01 done"
    prepared = escaping.prepare_text(original)
    assert not any(escaping.vocab.is_audio_char(c) for c in prepared)
    assert unescape_text(prepared) == original
    ids = np.concatenate([np.asarray(x) for x in escaping.encode_texts([original])])
    assert not escaping.vocab.is_audio(ids).any()


def test_save_and_load_released_style_round_trip(tmp_path, small_bpe):
    soda = SodaTokenizer(small_bpe).with_audio_layout(4, 256)
    soda.save_pretrained(tmp_path)
    loaded = SodaTokenizer.from_pretrained(tmp_path)
    assert loaded.vocab == soda.vocab
    (tmp_path / "sodakit_vocab.json").unlink()  # inference without the sidecar assumes 2048 per codebook
    with pytest.raises(ValueError, match="multiple of 2048"):
        SodaTokenizer.from_pretrained(tmp_path)


def test_layout_mismatch_is_an_error(small_bpe):
    from sodakit.tokens.vocab import Vocab

    with pytest.raises(ValueError, match="does not match the text tokenizer"):
        SodaTokenizer(small_bpe, Vocab.soda())
