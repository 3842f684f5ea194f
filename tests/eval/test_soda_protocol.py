"""protocol=soda pins the SODA authors' evaluation rules, each on hand-computed items; protocol=sodakit
keeps sodakit's own rules, and both readings are always reported under their own metric names."""

import json
import random
from dataclasses import replace

import numpy as np
import pytest

from sodakit.eval import judges
from sodakit.eval.config import EvalConfig
from sodakit.eval.layouts import (
    SpokenPair,
    write_librispeech,
    write_salmon_folder,
    write_seedtts,
    write_zr2021,
)
from sodakit.eval.metrics import (
    TIE_WRONG,
    normalize_seedtts,
    normalize_soda_asr,
    normalize_text,
    pair_accuracy,
    utterance_wers,
    wer_details,
)
from sodakit.eval.protocols import get_protocol
from sodakit.eval.tasks import EvalContext, get_task

from .conftest import ConstantLM, LoudnessOracleLM, SequenceOracleLM, noise, tone
from .test_generation_tasks import FakeGenerator

SR = 16_000


@pytest.mark.parametrize("raw, expected", [
    ("Well-known, DON'T stop!", "wellknown dont stop"),  # punctuation deleted, no space left behind
    ("Tom & Jerry", "tom & jerry"),  # "&" kept
    ("\u201cQuoted\u201d \u2018text\u2019 (aside) [x] {y}; a: b?", "quoted text aside x y a b"),
    ("  Many   spaces\there  ", "many spaces here"),
    ("50% off / 3 \u2014 ok", "50% off / 3 \u2014 ok"),  # other symbols and the em dash stay
])
def test_soda_asr_normalisation(raw, expected):
    assert normalize_soda_asr(raw) == expected


def test_seedtts_normalisation_keeps_the_apostrophe():
    assert normalize_seedtts("Don't stop, Mr. Smith!") == "don't stop mr smith"
    assert normalize_seedtts("Tom & Jerry: 50%").split() == ["tom", "jerry", "50"]  # all ASCII punctuation goes
    assert normalize_seedtts("It\u2019s \u201cfine\u201d\u3002") == "its fine"  # typographic and CJK marks go
    # sodakit's own rule turns punctuation into spaces and drops apostrophes
    assert normalize_text("Well-known, DON'T") == "well known dont"


def test_mean_of_utterance_wer_differs_from_corpus_wer():
    refs, hyps = ["a b c d", "e"], ["a b c d", "x"]
    per = utterance_wers(refs, hyps, normalize_seedtts)
    assert per == [0.0, 1.0] and np.mean(per) == 0.5
    assert wer_details(refs, hyps).wer == pytest.approx(1 / 5)


def test_a_tie_is_wrong_under_the_authors_rule():
    assert pair_accuracy([1.0, 0.0, 5.0], [0.0, 1.0, 5.0], tie=TIE_WRONG) == pytest.approx(1 / 3)
    assert pair_accuracy([1.0, 0.0, 5.0], [0.0, 1.0, 5.0]) == pytest.approx(0.5)


def _ctx(lm, tok, codec=None, **kw):
    return EvalContext(lm=lm, tokenizer=tok, codec=codec, cfg=EvalConfig(batch_size=4, **kw))


def test_pairs_win_tie_loss_over_all_pairs_vs_grouped(tmp_path, tiny_tokenizer, toy_codec):
    loud, quiet = tone(0.3, 0.5), noise(0.3, 0.003, 1)
    pairs = [SpokenPair("0", "Alex", loud, quiet, "w", "n"),  # win
             SpokenPair("0", "Bruce", loud, loud, "w", "n"),  # same audio: an exact tie
             SpokenPair("1", "Alex", quiet, loud, "w", "n")]  # loss
    write_zr2021(tmp_path, "lexical", pairs, SR)
    lm = LoudnessOracleLM(tiny_tokenizer.vocab)
    m = get_task("swuggy").run(_ctx(lm, tiny_tokenizer, toy_codec), tmp_path).metrics
    assert m["ties"] == 1
    assert m["accuracy"] == m["accuracy_strict"] == pytest.approx(1 / 3)  # outcomes 1, 0, 0 over 3 pairs
    assert m["accuracy_ties_half"] == pytest.approx(0.5)  # 1, 0.5, 0
    assert m["accuracy_grouped_ties_half"] == pytest.approx((0.75 + 0.0) / 2)  # id 0: (1 + 0.5) / 2; id 1: 0
    res = get_task("swuggy").run(_ctx(lm, tiny_tokenizer, toy_codec, protocol="sodakit"), tmp_path)
    assert res.metrics["accuracy"] == pytest.approx(0.375) and res.protocol["protocol"] == "sodakit"


