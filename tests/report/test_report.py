from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from sodakit.report.builder import SODA_PUBLISHED, build_report

from .browser import load_media, needs_chromium


@pytest.fixture()
def summary_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, 21):
            f.write(json.dumps({"step": step, "loss": 5 / step ** 0.3, "loss_text": 6 / step ** 0.3,
                                "loss_audio": 4.5 / step ** 0.3, "lr": 1e-3}) + "\n")
        f.write(json.dumps({"step": 20, "val_loss": 4.0, "val_loss_audio": 3.9}) + "\n")
    t = np.arange(16000) / 16000
    sf.write(run / "prompt.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    sf.write(run / "out.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 16000)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    fig.savefig(run / "iso.png")
    plt.close(fig)
    summary = {
        "title": "test report",
        "data": {"speech": {"hours": 0.5, "documents": 120},
                 "benchmark sets": {"blimp": {"pairs": 8, "by_phenomenon": {"transitive": 3}}, "tts": {"voices": ["a", "b"]}}},
        "training": {"metrics": "metrics.jsonl", "info": {"model": "tiny", "steps": 20}},
        "evaluation": {"scale": "tiny", "scores": {"sWUGGY": 61.0, "ASR WER": 85.5, "tts_duration_s": 2.0,
                                                   "sWUGGY 95% interval": [51.0, 71.0], "sWUGGY pairs": 100,
                                                   "sWUGGY, control: codebooks permuted": 49.0, "sWUGGY goal": ">= 75"}},
        "samples": [{"task": "tts", "prompt_text": "hello <b>", "prompt_audio": "prompt.wav", "output_audio": "out.wav"},
                    {"task": "asr", "prompt_audio": "prompt.wav", "output_text": "a transcript",
                     "reference_text": "the transcript"}],
        "isoflop": {"plots": ["iso.png"], "summary": {"b_N": 0.4}},
        "settings": {"seed": 0},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_report_files_and_numbers(summary_dir):
    from sodakit.cli import main as cli_main

    assert cli_main(["report", str(summary_dir / "summary.json")]) == 0
    out = summary_dir / "report"
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 3 and page.count("<img") == 2
    assert "hello &lt;b&gt;" in page  # text is escaped
    for name in SODA_PUBLISHED:
        assert name in page
    record = json.loads((out / "report.json").read_text())
    assert record["evaluation"]["scores"]["sWUGGY"] == 61.0
    assert record["training"]["last_record"]["val_loss"] == 4.0
    md = (out / "report.md").read_text()
    assert "| this run | - | 61.0 |" in md and "![loss curves](assets/" in md
    # a score's interval, pairs, control and goal sit in its row; a score with nothing attached has its own
    assert "| metric | value | 95% interval | pairs | control: codebooks permuted | goal |" in md
    assert "| sWUGGY | 61.0 | [51.0, 71.0] | 100 | 49.0 | >= 75 |" in md and "| tts_duration_s | 2.0 | - | - | - | - |" in md
    assert "-> output  'a transcript', reference 'the transcript'" in md  # an ASR sample beside its reference
    # nested statistics read as dotted rows, a short list joined
    assert "| blimp.by_phenomenon.transitive | 3 |" in md and "| tts.voices | a, b |" in md
    for src in re.findall(r'src="([^"]+)"', page):
        assert (out / src).is_file()


@needs_chromium
def test_every_image_and_audio_loads_in_headless_chromium(summary_dir, tmp_path):
    out = summary_dir / "report"
    build_report(json.loads((summary_dir / "summary.json").read_text()), out, base_dir=summary_dir)
    result = load_media(out, tmp_path / "profile")
    assert len(result["images"]) == 2 and len(result["audio"]) == 3
    assert all(i["ok"] for i in result["images"]), result
    assert all(a["ok"] for a in result["audio"]), result


def _png(path):
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2], [2, 1])
    fig.savefig(path)
    plt.close(fig)


def _fit_json(loss_col: str, n: float, d: float) -> dict:
    """The parts of a `sodakit isoflop fit` fit.json that the report reads."""
    return {"format": "sodakit.isoflop.fit/1", "data": {"n_runs": 9, "columns": {"loss": loss_col}},
            "warnings": ["budget 1e12: exactly 3 runs"],
            "approach2": {"n_opt": {"exponent": n, "exponent_ci": [n - 0.1, n + 0.1]},
                          "d_opt": {"exponent": d, "exponent_ci": [d - 0.1, d + 0.1]}},
            "approach3": {"n_exponent": 0.2, "d_exponent": 0.8, "ci": {"n_exponent": [0.1, 0.3], "d_exponent": [0.7, 0.9]}}}


