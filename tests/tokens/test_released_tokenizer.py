"""The exported SODA tokenizer against the real thing: the SODA authors' recipe (codec-bpe's extender over
Llama-3's tokenizer, converted here from Meta's tokenizer.model) gives the same ids, the same decoded
strings with and without skip_special_tokens, and an exported model generates in batches under
AutoTokenizer + AutoModelForCausalLM."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from sodakit.tokens.vocab import AUDIO_END, AUDIO_START, MARKERS, PUA_BASE, TEXT_END, TEXT_START, Vocab

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SODA = Vocab.soda()


@pytest.fixture(scope="session")
def llama3_dir(shared_data, tmp_path_factory):
    """tokenizer.json converted from Meta's tokenizer.model by `sodakit tokenizer from-tiktoken` (once per session)."""
    from sodakit.tokens.commands import main

    model = shared_data / "llama3" / "tokenizer.model"
    if not model.is_file():
        pytest.skip(f"{model} not found")
    out = tmp_path_factory.mktemp("llama3")
    assert main(["from-tiktoken", str(model), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def exported(llama3_dir, tmp_path_factory):
    from sodakit.tokens.commands import main

    out = tmp_path_factory.mktemp("soda_tokenizer")
    assert main(["export", str(llama3_dir), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def reference(llama3_dir):
    """The authors' recipe: a 16,384-entry codec-bpe tokenizer (no merges, codes from U+E000) added to Llama-3
    with the four markers by codec_bpe.tools.extender.extend_existing_tokenizer."""
    pytest.importorskip("codec_bpe")
    from codec_bpe.core.trainer import Trainer
    from codec_bpe.tools.extender import extend_existing_tokenizer
    from transformers import PreTrainedTokenizerFast

    class Llama3Fast(PreTrainedTokenizerFast):
        # codec-bpe 1.4 passes transformers 4's keyword; transformers 5 renamed it (same meaning).
        def add_special_tokens(self, special_tokens_dict, replace_additional_special_tokens=True, **kw):
            return super().add_special_tokens(special_tokens_dict,
                                              replace_extra_special_tokens=replace_additional_special_tokens)

    codec = Trainer(8, 2048, vocab_size=16385, pad_token="<pad>", max_token_codebook_ngrams=0,
                    unicode_offset=PUA_BASE).train("unused: no merges are trained")
    tok = Llama3Fast(tokenizer_file=str(llama3_dir / "tokenizer.json"), bos_token=BOS, eos_token=EOS)
    assert extend_existing_tokenizer(tok, codec, list(MARKERS)) == 4 + 16384
    return tok


def _strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["The quick brown fox", " jumps over", " naïve café", " 42 and 1,024", "", "  spaced  ", "\n\n",
             "sea?", " 你好，世界", " emoji 🎧", "<|eot_id|>", BOS, EOS, "don't", "\t tab"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 5)):
            frames = rng.randint(0, 4)
            codes = np.array([[rng.randrange(2048) for _ in range(frames)] for _ in range(8)]).reshape(8, frames)
            audio = AUDIO_START + SODA.codes_to_pua(codes) + AUDIO_END
            text = TEXT_START + rng.choice(words) + rng.choice(words) + TEXT_END
            parts += [text, audio] if rng.random() < 0.5 else [audio, text]
            if rng.random() < 0.2:  # text glued to an audio character
                parts.append("stray" + chr(PUA_BASE + rng.randrange(16384)) + "x")
        out.append("".join(parts))
    return out


def test_same_added_tokens_as_the_recipe(exported, reference):
    ours = json.loads((exported / "tokenizer.json").read_text())["added_tokens"]
    theirs = json.loads(reference.backend_tokenizer.to_str())["added_tokens"]
    key = [(t["id"], t["content"], t["special"], t["normalized"]) for t in ours]
    assert key == [(t["id"], t["content"], t["special"], t["normalized"]) for t in theirs]
    assert len(key) == 256 + 4 + 16384 and all(special for _, _, special, _ in key)


def test_autotokenizer_loads_it_with_the_right_specials(exported):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(exported)
    assert isinstance(tok, PreTrainedTokenizerFast) and len(tok) == SODA.size == 144_644
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, EOS)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (128_000, 128_001, 128_001)
    assert tok.padding_side == "left"
    assert tok.convert_tokens_to_ids(list(MARKERS)) == [128_256, 128_257, 128_258, 128_259]
    assert json.loads((exported / "special_tokens_map.json").read_text())["additional_special_tokens"] == list(MARKERS)


def test_same_ids_and_decodes_as_the_recipe(exported, reference):
    from transformers import AutoTokenizer

    from sodakit.tokens.soda_tokenizer import SodaTokenizer

    ours = AutoTokenizer.from_pretrained(exported)
    soda = SodaTokenizer.from_pretrained(exported)
    strings = _strings(40)
    theirs = reference(strings)["input_ids"]
    assert ours(strings)["input_ids"] == theirs  # BOS prepended by both post-processors
    assert [x.tolist() for x in soda.encode_batch(strings)] == theirs
    assert ours(strings, add_special_tokens=False)["input_ids"] == [t[1:] for t in theirs]
    assert sum(len(t) for t in theirs) > 40 * 20
    for s, ids in zip(strings, theirs):
        assert ours.decode(ids) == reference.decode(ids) == BOS + s
        kept = ours.decode(ids, skip_special_tokens=True)
        assert kept == reference.decode(ids, skip_special_tokens=True)
        # what the authors' ASR script reads: the text alone, no audio characters, no markers
        assert not any(PUA_BASE <= ord(c) < PUA_BASE + 16384 for c in kept) and TEXT_START not in kept
    assert ours.decode([128_256, 9906, 128_257, 128_260, 130_308], skip_special_tokens=True) == "Hello"


def test_batched_generate_on_an_exported_model(tmp_path, exported):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sodakit.model.commands import main as convert
    from sodakit.model.config import PRESETS
    from sodakit.model.load import write_model_dir
    from sodakit.model.qwen3 import build_model

    cfg = PRESETS["tiny"].replace(vocab_size=SODA.size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                  head_dim=16, d_ff=64)
    ckpt = tmp_path / "ckpt"
    write_model_dir(ckpt, build_model(cfg, seed=0).state_dict(), cfg, SODA, None,
                    tokenizer=exported / "tokenizer.json")
    assert convert(["export", str(ckpt), str(tmp_path / "hf")]) == 0
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    audio = SODA.codes_to_pua(np.arange(8 * 3).reshape(8, 3) * 7)
    prompts = [f"{TEXT_START}hello there, how are you{TEXT_END}{AUDIO_START}",
               f"{AUDIO_START}{audio}{AUDIO_END}{TEXT_START}"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[:, -1].all()  # left padding: rows differ in length, and end together
    first = mask.argmax(1)
    assert batch["input_ids"][torch.arange(2), first].tolist() == [128_000] * 2  # BOS from the post-processor
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
        for i, p in enumerate(prompts):
            one = tok([p], return_tensors="pt")
            alone = model.generate(**one, max_new_tokens=6, do_sample=False)
            assert out[i, batch["input_ids"].shape[1]:].tolist() == alone[0, one["input_ids"].shape[1]:].tolist()
    assert int(out.max()) < SODA.size
