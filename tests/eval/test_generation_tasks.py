"""ASR / TTS tasks: known answers through stand-in generators (the metric plumbing), and one real run
of sodakit.generate on a tiny random model (the prompting plumbing)."""

import numpy as np
import pytest
import soundfile as sf

from sodakit.eval.config import EvalConfig
from sodakit.eval.layouts import write_librispeech, write_seedtts
from sodakit.eval.lm import as_scoring_lm
from sodakit.eval.tasks import EvalContext, TaskError, get_task
from sodakit.generate.tasks import TaskOutput as GenResult

from .conftest import ConstantLM, tone

SR = 16_000


class FakeGenerator:
    """ASR: answers from a table keyed by waveform length (or nothing); TTS: returns the prompt audio."""

    def __init__(self, table=None, tts_empty=()):
        self.table, self.tts_empty, self.calls, self.shot_texts, self.decoding = table or {}, set(tts_empty), [], [], []

    def asr(self, waves, sr, shots=(), max_new_tokens=448, **decoding):
        self.calls.append(len(shots))
        self.shot_texts.append([t for _, _, t in shots])
        self.decoding.append({"max_new_tokens": max_new_tokens, **decoding})
        return [GenResult(text=self.table.get(len(w), ""), stop_reason="stop_token") for w in waves]

    def voice(self, wav, sr, text):
        return (wav, text)

    def tts(self, texts, voice=None, max_new_tokens=1500, sampling=None):
        wav, text = voice
        audio = np.zeros(0, np.float32) if text in self.tts_empty else wav
        return [GenResult(audio=audio, stop_reason="stop_token")]


def _asr_sets(tmp_path):
    utts = [(f"10-20-{i:04d}", f"WORD NUMBER {i}", tone(0.2 + 0.01 * i, 0.3)) for i in range(4)]
    write_librispeech(tmp_path / "test", utts, SR)
    write_librispeech(tmp_path / "dev", [(f"30-40-{i:04d}", f"SHOT {i}", tone(0.3, 0.3)) for i in range(3)], SR)
    return {len(w): t.lower() + "!" for _, t, w in utts}


def _ctx(tok, codec, gen, **kw):
    return EvalContext(lm=ConstantLM(tok.vocab.size), tokenizer=tok, codec=codec, generator=gen,
                       cfg=EvalConfig(log_items=True, **kw))


def test_asr_known_answers_and_shots(tmp_path, tiny_tokenizer, toy_codec):
    table = _asr_sets(tmp_path)
    res = get_task("asr").run(_ctx(tiny_tokenizer, toy_codec, FakeGenerator(table)), tmp_path / "test")
    assert res.metrics["wer"] == 0.0 and res.counts["scored"] == 4  # case/punctuation normalised away
    assert res.items[0]["hyp_norm"] == res.items[0]["ref_norm"] == "word number 0"
    res = get_task("asr").run(_ctx(tiny_tokenizer, toy_codec, FakeGenerator()), tmp_path / "test")
    assert res.metrics["wer"] == 1.0 and res.metrics["deletions"] == 12
    gen = FakeGenerator(table)
    ctx = _ctx(tiny_tokenizer, toy_codec, gen, shots=2)
    res = get_task("asr_fewshot").run(ctx, f"{tmp_path / 'test'},{tmp_path / 'dev'}")
    assert res.metrics["wer"] == 0.0 and set(gen.calls) == {2} and len(res.protocol["shots"]) == 2
    with pytest.raises(TaskError, match="needs shots"):
        get_task("asr_fewshot").run(ctx, tmp_path / "test")


