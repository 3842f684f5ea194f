"""The demo's corpus and look-alike benchmarks in its own language, at toy scale with espeak-ng voices."""

from __future__ import annotations

import json
import shutil

import pytest

from sodakit.demo.language_bench import LanguageBenchConfig, build_language_bench
from sodakit.demo.language_corpus import LanguageCorpusConfig, build_language_corpus, demo_voices, plan_split
from sodakit.eval.readers.blimp import read_blimp
from sodakit.eval.readers.librispeech import read_librispeech
from sodakit.eval.readers.seedtts import read_seedtts
from sodakit.eval.readers.zerospeech import read_zr2021

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")

TOY = dict(train_sentences=24, text_sentences=40, val_sentences=8, test_sentences=60, pairs_per_phenomenon=40,
           sentences_per_recording=4, voices=3, flite_share=0.0, val_voices=2, accents=("en-us",),
           variants=("m3", "f3", "m1"), pitches=(50,), speeds=(1.0,), phrase_share=0.25, word_share=0.25)


def test_the_split_keeps_every_held_out_sentence_out_of_training():
    split = plan_split(LanguageCorpusConfig(**TOY))
    held = set(split.val) | set(split.test) | {s for p in split.pairs for s in (p["good"], p["bad"])}
    assert not held & set(split.train) and not held & set(split.text)
    assert len(split.pairs) == 8 * 40 and len(split.train) == 24


@pytest.fixture(scope="module")
def toy_corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs Debian's espeak-ng")
    out = tmp_path_factory.mktemp("lang") / "corpus"
    info = build_language_corpus(out, LanguageCorpusConfig(**TOY), workers=1, log=lambda m: None)
    return out, info


@needs_espeak
def test_corpus_manifests_segments_and_units(toy_corpus):
    out, info = toy_corpus
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (out / "manifest_val.jsonl").read_text().splitlines()]
    held = json.loads((out / "heldout.json").read_text())
    assert {r["text"] for r in val} == set(held["val"])
    assert info["recordings"] == 6 and info["voices"] == 3 and len(val) == 8
    # Some recordings are read phrase by phrase or word by word: their segments are not sentences ...
    short = [r for r in rows if not r["text"].endswith((".", "?"))]
    assert short and info["short_segments"] == len(short)
    # ... and every training sentence is still read whole or in order, piece by piece.
    by_rec: dict[str, list[str]] = {}
    for r in rows:
        by_rec.setdefault(r["recording_id"], []).append(r["text"])
        assert r["audio"].startswith("/") and 0 <= r["start"] < r["end"]
    split = plan_split(LanguageCorpusConfig(**TOY))
    for i, texts in enumerate(by_rec.values()):
        assert " ".join(texts) == " ".join(split.train[4 * i : 4 * i + 4])
    assert len((out / "text.txt").read_text().splitlines()) == 10