def test_isoflop_section_from_a_study_a_fit_and_the_docs_copy(tmp_path):
    from sodakit.report.isoflop import isoflop_section

    # study directory (scripts/isoflop_mini_study.py): fit_audio/ and fit/ plus summary.json
    study = tmp_path / "isoflop-mini"
    for sub in ("fit_audio", "fit"):
        for name in ("isoflop_profiles.png", "optimal_vs_compute.png"):
            _png(study / sub / name)
        (study / sub / "fit.json").write_text(json.dumps(_fit_json("loss_audio" if sub == "fit_audio" else "loss", 0.4, 0.6)))
    _png(study / "loss_vs_steps.png")
    pick = {"approach2": {"N_exponent": 0.41, "N_exponent_ci": [0.03, 0.56], "D_exponent": 0.53,
                          "D_exponent_ci": [0.37, 0.89]}, "warnings": ["w"]}
    (study / "summary.json").write_text(json.dumps({"primary": "fit_audio_tokens", "fit_audio_tokens": pick,
                                                    "fit_all_tokens": {}, "sweep": {"runs": 21, "flops": 1.3e14}}))
    sec = isoflop_section(study)
    assert sec["source"] == str(study.resolve())
    assert [str(p).removeprefix(str(study) + "/") for p in sec["plots"]] == [
        "fit_audio/isoflop_profiles.png", "fit_audio/optimal_vs_compute.png", "fit/isoflop_profiles.png",
        "fit/optimal_vs_compute.png", "loss_vs_steps.png"]
    assert sec["exponents"] == [{"fit": "audio tokens, Approach 2 (IsoFLOP minima)", "N_exponent": 0.41,
                                 "N_exponent_ci": [0.03, 0.56], "D_exponent": 0.53, "D_exponent_ci": [0.37, 0.89]}]
    assert sec["reference"]["N_exponent"] == 0.367 and sec["reference"]["D_exponent"] == 0.579
    assert sec["summary"]["sweep runs"] == 21 and sec["warnings"] == ["audio tokens: w"]

    # a fit directory (`sodakit isoflop fit RESULTS --out DIR`), named by the directory or its fit.json
    for where in (study / "fit_audio", study / "fit_audio" / "fit.json"):
        sec = isoflop_section(where)
        assert sec["source"] == str((study / "fit_audio").resolve()) and len(sec["plots"]) == 2
        assert [e["fit"] for e in sec["exponents"]] == ["audio tokens, Approach 2 (IsoFLOP minima)",
                                                        "audio tokens, Approach 3 (parametric law, implied)"]
        assert sec["exponents"][0]["N_exponent_ci"] == pytest.approx([0.3, 0.5])

    # a study without summary.json (fits only): both fit.json files, primary first
    (study / "summary.json").unlink()
    assert [e["fit"].split(",")[0] for e in isoflop_section(study)["exponents"]] == ["audio tokens"] * 2 + ["all tokens"] * 2

    # the docs copy (`--docs docs/isoflop`): prefixed plots, audio ones first, mini_study_summary.json
    docs = tmp_path / "docs"
    for name in ("all_tokens_isoflop_profiles.png", "audio_isoflop_profiles.png", "loss_vs_steps.png"):
        _png(docs / name)
    (docs / "mini_study_summary.json").write_text(json.dumps({"fit_audio_tokens": pick}))
    sec = isoflop_section(docs)
    assert [p.rsplit("/", 1)[1] for p in sec["plots"]] == ["audio_isoflop_profiles.png",
                                                           "all_tokens_isoflop_profiles.png", "loss_vs_steps.png"]
    assert len(sec["exponents"]) == 1

    # nothing there; a broken JSON is reported, not raised
    assert isoflop_section(tmp_path / "empty") is None
    (tmp_path / "empty").mkdir()
    assert isoflop_section(tmp_path / "empty") is None
    (docs / "mini_study_summary.json").write_text("{")
    sec = isoflop_section(docs)
    assert sec["exponents"] == [] and any("unreadable" in w for w in sec["warnings"])


def test_report_isoflop_section_and_partial_salmon(tmp_path):
    from sodakit.report.isoflop import isoflop_section, missing_section

    fit = tmp_path / "fit"
    _png(fit / "isoflop_profiles.png")
    (fit / "fit.json").write_text(json.dumps(_fit_json("loss", 0.35, 0.65)))
    summary = {"evaluation": {"scale": "tiny", "scores": {"SALMon": 50.0, "sWUGGY": 60.0},
                              "coverage": {"SALMon": {"scored": 4, "expected": 8, "missing": ["bg_alignment"]}}},
               "isoflop": isoflop_section(fit)}
    paths = build_report(summary, tmp_path / "report")
    page, md = paths["html"].read_text(), paths["markdown"].read_text()
    for text in (page, md):
        assert "SALMon (4/8 parts)" in text and "missing: bg_alignment" in text
        assert "0.367" in text and "0.579" in text and "0.350 [0.250, 0.450]" in text
        assert str(fit / "isoflop_profiles.png") in text  # each plot labelled with its source path
    assert page.count("<img") == 1
    # all parts scored: no label
    summary["evaluation"]["coverage"]["SALMon"]["scored"] = 8
    assert "parts)" not in build_report(summary, tmp_path / "report")["html"].read_text()
    # no sweep: the section says how to make one
    page = build_report({"isoflop": missing_section([tmp_path / "runs"])}, tmp_path / "report")["html"].read_text()
    assert "IsoFLOP study" in page and "scripts/isoflop_mini_study.py" in page and "<img" not in page


def test_html_is_escaped_and_markdown_is_written_as_is(tmp_path):
    """Every text of the summary reaches the page escaped (the templates autoescape), and the Markdown
    as written; the JSON record keeps the summary's values."""
    from html.parser import HTMLParser

    evil = "<script>alert('x')</script> & \"q\""
    summary = {"title": evil, "subtitle": evil, "data": {evil: {"k": evil}},
               "evaluation": {"scale": "tiny", "scores": {evil: 1.0}, "judges": evil},
               "samples": [{"task": evil, "output_text": evil, "reference_text": evil}],
               "isoflop": {"message": evil, "source": evil, "warnings": [evil]}, "settings": {"s": evil}}
    paths = build_report(summary, tmp_path / "r")
    page = paths["html"].read_text()
    assert "<script>" not in page and page.count("&lt;script&gt;alert(") == 14

    class Texts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.texts: list[str] = []

        def handle_data(self, data):
            self.texts.append(data)

    parser = Texts()
    parser.feed(page)
    assert parser.texts.count(evil) == 12  # as text nodes: all but the judges line and the JSON settings
    md = paths["markdown"].read_text()
    assert md.startswith(f"# {evil}\n\n{evil}\n") and f"### {evil}" in md and f"> {evil}" in md
    assert json.loads(paths["json"].read_text())["samples"][0]["task"] == evil