def test_tts_known_answers(tmp_path, tiny_tokenizer, toy_codec, shared_data):
    d = shared_data / "librispeech-mini"
    text = dict(line.split("\t") for line in (d / "trans.txt").read_text().splitlines())["1089-134686-0001"]
    wav, sr = sf.read(d / "1089-134686-0001.wav", dtype="float32")
    write_seedtts(tmp_path, [("a", text, wav, text), ("b", "silence please", wav[: sr // 2], "nothing here")], sr)
    ctx = _ctx(tiny_tokenizer, toy_codec, FakeGenerator(tts_empty={"silence please"}), save_audio=str(tmp_path / "out"))
    res = get_task("tts").run(ctx, tmp_path)
    assert res.metrics["sim"] == pytest.approx(1.0) and res.metrics["sim_items"] == 1 and res.metrics["sim_missing"] == 1
    # Item a: the judge transcribes real speech (PocketSphinx, WER well under 0.4); item b: empty -> 2 deletions.
    assert res.items[0]["wer"] < 0.4 and res.items[1]["asr"] == "" and res.items[1]["wer"] == 1.0
    assert res.comparable_to_paper is False and "not comparable" in res.notes[0]
    assert res.protocol["judges"]["asr"]["judge"] == "pocketsphinx-en-us"
    assert (tmp_path / "out" / "a.wav").is_file() and not (tmp_path / "out" / "b.wav").exists()


def test_tts_item_ids_cannot_write_outside_save_audio(tmp_path, tiny_tokenizer, toy_codec):
    """A Seed-TTS meta.lst id like ../../../PWNED names a file inside --save-audio, never a path."""
    data = tmp_path / "deep" / "er" / "data"
    write_seedtts(data, [("plain", "a tone", tone(0.3, 0.5), "a tone")], SR)
    meta = data / "meta.lst"
    meta.write_text(meta.read_text() + "../../../PWNED|a tone|prompt-wavs/plain.wav|a tone\n")
    out = tmp_path / "deep" / "er" / "out"
    ctx = _ctx(tiny_tokenizer, toy_codec, FakeGenerator(), save_audio=str(out))
    res = get_task("tts").run(ctx, data)
    assert res.counts["scored"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["%2E.%2F..%2F..%2FPWNED.wav", "plain.wav"]
    assert [p for p in tmp_path.rglob("*PWNED*") if p.parent != out] == []  # (today's code wrote tmp_path/PWNED.wav)
    assert [r["audio_file"] for r in res.items] == ["plain.wav", "%2E.%2F..%2F..%2FPWNED.wav"]


def test_real_generator_on_a_tiny_model(tmp_path, tiny_tokenizer, toy_codec):
    from sodakit.model.config import PRESETS
    from sodakit.model.qwen3 import build_model

    cfg = PRESETS["tiny"].replace(vocab_size=tiny_tokenizer.vocab.size, d_model=64, n_layers=2, n_heads=2,
                                  n_kv_heads=1, head_dim=32, d_ff=128)
    lm = as_scoring_lm(build_model(cfg, seed=0))
    _asr_sets(tmp_path)
    write_seedtts(tmp_path / "tts", [("a", "the cat", tone(0.3, 0.3), "a dog barks")], SR)
    ctx = EvalContext(lm=lm, tokenizer=tiny_tokenizer, codec=toy_codec,
                      cfg=EvalConfig(limit=2, tts_max_new_tokens=24, asr_max_new_tokens=12))
    res = get_task("asr").run(ctx, tmp_path / "test")
    assert res.counts["scored"] == 2 and 0.0 <= res.metrics["wer"] and sum(res.breakdown["stop_reason"].values()) == 2
    res = get_task("tts").run(ctx, tmp_path / "tts")
    assert res.counts["scored"] == 1 and res.metrics["wer"] >= 0.0
    # The transformers backend has no generator.
    hf_like = EvalContext(lm=ConstantLM(10), tokenizer=tiny_tokenizer, codec=toy_codec)
    with pytest.raises(TaskError, match="--backend sodakit"):
        get_task("asr").run(hf_like, tmp_path / "test")


def test_asr_batch_with_a_clip_too_long_for_the_model_scores_the_rest(tmp_path, tiny_tokenizer, toy_codec):
    """A 160-position model: a 1 s clip (200 audio tokens) cannot be prompted and is excluded with its
    reason; a 0.75 s clip fits but not with the whole budget, so its budget is clamped and it is scored;
    the short ones are scored in one batch."""
    from sodakit.model.config import PRESETS
    from sodakit.model.qwen3 import build_model

    cfg = PRESETS["tiny"].replace(vocab_size=tiny_tokenizer.vocab.size, d_model=64, n_layers=2, n_heads=2,
                                  n_kv_heads=1, head_dim=32, d_ff=128, max_seq_len=160)
    utts = [("10-20-0000", "A", tone(0.2, 0.3)), ("10-20-0001", "B", tone(1.0, 0.3)),
            ("10-20-0002", "C", tone(0.75, 0.3)), ("10-20-0003", "D", tone(0.25, 0.3))]
    write_librispeech(tmp_path / "test", utts, SR)
    ctx = EvalContext(lm=as_scoring_lm(build_model(cfg, seed=0)), tokenizer=tiny_tokenizer, codec=toy_codec,
                      cfg=EvalConfig(asr_max_new_tokens=12, log_items=True))
    res = get_task("asr").run(ctx, tmp_path / "test")
    assert res.counts["scored"] == 3 and res.counts["excluded_after_read"] == 1
    assert [r["id"] for r in res.items] == ["10-20-0000", "10-20-0002", "10-20-0003"]
    (excluded,) = res.excluded
    assert excluded.item == "10-20-0001" and excluded.stage == "generate"
    assert "does not fit the model's context (max_seq_len 160)" in excluded.reason


class EchoTranslator:
    """S2ST stand-in: 'translates' each clip into itself, saying the text `said` holds for its length."""

    sample_rate = SR

    def __init__(self, said):
        self.said, self.decoding = said, {}

    def s2st(self, waves, sr, **decoding):
        self.decoding = decoding
        return [GenResult(text=self.said[len(w)], audio=w, stop_reason="stop_token",
                          extra={"source_lang": "fr", "source_text": "bonjour"}) for w in waves]


def test_s2st_scores_a_manifest(tmp_path, tiny_tokenizer, toy_codec):
    from sodakit.data.s2st_manifest import ManifestError, S2STItem, write_manifest
    from sodakit.eval.metrics import corpus_bleu

    a, b = tone(0.3, 0.3), tone(0.5, 0.2, freq=330.0)
    for name, wav in (("a", a), ("b", b)):
        sf.write(tmp_path / f"{name}.wav", wav, SR)
    items = [S2STItem("../a", tmp_path / "a.wav", "fr", "bonjour", "hello there my good friend", tmp_path / "a.wav"),
             S2STItem("b", tmp_path / "b.wav", "fr", None, "good morning to all of you", None)]
    manifest = write_manifest(items, tmp_path / "test.tsv")
    gen = EchoTranslator({len(a): "hello there my good friend", len(b): "good morning to all of you"})
    out = tmp_path / "audio"
    ctx = _ctx(tiny_tokenizer, toy_codec, gen, save_audio=str(out), s2st_temperature=0.0, s2st_max_new_tokens=77,
               s2st_force_source_lang=True)
    res = get_task("s2st").run(ctx, manifest)
    m = res.metrics
    assert m["text_bleu"] == pytest.approx(100.0) and m["source_wer"] == 0.0 and m["num_items"] == 2
    assert m["sim"] == pytest.approx(1.0) and m["reference_sim"] == pytest.approx(1.0) and m["empty_outputs"] == 0
    assert m["mean_seconds"] == pytest.approx(0.4)
    refs = [it.target_text for it in items]
    assert m["asr_bleu"] == pytest.approx(corpus_bleu([r["asr_of_generated_speech"] for r in res.items], refs))
    assert gen.decoding["max_new_tokens"] == 77 and gen.decoding["sampling"].greedy
    assert gen.decoding["source_lang"] == ["fr", "fr"]
    assert res.comparable_to_paper is False and res.protocol["judges"]["speaker"]["judge"]
    assert res.data["layout"] == "s2st-manifest" and res.breakdown["stop_reason"] == {"stop_token": 2}
    # the speech is written inside save_audio whatever the manifest ids say
    assert sorted(p.name for p in out.iterdir()) == sorted(r["audio_file"] for r in res.items)
    assert all(p.parent == out for p in tmp_path.rglob("*.wav") if p.parent != tmp_path)
    limited = get_task("s2st").run(_ctx(tiny_tokenizer, toy_codec, gen, limit=1), manifest)
    assert limited.counts["items_read"] == 2 and limited.counts["scored"] == 1
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tsource_audio\tsource_lang\nx\ta.wav\tfr\n")
    with pytest.raises(ManifestError, match="missing field"):
        get_task("s2st").run(ctx, bad)