@needs_espeak
def test_bench_sets_read_back_through_the_eval_readers(toy_corpus, tmp_path):
    out, _ = toy_corpus
    held = json.loads((out / "heldout.json").read_text())
    cfg = LanguageBenchConfig(words=12, blimp_pairs=16, asr_utterances=6, tts_items=3)
    bench = tmp_path / "bench"
    rec = build_language_bench(bench, held, demo_voices(LanguageCorpusConfig(**TOY)), cfg, log=lambda m: None)
    lexical = read_zr2021(bench / "zerospeech2021", "lexical")
    syntactic = read_zr2021(bench / "zerospeech2021", "syntactic")
    assert len({it.group for it in lexical.items}) == 12 and len({it.group for it in syntactic.items}) == 16
    # members of a spoken pair last the same number of 80 ms codec frames
    for it in lexical.items[:8] + syntactic.items[:8]:
        pos, neg = it.pos.load(16000), it.neg.load(16000)
        assert -(-len(pos) // 1280) == -(-len(neg) // 1280)
    assert len(read_blimp(bench / "blimp").items) == 16
    assert len(read_librispeech(bench / "librispeech" / "test-clean").items) == 6
    tts = read_seedtts(bench / "seedtts" / "en")
    assert len(tts.items) == 3 and rec["sets"]["tts"]["items"] == 3
    for it in tts.items:
        assert len(it.prompt_text.split()) <= cfg.tts_prompt_max_words and it.target_text in held["test"]


def test_blimp_groups_short_of_matched_pairs_are_made_up_from_the_others(monkeypatch):
    import numpy as np
    import pytest

    from sodakit.demo import language_bench
    from sodakit.demo.voices import DemoVoice

    # A stand-in voice: 0.1 s per character, so equally long texts match and "b"'s pairs never do.
    monkeypatch.setattr(language_bench, "render_sentences",
                        lambda texts, voice, sr: [np.zeros(len(t) * sr // 10, np.float32) for t in texts])
    cands = [(f"aa{i}", f"bb{i}", {"k": "a"}, "a") for i in range(6)] + \
            [(f"c{i}", f"dddddddd{i}", {"k": "b"}, "b") for i in range(6)]
    cfg = language_bench.LanguageBenchConfig(voices_per_pair=1, voice_tries=2)
    voices = [DemoVoice("espeak:en-us"), DemoVoice("espeak:en-gb")]
    with pytest.raises(ValueError, match="length-matched pairs"):
        language_bench._matched_pairs(cands, voices, cfg, 2, 16_000)
    out = language_bench._matched_pairs(cands, voices, cfg, 2, 16_000, total=4)
    assert [sp.id for sp in out] == ["0", "1", "2", "3"] and {sp.meta["k"] for sp in out} == {"a"}
    assert all(len(sp.pos_wav) == len(sp.neg_wav) for sp in out)


def test_blimp_groups_fill_from_later_candidates_before_spares_make_them_up(monkeypatch):
    """A group whose candidates come late still gets its pairs: spares of a full group only make up a
    group that the candidates cannot fill (before, the spares ended the search and one group took all)."""
    import numpy as np

    from sodakit.demo import language_bench
    from sodakit.demo.voices import DemoVoice

    monkeypatch.setattr(language_bench, "render_sentences",
                        lambda texts, voice, sr: [np.zeros(len(t) * sr // 10, np.float32) for t in texts])
    monkeypatch.setattr(language_bench, "MATCH_CHUNK", 2)
    cands = [(f"aa{i}", f"bb{i}", {"k": "a"}, "a") for i in range(6)] + \
            [(f"cc{i}", f"dd{i}", {"k": "b"}, "b") for i in range(2)]
    cfg = language_bench.LanguageBenchConfig(voices_per_pair=1, voice_tries=1)
    out = language_bench._matched_pairs(cands, [DemoVoice("espeak:en-us")], cfg, 2, 16_000, total=4)
    assert [sp.meta["k"] for sp in out] == ["a", "a", "b", "b"]


def test_asr_clips_come_in_the_training_share_of_each_engine():
    """Cycling the pool (flite voices listed first) read 38 of 40 ASR clips with flite voices while 15% of the
    training recordings are flite: the clips must follow the engines' training shares instead."""
    from sodakit.demo.voices import DemoVoice, engine_rota

    pool = [DemoVoice(f"flite:v{i}") for i in range(20)] + [DemoVoice(f"espeak:en-us+m{i}") for i in range(4)]
    for share in (0.0, 0.15, 0.5, 1.0):
        voices = engine_rota(pool, 40, share)
        flite = sum(v.engine == "flite" for v in voices)
        assert abs(flite - share * 40) <= 1, (share, flite)
    # every espeak-ng voice reads some clips; with no espeak-ng voice in the pool, flite reads them all
    assert {v.voice for v in engine_rota(pool, 40, 0.15) if v.engine == "espeak"} == {v.voice for v in pool[20:]}
    assert all(v.engine == "flite" for v in engine_rota(pool[:20], 10, 0.15))