def test_salmon_headline_is_the_micro_average(tmp_path, tiny_tokenizer, toy_codec):
    loud, quiet = tone(0.3, 0.5), noise(0.3, 0.003, 2)
    write_salmon_folder(tmp_path, "speaker_consistency", [(loud, quiet)] * 3, SR)  # 3 / 3
    write_salmon_folder(tmp_path, "gender_consistency", [(quiet, loud)], SR)  # 0 / 1
    lm = LoudnessOracleLM(tiny_tokenizer.vocab)
    m = get_task("salmon").run(_ctx(lm, tiny_tokenizer, toy_codec), tmp_path).metrics
    assert m["accuracy"] == m["micro_accuracy"] == pytest.approx(3 / 4)
    assert m["macro_accuracy"] == pytest.approx(0.5)
    m = get_task("salmon").run(_ctx(lm, tiny_tokenizer, toy_codec, protocol="sodakit"), tmp_path).metrics
    assert m["accuracy"] == pytest.approx(0.5)


def _text_oracle(tok, texts):
    v = tok.vocab
    return SequenceOracleLM(v.size, [[v.bos_id, v.text_start_id, *tok.encode_texts([t])[0], v.text_end_id]
                                     for t in texts], pad=0)


def test_text_pairs_are_scored_as_given(tmp_path, tiny_tokenizer):
    goods = [f" the cat sleeps {i} " for i in range(3)]  # surrounding spaces are part of the text
    (tmp_path / "agr.jsonl").write_text("".join(
        json.dumps({"sentence_good": g, "sentence_bad": f" the cat sleep {i} ", "UID": "agr", "pairID": i}) + "\n"
        for i, g in enumerate(goods)))
    lm = _text_oracle(tiny_tokenizer, goods)  # prefers exactly the unstripped positives
    res = get_task("tblimp").run(_ctx(lm, tiny_tokenizer), tmp_path)
    assert res.metrics["accuracy"] == 1.0 and "not stripped" in res.protocol["text"]
    res = get_task("tblimp").run(_ctx(lm, tiny_tokenizer, protocol="sodakit"), tmp_path)
    assert res.metrics["accuracy"] == 0.5 and res.metrics["ties"] == 3  # stripped text: the oracle sees neither


def test_tblimp_on_sblimp_transcriptions_lowercases_them(tmp_path, tiny_tokenizer):
    pairs = [SpokenPair(str(i), "Alex", tone(0.2, 0.1), tone(0.2, 0.1), f"The Cat Sleeps {i}", f"The Cat Sleep {i}",
                        meta={"type": "agr"}) for i in range(3)]
    write_zr2021(tmp_path, "syntactic", pairs, SR)
    lm = _text_oracle(tiny_tokenizer, [f"the cat sleeps {i}" for i in range(3)])
    res = get_task("tblimp").run(_ctx(lm, tiny_tokenizer), tmp_path)
    assert res.metrics["accuracy"] == 1.0 and res.counts["scored"] == 3 and "lowercased" in res.protocol["text"]
    assert res.data["layout"] == "zerospeech2021-syntactic"
    assert get_task("tblimp").run(_ctx(lm, tiny_tokenizer, protocol="sodakit"), tmp_path).metrics["accuracy"] == 0.5


