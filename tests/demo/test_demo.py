"""The embedded default end to end at toy scale: every stage runs for real, and a rerun skips them all."""

from __future__ import annotations

import json
import shutil

import pytest

from sodakit.cli import main as cli_main
from sodakit.config import ConfigError
from sodakit.demo import pipeline

from ..report.browser import load_media, needs_chromium

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="the demo corpus needs Debian's flite")

TOY = ["train_sentences=40", "text_sentences=200", "val_sentences=8", "test_sentences=40", "pairs_per_phenomenon=12",
       "espeak_voices=4", "codebook_size=64", "flops=1e10", "steps=6", "batch=4", "seq_len=128", "bench_words=4",
       "bench_blimp_pairs=8", "asr_utterances=2", "match_sentences=3", "tts_items=1", "workers=1", "gen_max_seconds=1",
       "asr_max_new_tokens=8"]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """One toy demo run shared by this module's tests. The working directory is an empty folder, so the
    default IsoFLOP lookup skips ./runs/isoflop-mini and takes the study shipped with sodakit."""
    if shutil.which("flite") is None:
        pytest.skip("the demo corpus needs Debian's flite")
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert cli_main(["demo", f"out={root / 'demo'}", *TOY]) == 0
        yield root / "demo"


@needs_flite
def test_demo_runs_end_to_end_and_resumes(demo_out, capsys):
    out = demo_out
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["evaluation"]["scores"]
    for column in ("sBLIMP", "sWUGGY", "tBLIMP", "tWUGGY", "ASR WER", "TTS WER", "TTS SIM"):
        assert isinstance(scores.get(column), float), (column, scores)
        lo, hi = scores[f"{column} 95% interval"] if column != "TTS SIM" else (0, 0)
        assert lo <= hi
    assert scores["TTS WER"] >= 0 and -1 <= scores["TTS SIM"] <= 1, scores
    assert scores["sWUGGY pairs"] == 4 and scores["sBLIMP pairs"] == 8 and scores["tBLIMP pairs"] == 8
    assert isinstance(scores["TTS WER, codec resynthesis of the targets"], float)
    # the ASR judge reads the demo's language with a bigram of its training text, for the model and the floor
    judge_lm = out / "bench" / "judge_lm.arpa"
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["tasks"]["tts"]["protocol"]["judges"]["asr"]["lm"] == str(judge_lm)
    assert json.loads((out / "eval" / "resynthesis.json").read_text())["judge"]["lm"] == str(judge_lm)
    # the negative control: the spoken pair tasks again, codebooks permuted, recorded as such
    control = json.loads((out / "eval" / "control.json").read_text())
    assert control["settings"]["control"] == "permute-codebooks"
    assert set(control["tasks"]) == {"swuggy", "sblimp", "speech_text_match", "text_speech_match"}
    assert "permuted" in control["codec"]["name"]
    for column, task in (("sWUGGY", "swuggy"), ("sBLIMP", "sblimp"), ("speech-text match, words", "speech_text_match"),
                         ("text-speech match, words", "text_speech_match")):
        assert scores[f"{column}, control: codebooks permuted"] == round(
            100 * control["tasks"][task]["metrics"]["accuracy"], 3)
    # matching in both orders on the held-out words (3 sentences' worth) and on the 2 ASR sentences
    sentences = json.loads((out / "eval" / "match_sentences.json").read_text())["tasks"]
    assert summary["data"]["benchmark sets"]["words"]["sentences"] == 3
    for task, name in (("speech_text_match", "speech-text match"), ("text_speech_match", "text-speech match")):
        assert scores[f"{name}, sentences pairs"] == sentences[task]["metrics"]["pairs"] == 2
        assert scores[f"{name}, words pairs"] >= 6 and 0 <= scores[f"{name}, words"] <= 100
    # the model's size and steps come from the shipped IsoFLOP fit for the budget
    sizing = summary["data"]["model size from the IsoFLOP fit"]
    assert sizing["compute budget C (FLOPs, SODA convention)"] == "1e+10" and "N* ~ C^0.454" in sizing["fitted laws"]
    assert summary["training"]["info"]["steps"] == 6
    assert {s["task"] for s in summary["samples"]} == {"asr", "tts", "continue"}
    page = (out / "report" / "index.html").read_text()
    assert "Loss per token type" in page and "<audio" in page
    assert "model size from the IsoFLOP fit" in page and "codebooks permuted" in page
    record = json.loads((out / "report" / "report.json").read_text())
    assert record["evaluation"]["scores"] == scores
    # IsoFLOP: the study shipped inside the package, with its exponents beside SODA's
    iso = summary["isoflop"]
    assert iso["source"] == str(pipeline.SHIPPED_ISOFLOP) and iso["plots"] and iso["exponents"]
    assert page.count("<img") == 1 + len(iso["plots"]) and "0.367" in page and str(iso["source"]) in page
    capsys.readouterr()
    # A rerun with the same settings skips every stage; changing the training settings redoes training on.
    assert cli_main(["demo", f"out={out}", *TOY]) == 0
    log = capsys.readouterr().err
    assert log.count("done already") == 9, log
    assert cli_main(["demo", f"out={out}", *[a for a in TOY if not a.startswith("steps=")], "steps=4"]) == 0
    log = capsys.readouterr().err
    assert log.count("done already") == 5 and "[demo] train:" in log
    assert json.loads((out / "summary.json").read_text())["training"]["info"]["steps"] == 4


