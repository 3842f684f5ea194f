"""Every task on tiny fixtures in each real layout, with known answers: a scorer that prefers the
positives gets 100%, a constant scorer gets the documented tie value; broken items are excluded and
counted; a model that does not cover the task's tokens is a clear error."""

import math

import numpy as np
import pytest

from sodakit.eval.config import EvalConfig
from sodakit.eval.layouts import SpokenPair, write_hf_pairs, write_salmon_folder, write_zr2021
from sodakit.eval.lm import VocabularyError
from sodakit.eval.readers.salmon import SALMON_PARTS
from sodakit.eval.tasks import EvalContext, TaskError, get_task

from .conftest import ConstantLM, LoudnessOracleLM, SequenceOracleLM, noise, tone

SR = 16_000


def _spoken(n):
    # Positives are loud tones, negatives quiet noise: the toy codec's codebook 0 tells them apart.
    return [SpokenPair(id=str(i), voice=v, pos_wav=tone(0.1 + 0.02 * i, 0.5), neg_wav=noise(0.1, 0.003, i),
                       pos_text=f"cat{i}", neg_text=f"dog{i}", meta={"type": "t" + str(i % 2), "subtype": "s"})
            for i in range(n) for v in ("Alex", "Bruce")]


def _ctx(lm, tok, codec=None, **kw):
    return EvalContext(lm=lm, tokenizer=tok, codec=codec, cfg=EvalConfig(batch_size=4, **kw))


@pytest.mark.parametrize("layout", ["zr2021", "hf"])
def test_swuggy_sblimp_known_answers(tmp_path, tiny_tokenizer, toy_codec, layout):
    v = tiny_tokenizer.vocab
    pairs = _spoken(3)
    if layout == "zr2021":
        write_zr2021(tmp_path, "lexical", pairs, SR)
        write_zr2021(tmp_path, "syntactic", pairs, SR)
        lex, syn = tmp_path, tmp_path
    else:
        lex, syn = write_hf_pairs(tmp_path / "w", pairs, SR), write_hf_pairs(tmp_path / "b", pairs, SR)
    oracle = _ctx(LoudnessOracleLM(v), tiny_tokenizer, toy_codec, log_items=True)
    res = get_task("swuggy").run(oracle, lex)
    assert res.metrics["accuracy"] == 1.0 and res.metrics["accuracy_all_pairs"] == 1.0
    assert res.counts["scored"] == 6 and res.counts["denominator"] == 6 and not res.excluded
    assert res.protocol["audio"]["scored_codebooks"] == [0, 1, 2, 3]
    assert len(res.items) == 6 and res.items[0]["pos"]["tokens"] == res.items[0]["pos"]["tokens"] // 4 * 4
    const = _ctx(ConstantLM(v.size), tiny_tokenizer, toy_codec)
    m = get_task("swuggy").run(const, lex).metrics
    # all ties: wrong under the SODA authors' rule (the default), 0.5 under sodakit's names/protocol
    assert m["accuracy"] == 0.0 and m["accuracy_strict"] == 0.0 and m["ties"] == 6
    assert m["accuracy_ties_half"] == 0.5 and m["accuracy_grouped_ties_half"] == 0.5
    const_sodakit = _ctx(ConstantLM(v.size), tiny_tokenizer, toy_codec, protocol="sodakit")
    assert get_task("swuggy").run(const_sodakit, lex).metrics["accuracy"] == 0.5
    res = get_task("sblimp").run(oracle, syn)
    assert res.metrics["accuracy"] == 1.0 and set(res.breakdown["type"]) == {"t0", "t1"}


def test_speech_scoring_of_selected_codebooks(tmp_path, tiny_tokenizer, toy_codec):
    write_zr2021(tmp_path, "lexical", _spoken(2), SR)
    v = tiny_tokenizer.vocab
    ctx = _ctx(LoudnessOracleLM(v), tiny_tokenizer, toy_codec, input_codebooks="all", score_codebooks="semantic",
               log_items=True)
    res = get_task("swuggy").run(ctx, tmp_path)
    assert res.protocol["audio"]["scored_codebooks"] == [0] and res.metrics["accuracy"] == 1.0
    # Only codebook-0 tokens scored: the mean is (code/16 - 1) averaged over frames, never -1 exactly.
    assert all(rec["pos"]["mean"] > -1 for rec in res.items)


