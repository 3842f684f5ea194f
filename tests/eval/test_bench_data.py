"""Offline look-alike sets: pseudo-words that are legal non-words, and synthesised sets in the real
layouts that the real readers and tasks consume."""

import json

import pytest

from sodakit.eval.bench_data import BenchDataConfig, build_bench_data, main
from sodakit.eval.pseudowords import clusters, is_vowel, load_lexicon, to_espeak, word_pairs
from sodakit.eval.tasks import EvalContext, get_task

from .conftest import ConstantLM, LoudnessOracleLM


def test_pseudowords_are_legal_nonwords_with_the_same_structure():
    lex = load_lexicon()
    pairs = word_pairs(25, seed=3)
    assert [p.word for p in pairs] == [p.word for p in word_pairs(25, seed=3)]  # reproducible
    assert len({p.word for p in pairs}) == 25
    for p in pairs:
        assert p.pseudo_pron not in lex.all_prons and p.pseudo_pron != p.word_pron
        assert len(p.pseudo_pron) == len(p.word_pron)
        # Same syllable structure: vowels in the same places, with the same stress.
        assert [is_vowel(a) for a in p.word_pron] == [is_vowel(b) for b in p.pseudo_pron]
        assert [a[-1] for a in p.word_pron if is_vowel(a)] == [b[-1] for b in p.pseudo_pron if is_vowel(b)]
        assert all(c in lex.legal[pos] for pos, c in clusters(p.pseudo_pron))
        assert to_espeak(p.pseudo_pron).startswith("[[") and p.pseudo.isalpha()


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    blimp = out / "blimp"
    blimp.mkdir()
    (blimp / "agr.jsonl").write_text("".join(
        f'{{"sentence_good": "The cats sleep {w}.", "sentence_bad": "The cats sleeps {w}.", "UID": "agr", '
        f'"linguistics_term": "s-v agreement", "field": "morphology", "pairID": "{i}"}}\n'
        for i, w in enumerate(("today", "again", "outside"))))
    try:
        build_bench_data(BenchDataConfig(out=str(out / "sets"), words=3, blimp_pairs=3, salmon_pairs=2,
                                         asr_utterances=2, tts_items=2, blimp=str(blimp)), log=lambda m: None)
    except RuntimeError as e:
        pytest.skip(f"TTS voices unavailable: {e}")
    return out / "sets"


def test_bench_data_sets_go_through_the_real_tasks(bench_dir, tiny_tokenizer, toy_codec):
    rec = json.loads((bench_dir / "bench_data.json").read_text())
    assert set(rec["sets"]) == {"swuggy", "sblimp", "salmon", "asr", "tts"} and "NOT comparable" in rec["note"]
    const = EvalContext(lm=ConstantLM(tiny_tokenizer.vocab.size), tokenizer=tiny_tokenizer, codec=toy_codec)
    for task, path in (("swuggy", bench_dir / "zerospeech2021"), ("swuggy", bench_dir / "hf" / "sWUGGY"),
                       ("sblimp", bench_dir / "zerospeech2021"), ("sblimp", bench_dir / "hf" / "sBLIMP")):
        res = get_task(task).run(const, path)
        assert res.counts["scored"] == 6 and not res.excluded and res.metrics["accuracy_ties_half"] == 0.5
        assert res.metrics["accuracy"] == 0.0  # the SODA protocol counts the constant scorer's ties as wrong
    res = get_task("twuggy").run(const, bench_dir / "zerospeech2021")
    assert res.counts["scored"] == 6
    oracle = EvalContext(lm=LoudnessOracleLM(tiny_tokenizer.vocab), tokenizer=tiny_tokenizer, codec=toy_codec)
    res = get_task("salmon").run(oracle, bench_dir / "salmon")
    assert res.metrics["parts_scored"] == 4 and len(res.metrics["parts_missing"]) == 4
    assert res.counts["scored"] == 8
    from sodakit.eval.readers.librispeech import read_librispeech
    from sodakit.eval.readers.seedtts import read_seedtts

    ls = read_librispeech(bench_dir / "librispeech" / "test-clean")
    assert len(ls.items) == 2 and ls.items[0].text.isupper() and not ls.errors
    assert len(read_librispeech(bench_dir / "librispeech" / "dev-clean").items) == 2
    assert len(read_seedtts(bench_dir / "seedtts" / "en").items) == 2


def test_gender_switch_is_audible_to_the_speaker_judge(bench_dir):
    """In the gender-consistency negatives the second half is another voice: the classical speaker
    embedding of the two halves is less similar than in the positives."""
    from sodakit.eval.judges import make_speaker_judge
    from sodakit.eval.readers.salmon import read_salmon

    judge = make_speaker_judge("classical")
    meta = json.loads((bench_dir / "salmon" / "gender_consistency" / "metadata.json").read_text())
    for it, m in zip(read_salmon(bench_dir / "salmon", "gender_consistency").items, meta):
        assert m["voices"][0] != m["voices"][1]
        sims = []
        for ref in (it.pos, it.neg):
            w = ref.load(16_000)
            h = w.size // 2
            sims.append(judge.similarity([w[: int(h * 0.8)]], [w[int(h * 1.2) :]], 16_000)[0])
        assert sims[0] > sims[1]


def test_bench_data_cli_errors(tmp_path, capsys):
    from sodakit.cli import main as cli_main

    assert cli_main(["bench-data", str(tmp_path), "--sets", "swuggy,nope"]) == 2
    assert "unknown set(s) ['nope']" in capsys.readouterr().err
    assert main([str(tmp_path), "--words", "0"]) == 2
    assert cli_main(["bench-data", str(tmp_path), "--sets", "sblimp", "--blimp", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_cli_counts_the_sets_it_builds(tmp_path, capsys, monkeypatch):
    """`sodakit bench-data` shows its progress over the sets (a library caller gets none unless asked)."""
    monkeypatch.setenv("SODAKIT_PROGRESS_SECONDS", "1e-9")
    try:
        assert main([str(tmp_path / "a"), "--sets", "swuggy,asr", "--words", "2", "--asr-utterances", "1"]) == 0
    except RuntimeError as e:
        pytest.skip(f"TTS voices unavailable: {e}")
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("bench-data:") and "2/2" in line for line in err), err
    build_bench_data(BenchDataConfig(out=str(tmp_path / "b"), sets=("swuggy",), words=2), log=lambda m: None)
    assert not any(line.startswith("bench-data:") for line in capsys.readouterr().err.splitlines())
