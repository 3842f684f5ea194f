"""README: the tokenizer written by `SodaTokenizer.save_pretrained` loads with transformers'
`PreTrainedTokenizerFast` / `AutoTokenizer` and gives the same ids as sodakit on interleaved SODA strings
(text + markers + PUA audio characters)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import AUDIO_END, AUDIO_START, MARKERS, PUA_BASE, TEXT_END, TEXT_START

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


@pytest.fixture(scope="module", params=[(2, 64), (8, 2048)], ids=["2x64", "soda_8x2048"])
def saved(request, small_bpe, tmp_path_factory):
    k, c = request.param
    soda = SodaTokenizer(small_bpe).with_audio_layout(k, c)
    d = tmp_path_factory.mktemp(f"tok_{k}x{c}")
    soda.save_pretrained(d)
    return soda, d


def _interleaved(vocab, rng: random.Random) -> str:
    words = ["The quick brown fox", " jumps over", " naïve café", " 42 and 1,024", "", "  spaced  ", "\n", "sea?"]
    parts = []
    for _ in range(rng.randint(1, 6)):
        frames = rng.randint(0, 6)
        codes = np.array([[rng.randrange(vocab.codebook_size) for _ in range(frames)]
                          for _ in range(vocab.num_codebooks)])
        audio = AUDIO_START + vocab.codes_to_pua(codes) + AUDIO_END
        text = TEXT_START + rng.choice(words) + rng.choice(words) + TEXT_END
        parts += [text, audio] if rng.random() < 0.5 else [audio, text]
        if rng.random() < 0.2:  # text glued to audio characters, a stray EOS
            parts.append(rng.choice(["stray" + chr(PUA_BASE + 1) + "x", EOS]))
    return BOS + "".join(parts) + EOS if rng.random() < 0.3 else "".join(parts)


def _by_hand(soda: SodaTokenizer, s_parts: list) -> list[int]:
    """Ids of a document given as parts: ("text", str) -> BPE ids, ("marker", m), ("audio", codes [K, F])."""
    v = soda.vocab
    ids = [v.bos_id]
    for kind, x in s_parts:
        if kind == "text":
            ids += soda.text.tokenizer.encode(x, add_special_tokens=False).ids
        elif kind == "marker":
            ids.append(v.text_vocab_size + MARKERS.index(x))
        else:
            ids += [v.audio_id(k, int(x[k, f])) for f in range(x.shape[1]) for k in range(v.num_codebooks)]
    return ids


def test_loads_with_transformers(saved):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    soda, d = saved
    v = soda.vocab
    for tok in (PreTrainedTokenizerFast.from_pretrained(d), AutoTokenizer.from_pretrained(d)):
        assert isinstance(tok, PreTrainedTokenizerFast)
        assert len(tok) == v.size
        assert (tok.bos_token, tok.eos_token) == (BOS, EOS)
        assert (tok.bos_token_id, tok.eos_token_id) == (v.bos_id, v.eos_id)
        assert tok.convert_tokens_to_ids(list(MARKERS)) == [v.text_start_id, v.text_end_id, v.audio_start_id,
                                                            v.audio_end_id]
        last = v.num_codebooks - 1, v.codebook_size - 1
        assert tok.convert_tokens_to_ids([chr(PUA_BASE), chr(PUA_BASE + v.num_audio_tokens - 1)]) == [
            v.audio_id(0, 0), v.audio_id(*last)]
        assert v.audio_id(*last) == v.size - 1


def test_same_ids_as_sodakit_on_a_known_document(saved):
    from transformers import AutoTokenizer

    soda, d = saved
    v = soda.vocab
    tok = AutoTokenizer.from_pretrained(d)
    codes = np.array([[(3 * f + k) % v.codebook_size for f in range(5)] for k in range(v.num_codebooks)])
    parts = [("marker", TEXT_START), ("text", "The quick brown fox"), ("marker", TEXT_END),
             ("marker", AUDIO_START), ("audio", codes), ("marker", AUDIO_END),
             ("marker", TEXT_START), ("text", " naïve café"), ("marker", TEXT_END)]
    s = "".join(x if k != "audio" else v.codes_to_pua(x) for k, x in parts)
    expected = _by_hand(soda, parts)
    # 1 BOS + markers + text + 5 frames x K codebooks, the audio frame-major
    assert expected[0] == v.bos_id and expected.count(v.text_start_id) == 2
    assert sum(v.is_audio(np.array(expected))) == 5 * v.num_codebooks
    assert soda.encode(s).tolist() == expected
    assert tok(s)["input_ids"] == expected
    assert tok.encode(s) == expected
    assert tok.encode(s, add_special_tokens=False) == expected[1:] == soda.encode(s, add_bos=False).tolist()
    # back to the string: markers and audio characters are single tokens that decode to themselves
    assert tok.decode(expected[1:]) == s == soda.decode(expected[1:])


def test_same_ids_as_sodakit_on_random_interleaved_strings(saved):
    from transformers import PreTrainedTokenizerFast

    soda, d = saved
    tok = PreTrainedTokenizerFast.from_pretrained(d)
    rng = random.Random(0)
    strings = [_interleaved(soda.vocab, rng) for _ in range(60)]
    ours = [x.tolist() for x in soda.encode_batch(strings)]
    theirs = tok(strings)["input_ids"]
    assert len(theirs) == len(ours)
    for s, a, b in zip(strings, ours, theirs):
        assert a == b, s[:80]
    assert sum(len(x) for x in ours) > 60 * 10  # non-trivial documents