def test_broken_items_are_excluded_and_counted(tmp_path, tiny_tokenizer, toy_codec):
    folder = write_zr2021(tmp_path, "lexical", _spoken(3), SR)
    wavs = sorted(folder.glob("*.wav"))
    wavs[0].unlink()  # a missing file (pair 0/Alex)
    wavs[-1].write_bytes(b"RIFF....not audio")  # an unreadable file (pair 2/Bruce)
    ctx = _ctx(LoudnessOracleLM(tiny_tokenizer.vocab), tiny_tokenizer, toy_codec)
    res = get_task("swuggy").run(ctx, tmp_path)
    assert res.counts["scored"] == 4 and res.counts["read_errors"] == 1 and res.counts["excluded_after_read"] == 1
    assert res.metrics["accuracy_all_pairs"] == 1.0
    files = " ".join(str(e.file) for e in res.excluded)
    assert wavs[0].name in files and wavs[-1].name in files


def test_salmon_all_parts_micro_macro(tmp_path, tiny_tokenizer, toy_codec):
    for j, part in enumerate(SALMON_PARTS):
        # Part j: j % 2 pairs are swapped, so parts score 1.0 or 0.5 and micro != macro with unequal sizes.
        pairs = [(tone(0.1, 0.5), noise(0.1, 0.003, k)) for k in range(2 + j % 3)]
        if j % 2:
            pairs[0] = pairs[0][::-1]
        write_salmon_folder(tmp_path, part, pairs, SR)
    ctx = _ctx(LoudnessOracleLM(tiny_tokenizer.vocab), tiny_tokenizer, toy_codec)
    res = get_task("salmon").run(ctx, tmp_path)
    acc = {p: 1.0 - (j % 2) / (2 + j % 3) for j, p in enumerate(SALMON_PARTS)}
    n = {p: 2 + j % 3 for j, p in enumerate(SALMON_PARTS)}
    assert res.metrics["parts_scored"] == 8
    for p in SALMON_PARTS:
        assert res.metrics[p] == pytest.approx(acc[p])
    assert res.metrics["macro_accuracy"] == pytest.approx(np.mean(list(acc.values())))
    assert res.metrics["micro_accuracy"] == pytest.approx(sum(acc[p] * n[p] for p in acc) / sum(n.values()))
    # A missing part is named, and the averages say how many parts they cover.
    import shutil

    shutil.rmtree(tmp_path / "rir_consistency")
    res = get_task("salmon").run(ctx, tmp_path)
    assert res.metrics["parts_scored"] == 7 and res.metrics["parts_missing"] == ["rir_consistency"]
    assert "rir_consistency" in res.notes[0]


def _text_oracle(tok, texts):
    v = tok.vocab
    seqs = [[v.bos_id, v.text_start_id, *tok.encode_texts([t])[0], v.text_end_id] for t in texts]
    return SequenceOracleLM(v.size, seqs, pad=0)


def test_tblimp_twuggy_known_answers(tmp_path, tiny_tokenizer):
    (tmp_path / "blimp").mkdir()
    (tmp_path / "blimp" / "agr.jsonl").write_text("".join(
        f'{{"sentence_good": "the cat sleeps {i}", "sentence_bad": "the cat sleep {i}", "UID": "agr", '
        f'"field": "morphology", "pairID": "{i}"}}\n' for i in range(5)))
    goods = [f"the cat sleeps {i}" for i in range(5)]
    ctx = _ctx(_text_oracle(tiny_tokenizer, goods), tiny_tokenizer)
    res = get_task("tblimp").run(ctx, tmp_path / "blimp")
    assert res.metrics["accuracy"] == 1.0 and res.breakdown["phenomenon"]["agr"]["n"] == 5
    const = get_task("tblimp").run(_ctx(ConstantLM(tiny_tokenizer.vocab.size), tiny_tokenizer), tmp_path / "blimp")
    assert const.metrics["accuracy"] == 0.0 and const.metrics["accuracy_ties_half"] == 0.5
    assert get_task("tblimp").run(_ctx(ConstantLM(tiny_tokenizer.vocab.size), tiny_tokenizer, protocol="sodakit"),
                                  tmp_path / "blimp").metrics["accuracy"] == 0.5
    write_zr2021(tmp_path / "zr", "lexical", _spoken(2), SR)
    res = get_task("twuggy").run(_ctx(_text_oracle(tiny_tokenizer, ["cat0", "cat1"]), tiny_tokenizer), tmp_path / "zr")
    assert res.metrics["accuracy"] == 1.0 and res.counts["scored"] == 4


