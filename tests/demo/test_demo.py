"""The embedded default end to end at toy scale: every stage runs for real, and a rerun skips them all."""

from __future__ import annotations

import json
import shutil

import pytest

from sodakit.cli import main as cli_main

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="the demo corpus needs Debian's flite")

TOY = ["max_paragraphs=6", "holdout_paragraphs=2", "voices_per_paragraph=1", "voices=[flite:slt,flite:rms]",
       "codebook_size=64", "steps=6", "batch=4", "seq_len=128", "bench_words=2", "bench_blimp_pairs=2",
       "bench_salmon_pairs=1", "asr_utterances=1", "tts_items=1", "workers=1", "text_vocab_size=300",
       "gen_max_seconds=1", "asr_max_new_tokens=8"]


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli_main(["demo", f"out={out}", *TOY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["evaluation"]["scores"]
    for column in ("sBLIMP", "sWUGGY", "SALMon", "tBLIMP", "tWUGGY", "ASR WER"):
        assert isinstance(scores.get(column), float), (column, scores)
    assert summary["training"]["info"]["steps"] == 6
    assert {s["task"] for s in summary["samples"]} == {"asr", "tts", "continue"}
    page = (out / "report" / "index.html").read_text()
    assert "Loss per token type" in page and "<audio" in page
    record = json.loads((out / "report" / "report.json").read_text())
    assert record["evaluation"]["scores"] == scores
    capsys.readouterr()
    # A rerun with the same settings skips every stage; changing the training settings redoes training on.
    assert cli_main(["demo", f"out={out}", *TOY]) == 0
    log = capsys.readouterr().err
    assert log.count("done already") == 9, log
    assert cli_main(["demo", f"out={out}", *[a for a in TOY if not a.startswith("steps=")], "steps=4"]) == 0
    log = capsys.readouterr().err
    assert log.count("done already") == 5 and "[demo] train:" in log
    assert json.loads((out / "summary.json").read_text())["training"]["info"]["steps"] == 4


def test_corpus_recording_ids_are_unique_across_parts():
    from sodakit.demo.corpus import plan_recordings, shipped_paragraphs

    pars = shipped_paragraphs()
    assert len(pars) == 50 and all(len(p) >= 3 for p in pars)
    voices = ["flite:slt", "flite:rms"]
    val = plan_recordings(pars[:3], voices, 2, first_index=0)
    train = plan_recordings(pars[3:], voices, 2, first_index=3)
    ids = [r.recording_id for r in val + train]
    assert len(ids) == len(set(ids)) == 100