def _asr_sets(tmp_path):
    utts = [(f"10-20-{i:04d}", f"A WELL-KNOWN FACT {i}", tone(0.2 + 0.01 * i, 0.3)) for i in range(3)]
    write_librispeech(tmp_path / "test", utts, SR)
    # The shot list as the authors store it: a data_json array, deliberately not in id order.
    shots = [(f"30-40-{i:04d}", f"SHOT NUMBER {i}, PLEASE.") for i in (5, 2, 7, 0, 3)]
    write_librispeech(tmp_path / "dev", [(u, t, tone(0.3, 0.3)) for u, t in shots], SR)
    rows = [{"file_path": f"dev/30/40/{u}.flac", "transcript": t} for u, t in shots]
    (tmp_path / "dev-clean.json").write_text(json.dumps(rows))
    return {len(w): f"a wellknown fact {i}" for i, (_, _, w) in enumerate(utts)}, [u for u, _ in shots]


def test_asr_follows_the_authors_decoding_normalisation_and_shots(tmp_path, tiny_tokenizer, toy_codec):
    table, shot_ids = _asr_sets(tmp_path)
    data = f"{tmp_path / 'test'},{tmp_path / 'dev-clean.json'}"
    gen = FakeGenerator(table)
    ctx = EvalContext(lm=ConstantLM(tiny_tokenizer.vocab.size), tokenizer=tiny_tokenizer, codec=toy_codec,
                      generator=gen, cfg=EvalConfig(shots=2, log_items=True))
    res = get_task("asr_fewshot").run(ctx, data)
    # "well-known" -> "wellknown" on both sides: no error under the authors' normaliser
    assert res.metrics["wer"] == res.metrics["wer_soda_norm"] == 0.0
    # sodakit's normaliser makes "well known" two words: 1 substitution + 1 deletion of 5 words per item
    assert res.metrics["wer_sodakit_norm"] == pytest.approx(2 / 5)
    pool = list(shot_ids)
    random.Random(42).shuffle(pool)  # the authors: shuffle the list as stored with seed 42, take the first N
    assert res.protocol["shots"] == pool[:2]
    assert gen.shot_texts[0] == [f"shot number {u[-1]} please" for u in pool[:2]]  # normalised shot text
    d = gen.decoding[0]
    assert d["max_new_tokens"] == 200 and d["constrain"] is False and d["stop_at_eos"] is False
    assert (d["sampling"].temperature, d["sampling"].top_p, d["sampling"].seed) == (0.5, 0.8, 42)
    assert res.protocol["protocol"] == "soda" and "no modality constraint" in res.protocol["decoding"]

    gen = FakeGenerator(table)
    ctx = EvalContext(lm=ConstantLM(tiny_tokenizer.vocab.size), tokenizer=tiny_tokenizer, codec=toy_codec,
                      generator=gen, cfg=EvalConfig(shots=2, protocol="sodakit"))
    res = get_task("asr_fewshot").run(ctx, data)
    assert res.metrics["wer"] == pytest.approx(2 / 5)
    pool = sorted(shot_ids)
    random.Random(0).shuffle(pool)
    assert res.protocol["shots"] == pool[:2] and gen.shot_texts[0][0].startswith("SHOT NUMBER")
    d = gen.decoding[0]
    assert d["max_new_tokens"] == 448 and d["constrain"] is True and d["sampling"].greedy


class TableJudge:
    """An ASR judge that answers from a table keyed by waveform length."""

    comparable_to_paper = True

    def __init__(self, table):
        self.table = table

    def describe(self):
        return {"judge": "table"}

    def transcribe(self, waves, sr):
        return [self.table[len(w)] for w in waves]