@needs_flite
@needs_chromium
def test_demo_report_loads_every_image_and_audio_in_headless_chromium(demo_out, tmp_path):
    report = demo_out / "report"
    page = (report / "index.html").read_text()
    result = load_media(report, tmp_path / "profile")
    assert len(result["images"]) == page.count("<img") >= 2  # loss curves + IsoFLOP plots
    assert len(result["audio"]) == page.count("<audio") >= 5
    assert all(i["ok"] for i in result["images"]), result
    assert all(a["ok"] for a in result["audio"]), result


@needs_flite
def test_sodakit_report_of_a_demo_output(demo_out, tmp_path):
    """`sodakit report DEMO_OUT` renders the demo's summary, with each eval task's details from its results."""
    out = tmp_path / "again"
    assert cli_main(["report", str(demo_out), f"out={out}"]) == 0
    page, own = (out / "index.html").read_text(), (demo_out / "report" / "index.html").read_text()
    assert page.count("<img") == own.count("<img") and page.count("<audio") == own.count("<audio")
    assert "Loss per token type" in page and "Validation loss per token type" in page
    for task in ("swuggy", "tblimp", "asr", "tts"):
        assert f"<h3>{task}</h3>" in page, task
    assert "per-item records" in page


# A smaller setting than `make demo` that still learns (about 3 minutes on 2 cores): 1,500 training
# sentences, most espeak-ng recordings read word by word (words are what the matching check reads), 400
# steps of the IsoFLOP-sized model, 100 sWUGGY/tWUGGY pairs, ~230 held-out word clips.
LEARN = ["train_sentences=1500", "text_sentences=5000", "val_sentences=40", "test_sentences=60",
         "pairs_per_phenomenon=20", "espeak_voices=4", "flite_share=0", "word_share=0.8", "phrase_share=0.1",
         "codebook_size=64", "flops=2.5e13", "steps=400", "batch=16", "seq_len=512", "bench_words=100",
         "bench_blimp_pairs=16", "asr_utterances=4", "tts_items=2", "gen_max_seconds=2", "asr_max_new_tokens=16"]


