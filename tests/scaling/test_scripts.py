"""The laptop study scripts: LR probe plans and the corpus split's refusal of an old-builder corpus."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from sodakit.scaling.plan import MINI_RULES, plan_sweep, read_plan, write_plan

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lr_probe_plan_scales_only_the_lr(tmp_path):
    probe = _script("isoflop_lr_probe")
    write_plan(plan_sweep(MINI_RULES), tmp_path / "plan")
    data = probe.probe_plan(tmp_path / "plan", 3e12, [48, 144], [0.5, 2.0])
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "plan.json").write_text(json.dumps(data))
    back = read_plan(tmp_path / "probe")  # a valid plan for `isoflop run`
    base = {r.run_id: r for r in plan_sweep(MINI_RULES).runs}
    assert sorted(r.run_id for r in back.runs) == sorted(
        f"C3.0e12-d{d}-L{L}-B2-lrx{f}" for d, L in ((48, 1), (144, 2)) for f in ("0.5", "2"))
    for r in back.runs:
        src, _, factor = r.run_id.rpartition("-lrx")
        ref = base[src]
        assert r.lr == pytest.approx(ref.lr * float(factor))
        assert (r.width, r.batch, r.steps, r.params, r.tokens) == (ref.width, ref.batch, ref.steps, ref.params, ref.tokens)
    with pytest.raises(SystemExit, match="no run of width \\[96\\]"):
        probe.probe_plan(tmp_path / "plan", 3e12, [96], [2.0])


def test_split_refuses_corpus_whose_val_and_train_share_wav_files(tmp_path):
    study = _script("isoflop_mini_study")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text(json.dumps({"voices": ["a", "b"], "held_out_paragraphs": 1, "paragraphs": 1}))
    (corpus / "text.txt").write_text("hello\n")

    def row(rid: str, speaker: str) -> str:
        return json.dumps({"recording_id": rid, "audio": f"audio/{rid}.wav", "speaker": speaker, "start": 0.0,
                           "end": 1.0, "text": "hi"}) + "\n"

    (corpus / "manifest.jsonl").write_text(row("p001-a", "a") + row("p000-b", "b"))
    (corpus / "manifest_val.jsonl").write_text(row("p000-a", "a") + row("p000-b", "b"))
    with pytest.raises(SystemExit, match="share a WAV file"):
        study.split_corpus(corpus, tmp_path / "data", 1)
    (corpus / "manifest.jsonl").write_text(row("p001-a", "a") + row("p001-b", "b"))
    study.split_corpus(corpus, tmp_path / "data", 1)
    split = json.loads((tmp_path / "data" / "split.json").read_text())
    assert (split["train_segments"], split["val_segments"]) == (2, 2)


def test_best_lr_results_picks_the_lowest_loss_variant(tmp_path):
    probe = _script("isoflop_lr_probe")
    cols = ["run_id", "budget", "width", "batch", "lr", "loss", "loss_audio"]
    base = [["C1-d48", "1e12", "48", "2", "0.01", "3.9", "3.6"], ["C1-d80", "1e12", "80", "4", "0.008", "3.8", "3.5"]]
    (tmp_path / "results.csv").write_text("\n".join(",".join(r) for r in [cols, *base]) + "\n")
    probed = {
        "C1-d48-lrx0.5": dict(zip(cols, ["C1-d48-lrx0.5", "1e12", "48", "2", "0.005", "3.8", "3.7"])),
        "C1-d80-lrx0.5": dict(zip(cols, ["C1-d80-lrx0.5", "1e12", "80", "4", "0.004", "3.9", "3.4"])),
    }
    text, replaced = probe.best_lr_results(tmp_path / "results.csv", probed, "loss_audio")
    rows = [line.split(",") for line in text.strip().splitlines()[1:]]
    assert replaced == 1 and [r[0] for r in rows] == ["C1-d48", "C1-d80-lrx0.5"]
    _, replaced = probe.best_lr_results(tmp_path / "results.csv", probed, "loss")
    assert replaced == 1  # by all-token loss the d48 probe wins instead
    table = probe.probe_table({r[0]: dict(zip(cols, r)) for r in base}, probed)
    assert [(t["width"], t["factor"]) for t in table] == [(48, 0.5), (48, 1.0), (80, 0.5), (80, 1.0)]
