"""`sodakit report PATH ...` on what sodakit wrote: a training run, an eval results JSON, two runs side by
side, a demo-style summary; the kind is recognised from the files; every image loads in Chromium."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from sodakit.cli import main as cli_main
from sodakit.report.sources import EVAL, ISOFLOP, SUMMARY, TRAINING, ReportInputError, detect, read_metrics

from .browser import load_media, needs_chromium

SMALL = "{d_model: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1, head_dim: 16, d_ff: 64}"


def _train(run_dir, packed, lr: float) -> None:
    assert cli_main(["train", f"run_dir={run_dir}", "steps=12", "global_batch=4", "micro_batch=4", "precision=fp32",
                     "device=cpu", f"data.sources=[{{path: {packed[0]}}}]", f"data.val_path={packed[1]}",
                     "data.seq_len=64", "data.val_batches=1", "model.preset=tiny", f"model.overrides={SMALL}",
                     "log.every=2", "log.val_every=6", "log.tensorboard=false", "checkpoint.every=6",
                     f"optim.lr={lr}", "--quiet"]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch

    from ..train.conftest import make_packed

    root = tmp_path_factory.mktemp("runs")
    packed = make_packed(root / "train", 60, seed=0), make_packed(root / "val", 12, seed=1)
    torch.set_num_threads(1)
    _train(root / "a", packed, 3e-3)
    _train(root / "b", packed, 1e-3)
    return root


@pytest.fixture(scope="module")
def results(tmp_path_factory, shared_data):
    """A real `sodakit eval` results JSON (tBLIMP, 6 pairs, with its per-item log; sWUGGY fails: no data)."""
    from sodakit.tokens.soda_tokenizer import SodaTokenizer
    from sodakit.tokens.text_tokenizer import train_bpe
    from sodakit.tokens.vocab import Vocab

    from ..eval.conftest import TOKENIZER_CORPUS, build_tiny_qwen3

    root = tmp_path_factory.mktemp("eval")
    text = train_bpe(TOKENIZER_CORPUS * 3, vocab_size=300, min_frequency=2)
    tok = SodaTokenizer(text, Vocab(text_vocab_size=text.vocab_size, bos_id=text.bos_id, eos_id=text.eos_id,
                                    num_codebooks=4, codebook_size=16))
    build_tiny_qwen3(tok.vocab.size, seed=2).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    out = root / "eval" / "results.json"
    argv = ["eval", f"model={root / 'model'}", "tasks=[tblimp,swuggy]", "limit=6", f"out={out}", "log_items=true",
            f"data.tblimp={shared_data / 'blimp' / 'blimp_data_jsonl.tar.xz'}", "--quiet"]
    assert cli_main(argv) == 2  # swuggy failed, tblimp scored
    return out


def _srcs(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_a_training_run_directory_renders_from_its_metrics_and_config(runs, capsys):
    run = runs / "a"
    assert cli_main(["report", str(run)]) == 0
    assert "report: wrote" in capsys.readouterr().out
    out = run / "report"
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert len(_srcs(page)) == 1 and all((out / s).is_file() for s in _srcs(page))
    for text in ("Training run a", "Loss per token type, learning rate and throughput", "tokens_per_s", "mfu",
                 "Validation loss per token type", "Starts and resumes", "12 of 12", "checkpoints"):
        assert text in page, text
    assert "&#34;lr&#34;: 0.003" in page  # the run's config, escaped
    assert "![loss curves](assets/" in md and "| 12 |" in md  # the last validation row
    record = json.loads((out / "report.json").read_text())
    assert record["training"]["info"]["steps"] == "12 of 12" and record["training"]["last_record"]["step"] == 12


def test_a_killed_run_with_a_torn_last_line_still_renders(runs, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(runs / "a", run, ignore=shutil.ignore_patterns("report", "checkpoints"))
    text = (run / "metrics.jsonl").read_text().splitlines()
    cut = len(text) // 2
    (run / "metrics.jsonl").write_text("\n".join(text[:cut]) + "\n" + text[cut][: len(text[cut]) // 2])
    records, notes = read_metrics(run / "metrics.jsonl")
    assert len(records) == cut and "incomplete" in notes[0]
    assert cli_main(["report", str(run), f"out={tmp_path / 'r'}"]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert "the last line is incomplete" in page and "<img" in page and "of 12" in page
    # a broken line that is not the last is an error naming the file and line
    (run / "metrics.jsonl").write_text(text[0] + "\n{oops\n" + text[1] + "\n")
    with pytest.raises(ReportInputError, match=r"metrics.jsonl:2: not a metrics record"):
        read_metrics(run / "metrics.jsonl")


def test_an_eval_results_json_renders_scores_breakdowns_and_items(results):
    assert cli_main(["report", str(results)]) == 0
    out = results.parent / "report"
    page = (out / "index.html").read_text()
    for text in ("SODA 1.7B", "tblimp", "by phenomenon", "per-item records", "protocol", "sodakit eval",
                 "<h3>swuggy</h3>", "needs data"):
        assert text in page, text
    link = re.search(r'<a href="(assets/items[^"]+)"', page).group(1)
    assert (out / link).read_text() == (results.parent / "results.items" / "tblimp.jsonl").read_text()
    record = json.loads((out / "report.json").read_text())
    accuracy = json.loads(results.read_text())["tasks"]["tblimp"]["metrics"]["accuracy"]
    assert record["evaluation"]["scores"]["tBLIMP"] == pytest.approx(100 * accuracy, abs=1e-3)
    assert "| this run | - | - | - |" in (out / "report.md").read_text()


def test_two_runs_side_by_side(runs, tmp_path):
    out = tmp_path / "cmp"
    assert cli_main(["report", str(runs / "a"), str(runs / "b"), f"--out={out}"]) == 0
    page = (out / "index.html").read_text()
    assert page.count("<img") == 1 and "Comparison: a, b" in page and "Runs overlaid: a, b" in page
    assert "config: optim.lr" in page and "0.003" in page and "0.001" in page  # what differs, in columns
    record = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in record["training"]["runs"]] == ["a", "b"]


@needs_chromium
def test_every_image_loads_for_a_run_an_eval_and_a_comparison(runs, results, tmp_path):
    reports = {"run": [str(runs / "a")], "eval": [str(results)], "compare": [str(runs / "a"), str(runs / "b")]}
    for name, paths in reports.items():
        out = tmp_path / name
        assert cli_main(["report", *paths, f"out={out}"]) == 0
        media = load_media(out, tmp_path / f"profile-{name}")
        assert len(media["images"]) == (out / "index.html").read_text().count("<img"), name
        assert all(i["ok"] for i in media["images"]), (name, media)
    assert len(load_media(tmp_path / "run", tmp_path / "p2")["images"]) == 1


def test_a_demo_style_summary_and_the_kinds_are_recognised(runs, results, tmp_path, capsys):
    demo = tmp_path / "demo"
    demo.mkdir()
    summary = {"title": "demo", "training": {"metrics": str(runs / "a" / "metrics.jsonl"), "info": {"steps": 12}},
               "evaluation": {"scale": "tiny", "scores": {"tBLIMP": 50.0}, "results": str(results)}}
    (demo / "summary.json").write_text(json.dumps(summary))
    assert [detect(p).kind for p in (runs / "a", runs / "a" / "metrics.jsonl", results, results.parent, demo,
                                     demo / "summary.json")] == [TRAINING, TRAINING, EVAL, EVAL, SUMMARY, SUMMARY]
    assert cli_main(["report", str(demo)]) == 0
    page = (demo / "report" / "index.html").read_text()
    assert "<h1>demo</h1>" in page and "by phenomenon" in page and page.count("<img") == 1
    # a demo output beside a plain run: the demo's training run and the plain one overlaid
    assert cli_main(["report", str(demo), str(runs / "b"), f"out={tmp_path / 'mix'}"]) == 0
    record = json.loads((tmp_path / "mix" / "report.json").read_text())
    assert [r["label"] for r in record["training"]["runs"]] == ["demo", "b"]
    assert record["evaluation"]["runs"][0]["scores"] == {"tBLIMP": 50.0}
    # IsoFLOP fit directory
    fit = tmp_path / "fit"
    fit.mkdir()
    (fit / "fit.json").write_text(json.dumps({"format": "sodakit.isoflop.fit/1", "approach2": {
        "n_opt": {"exponent": 0.4}, "d_opt": {"exponent": 0.6}}}))
    assert detect(fit).kind == ISOFLOP and detect(fit / "fit.json").kind == ISOFLOP
    # nothing sodakit wrote: one line listing what was expected
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert cli_main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds nothing sodakit report can read" in err
    assert "metrics.jsonl" in err and "sodakit.eval/1" in err and "fit.json" in err and "summary.json" in err
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