@needs_flite
@pytest.mark.slow
def test_the_demo_model_learns_and_the_controls_fall_to_chance(tmp_path, monkeypatch):
    """Three pipeline bugs fail this test. Audio scrambled against the model's conventions (codebooks in the
    wrong slots or order, frames cut or shifted) leaves sWUGGY at chance; the codebook-permutation control
    shows what chance looks like on the same pairs. Text shifted against its audio leaves sWUGGY and tWUGGY
    learned (measured: 81 and 93) but drops speech-text matching on held-out words to chance (67.1 -> 45.7);
    speech packed without its text-first documents drops text-speech matching below chance (-> 42.3;
    docs/demo.md)."""
    monkeypatch.chdir(tmp_path)
    assert cli_main(["demo", f"out={tmp_path / 'demo'}", *LEARN]) == 0
    scores = json.loads((tmp_path / "demo" / "summary.json").read_text())["evaluation"]["scores"]
    assert scores["sWUGGY pairs"] == 100 and scores["tWUGGY pairs"] == 100
    # held-out words vs pseudo-words: clearly above chance, spoken and written
    assert scores["sWUGGY 95% interval"][0] > 50, scores
    assert scores["tWUGGY 95% interval"][0] > 50, scores
    # the same spoken pairs with the codebooks permuted: chance-ish, and well below the real reading
    control = scores["sWUGGY, control: codebooks permuted"]
    assert 35 <= control <= 65 and scores["sWUGGY"] >= control + 10, scores
    # each held-out word's transcript is more likely after its own audio than after another word's
    # (measured 67.1 [61.1, 73.1]; text shifted against its audio: 45.7 [39.7, 52.1]); with the codebooks
    # permuted that falls to chance (46.6)
    words, words_control = scores["speech-text match, words"], scores["speech-text match, words, control: codebooks permuted"]
    assert scores["speech-text match, words pairs"] >= 200, scores
    assert scores["speech-text match, words 95% interval"][0] > 52, scores
    assert 35 <= words_control <= 65 and words >= words_control + 10, scores
    # and each held-out word's audio more likely after its own transcript than after another word's
    # (measured 65.4 [59.4, 71.4], control 48.3; speech packed without text-first documents: 42.3. The shift
    # above keeps this order: each audio still follows its own transcript in the audio-first documents)
    tts_order, tts_control = scores["text-speech match, words"], scores["text-speech match, words, control: codebooks permuted"]
    assert scores["text-speech match, words 95% interval"][0] > 50, scores
    assert 35 <= tts_control <= 65 and tts_order >= tts_control + 10, scores
    # the report says how much the model reads audio for its text and text for its audio
    for key in ("held-out text NLL gain from hearing its audio first (nats/token)",
                "held-out audio NLL gain from reading its text first (nats/token)"):
        assert -1.0 < scores[key] < 5.0, scores


def test_isoflop_lookup_order_and_missing_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "shipped"
    monkeypatch.setattr(pipeline, "SHIPPED_ISOFLOP", docs)
    logs: list[str] = []
    # nothing anywhere: the report says how to produce a sweep
    sec = pipeline._isoflop(pipeline.DemoConfig(), logs.append)
    assert "python scripts/isoflop_mini_study.py" in sec["message"] and str(docs) in sec["message"]
    # the shipped copy, then ./runs/isoflop-mini ahead of it
    docs.mkdir()
    (docs / "loss_vs_steps.png").write_bytes(b"png")
    assert pipeline._isoflop(pipeline.DemoConfig(), logs.append)["source"] == str(docs)
    study = tmp_path / "runs" / "isoflop-mini" / "fit_audio"
    study.mkdir(parents=True)
    (study / "isoflop_profiles.png").write_bytes(b"png")
    assert pipeline._isoflop(pipeline.DemoConfig(), logs.append)["source"] == str(study.parent)
    # an explicit fit directory wins; one without plots or a fit says so
    assert pipeline._isoflop(pipeline.DemoConfig(isoflop=str(study)), logs.append)["source"] == str(study)
    (tmp_path / "empty").mkdir()
    assert "message" in pipeline._isoflop(pipeline.DemoConfig(isoflop="empty"), logs.append)
    with pytest.raises(ConfigError, match="does not exist"):
        pipeline.run_demo(pipeline.DemoConfig(out=str(tmp_path / "o"), isoflop="nope"))


@needs_flite
def test_corpus_recording_ids_are_unique_across_parts():
    from sodakit.demo.corpus import plan_recordings, shipped_paragraphs

    pars = shipped_paragraphs()
    assert len(pars) == 50 and all(len(p) >= 3 for p in pars)
    voices = ["flite:slt", "flite:rms"]
    val = plan_recordings(pars[:3], voices, 2, first_index=0)
    train = plan_recordings(pars[3:], voices, 2, first_index=3)
    ids = [r.recording_id for r in val + train]
    assert len(ids) == len(set(ids)) == 100


def test_the_longer_setting_loads_by_name():
    from sodakit.config import load_config

    cfg = load_config(pipeline.DemoConfig, "demo_long", ["seed=3"])
    assert (cfg.train_sentences, cfg.flops, cfg.out, cfg.seed) == (12000, 2e14, "demo_long_out", 3)
    # every other field is the default's
    default = pipeline.DemoConfig()
    assert {k: v for k, v in vars(cfg).items() if k not in ("train_sentences", "flops", "out", "seed")} == \
        {k: v for k, v in vars(default).items() if k not in ("train_sentences", "flops", "out", "seed")}