def test_tts_wer_is_the_mean_of_utterance_wer(tmp_path, tiny_tokenizer, toy_codec, monkeypatch):
    a, b = tone(0.5, 0.3), tone(0.7, 0.3)
    # Targets of 4 and 1 words; the judge gets item a right (apostrophe kept on both sides) and b wrong.
    write_seedtts(tmp_path, [("a", "p", a, "Don't go, Mr. Smith"), ("b", "p", b, "Hello.")], SR)
    table = {len(toy_codec_wave): t for toy_codec_wave, t in ((a, "don't go mr smith"), (b, "goodbye"))}
    monkeypatch.setitem(judges.registry.ASR_JUDGES, "table", lambda path, device: TableJudge(table))
    ctx = EvalContext(lm=ConstantLM(tiny_tokenizer.vocab.size), tokenizer=tiny_tokenizer, codec=toy_codec,
                      generator=FakeGenerator(), cfg=EvalConfig(asr_judge="table", log_items=True))
    res = get_task("tts").run(ctx, tmp_path)
    assert res.metrics["wer"] == res.metrics["wer_mean_utterance"] == pytest.approx(0.5)  # (0 + 1) / 2
    # sodakit's corpus WER: 1 error in 5 words ("dont" = "dont" once apostrophes are dropped)
    assert res.metrics["wer_corpus"] == pytest.approx(1 / 5)
    assert [r["wer_seedtts"] for r in res.items] == [0.0, 1.0]
    res = get_task("tts").run(replace(ctx, cfg=replace(ctx.cfg, protocol="sodakit"), generator=FakeGenerator()),
                              tmp_path)
    assert res.metrics["wer"] == pytest.approx(1 / 5)


def test_protocols_are_recorded_and_unknown_ones_refused(tiny_tokenizer):
    assert get_protocol("soda").describe()["asr"]["max_new_tokens"] == 200
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        EvalContext(lm=ConstantLM(10), tokenizer=tiny_tokenizer, cfg=EvalConfig(protocol="paper"))


def test_salmon_copy_with_only_the_all_config(tmp_path, tiny_tokenizer, toy_codec):
    from sodakit.eval.layouts import write_hf_pairs

    loud, quiet = tone(0.3, 0.5), noise(0.3, 0.003, 3)
    rows = [SpokenPair(str(i), "", loud, quiet, "", "", meta={"task": "speaker_consistency"}) for i in range(3)]
    rows += [SpokenPair(str(i + 3), "", quiet, loud, "", "", meta={"task": "bg_alignment"}) for i in range(2)]
    write_hf_pairs(tmp_path, rows, SR, config="all", pos_col="positive_audio", neg_col="negative_audio")
    res = get_task("salmon").run(_ctx(LoudnessOracleLM(tiny_tokenizer.vocab), tiny_tokenizer, toy_codec), tmp_path)
    m = res.metrics
    assert m["parts_scored"] == 2 and m["speaker_consistency"] == 1.0 and m["bg_alignment"] == 0.0
    assert m["accuracy"] == pytest.approx(3 / 5) and res.counts["scored"] == 5
    assert res.data["speaker_consistency"]["layout"] == "salmon-hf-all"
    assert "rir_consistency" in m["parts_missing"] and "no rows with task='rir_consistency'" in res.notes[0]


def test_data_json_reader_keeps_order_and_names_bad_rows(tmp_path):
    from sodakit.eval.readers.librispeech import read_librispeech
    from sodakit.eval.readers.zerospeech import LayoutError

    write_librispeech(tmp_path / "dev", [("3-4-0002", "B", tone(0.2, 0.3)), ("3-4-0001", "A", tone(0.2, 0.3))], SR)
    rows = [{"file_path": str(tmp_path / "dev/3/4/3-4-0002.flac"), "transcript": "B"},
            {"file_path": "dev/3/4/3-4-0001.flac", "transcript": "A"},
            {"file_path": "dev/3/4/missing.flac", "transcript": "C"},
            {"transcript": "no path"}]
    (tmp_path / "dev.json").write_text(json.dumps(rows))
    read = read_librispeech(tmp_path / "dev.json")
    assert [it.id for it in read.items] == ["3-4-0002", "3-4-0001"] and read.source.layout == "soda-data-json"
    assert [e.item for e in read.errors] == ["missing", f"{tmp_path / 'dev.json'}[3]"]
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(LayoutError, match="JSON array"):
        read_librispeech(tmp_path / "obj.json")