def test_hellaswag_known_answers(tmp_path, tiny_tokenizer):
    items = [("Roof: a man is on a roof. he", 2, ["sits.", "jumps.", "is ripping tiles off.", "sleeps."]),
             ("Dogs: a dog", 0, ["barks.", "flies.", "reads.", "swims fast."])]
    path = tmp_path / "h.txt"
    path.write_text("".join(f"{c}\n{g}\n" + "".join(e + "\n" for e in ends) for c, g, ends in items))
    v = tiny_tokenizer.vocab
    gold_seqs = [[v.bos_id, *tiny_tokenizer.encode_texts([c])[0], *tiny_tokenizer.encode_texts([" " + ends[g]])[0]]
                 for c, g, ends in items]
    res = get_task("hellaswag").run(_ctx(SequenceOracleLM(v.size, gold_seqs), tiny_tokenizer), path)
    assert res.metrics == {"acc": 1.0, "acc_norm": 1.0, "acc_bytes": 1.0, "acc_ties_split": 1.0, "acc_norm_ties_split": 1.0}
    assert res.protocol["context_is_lm_eval_exact"] is False  # the text layout carries the dataset's ctx
    # A scorer giving every ending the same score (log p = 0 everywhere): the first ending is predicted
    # (as lm-evaluation-harness), right for the item whose gold is 0; the ties-split variants give 1/4.
    res = get_task("hellaswag").run(_ctx(ConstantLM(v.size, value=0.0), tiny_tokenizer), path)
    assert res.metrics == {"acc": 0.5, "acc_norm": 0.5, "acc_bytes": 0.5, "acc_ties_split": 0.25,
                           "acc_norm_ties_split": 0.25}


def test_val_nll_uniform_model_gives_log_vocab(tmp_path, tiny_tokenizer):
    from sodakit.data.segments import CodecInfo, Segment, SegmentManifest, write_segment_shard

    rng = np.random.default_rng(0)
    segs = [Segment(id=f"r{r}_{s}", recording_id=f"r{r}", start=float(s), end=s + 1.0, text=f"the cat {s}",
                    codes=rng.integers(0, 16, size=(4, 5)).astype(np.uint16)) for r in range(2) for s in range(2)]
    d = tmp_path / "dev"
    d.mkdir()
    info = write_segment_shard(d / "segments-00000.parquet", segs)
    SegmentManifest(codec=CodecInfo("toy", "toy-codec-1", 16000, 50.0, 4, 16), shards=[info]).save(d)
    (tmp_path / "text.txt").write_text("a dog barks at the moon\nwho did you see\n")
    v = tiny_tokenizer.vocab
    res = get_task("val_nll").run(_ctx(ConstantLM(v.size), tiny_tokenizer), f"{d},{tmp_path / 'text.txt'}")
    for k in ("all", "audio", "semantic", "audio_only", "text_interleaved", "text_only"):
        assert res.metrics[f"nll_{k}"] == pytest.approx(math.log(v.size)), k
    toks = res.counts["tokens"]
    assert toks["audio"] == 2 * 2 * 2 * 20 and toks["semantic"] == toks["audio"] // 4
    assert toks["audio_only"] == 2 * 2 * 20 and res.counts["recordings"] == 2 and res.counts["text_documents"] == 2
    # Without the text file the text-only NLL is absent and says so.
    res = get_task("val_nll").run(_ctx(ConstantLM(v.size), tiny_tokenizer), d)
    assert res.metrics["nll_text_only"] is None and any("text_only" in n for n in res.notes)


def test_model_not_covering_the_task_tokens(tmp_path, tiny_tokenizer, toy_codec):
    v = tiny_tokenizer.vocab
    small = ConstantLM(v.text_vocab_size)  # a text-only model: no markers, no audio ids
    write_zr2021(tmp_path, "lexical", _spoken(1), SR)
    with pytest.raises(VocabularyError, match="does not cover the task's tokens"):
        get_task("swuggy").run(_ctx(small, tiny_tokenizer, toy_codec), tmp_path)
    with pytest.raises(VocabularyError, match="text markers"):
        get_task("twuggy").run(_ctx(small, tiny_tokenizer), tmp_path)
    with pytest.raises(TaskError, match="needs a codec"):
        get_task("swuggy").run(_ctx(ConstantLM(v.size), tiny_tokenizer), tmp_path)
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")
