from __future__ import annotations

from sodakit.eval.minimal_pairs import PHENOMENA, generate_pairs, write_blimp_jsonl
from sodakit.eval.readers.blimp import read_blimp


def test_pairs_differ_by_one_word_and_read_back_as_blimp(tmp_path):
    pairs = generate_pairs(5, seed=1)
    assert set(pairs) == set(PHENOMENA)
    for records in pairs.values():
        assert len(records) == 5 and len({r["sentence_good"] for r in records}) == 5
        for r in records:
            good, bad = r["sentence_good"].split(), r["sentence_bad"].split()
            assert len(good) == len(bad) and sum(a != b for a, b in zip(good, bad)) == 1
    directory = write_blimp_jsonl(tmp_path / "blimp", n_per_phenomenon=5, seed=1)
    result = read_blimp(directory)
    assert len(result.items) == 5 * len(PHENOMENA) and not result.errors
    assert generate_pairs(5, seed=1) == pairs  # deterministic


def test_bench_data_sblimp_falls_back_to_templates(tmp_path, monkeypatch):
    from sodakit.eval.bench_data import BenchDataConfig, build_bench_data
    from sodakit.eval.readers.zerospeech import read_zr2021

    monkeypatch.setenv("SODAKIT_DATA", str(tmp_path / "nothing-here"))
    cfg = BenchDataConfig(out=str(tmp_path / "bench"), sets=("sblimp",), blimp_pairs=6, voices=1, hf_layout=False)
    record = build_bench_data(cfg, log=lambda m: None)
    assert record["sets"]["sblimp"]["source"].endswith("blimp-templates")
    assert len(read_zr2021(tmp_path / "bench" / "zerospeech2021", "syntactic").items) == 6
    spoken_as_text = read_blimp(tmp_path / "bench" / "blimp")  # tBLIMP on exactly the spoken pairs
    assert len(spoken_as_text.items) == 6 and not spoken_as_text.errors
