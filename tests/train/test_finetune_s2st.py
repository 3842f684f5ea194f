"""The S2ST recipe end to end on a tiny synthetic parallel set: espeak-ng reads French/English sentence pairs
in one voice variant, a random-init Mimi encodes them, a tiny random model is fine-tuned with the shipped
CPU recipe, then `sodakit eval tasks=[s2st]` translates and scores (ASR-BLEU, SIM). The model only
has to run and produce the metrics, not be good."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sodakit.audio.registry import load_codec
from sodakit.data.s2st_manifest import ManifestError, S2STItem, read_manifest, write_manifest
from sodakit.data.sft import SFTDataset
from sodakit.eval.commands import main as eval_main
from sodakit.model.config import ModelConfig
from sodakit.model.load import write_model_dir
from sodakit.model.qwen3 import build_model
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe
from sodakit.train.finetune import main

REPO = Path(__file__).resolve().parents[2]
PAIRS = [
    ("bonjour", "hello"),
    ("merci beaucoup", "thank you very much"),
    ("le chat dort", "the cat sleeps"),
]

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def parallel_set(tmp_path_factory, small_mimi):
    from sodakit.audio.synth import synthesize

    root = tmp_path_factory.mktemp("s2st")
    items = []
    for i, (fr, en) in enumerate(PAIRS):
        # Same espeak variant in both languages: the target keeps the source "speaker".
        src, tgt = root / f"src{i}.wav", root / f"tgt{i}.wav"
        sf.write(src, synthesize(fr, "espeak:fr+m3", 16000, speed=1.5), 16000)
        sf.write(tgt, synthesize(en, "espeak:en+m3", 16000, speed=1.5), 16000)
        items.append(S2STItem(f"p{i}", src, "fr", fr, en, tgt))
    manifest = write_manifest(items, root / "train.tsv")
    codec = load_codec(small_mimi(root / "mimi"), device="cpu")
    words = [t for pair in PAIRS for t in pair] + ["<language>fr</language>", "<language>en</language>"]
    tok = SodaTokenizer(train_bpe(words * 6, vocab_size=300)).with_audio_layout(8, 2048)
    tok.save_pretrained(root / "tok")
    cfg = ModelConfig(vocab_size=tok.vocab.size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                      d_ff=128, max_seq_len=1024)
    write_model_dir(root / "base", build_model(cfg, seed=0).state_dict(), cfg, tok.vocab,
                    dataclasses.asdict(codec.info()), tokenizer=root / "tok" / "tokenizer.json")
    return {"root": root, "manifest": manifest, "base": root / "base", "tok": tok}


def test_manifest_round_trip_and_errors(parallel_set, tmp_path):
    items = read_manifest(parallel_set["manifest"])
    assert [it.id for it in items] == ["p0", "p1", "p2"] and items[1].target_text == "thank you very much"
    assert items[0].source_audio.is_file() and items[0].target_lang == "en"
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tsource_audio\tsource_lang\ttarget_text\nx\tmissing.wav\tfr\thello\n")
    with pytest.raises(ManifestError, match=r"bad.tsv:2: source_audio .*missing.wav does not exist"):
        read_manifest(bad)
    bad.write_text("id\tsource_audio\tsource_lang\nx\ta.wav\tfr\n")
    with pytest.raises(ManifestError, match=r"bad.tsv:2: missing field\(s\) \['target_text'\]"):
        read_manifest(bad, check_files=False)


def test_s2st_recipe_end_to_end(parallel_set, tmp_path):
    sft = tmp_path / "sft"
    assert main(["prepare-s2st", "--manifest", str(parallel_set["manifest"]), "--model", str(parallel_set["base"]),
                 "--out", str(sft)]) == 0
    ds = SFTDataset.load(sft)
    v = parallel_set["tok"].vocab
    assert len(ds) == 3 and ds.metadata["recipe"] == "s2st" and ds.metadata["codec"]["name"] == "mimi"
    for seq, start in zip(ds.sequences, ds.response_starts):
        # Prompt = BOS <|audio_start|> source audio <|audio_end|> <|text_start|>; the rest is the response.
        assert seq[1] == v.audio_start_id and seq[start - 2] == v.audio_end_id and seq[start - 1] == v.text_start_id
        assert v.is_audio(seq[2 : start - 2]).all() and (start - 4) % 8 == 0
        assert seq[-2] == v.audio_end_id and seq[-1] == v.eos_id
    run = tmp_path / "run"
    assert main(["run", str(REPO / "configs" / "finetune_s2st_cpu.yaml"), f"sft.path={sft}",
                 f"train.model.init_from={parallel_set['base']}", f"train.run_dir={run}", "sft.epochs=8",
                 "train.optim.lr=0.01", "train.data.seq_len=384"]) == 0
    summary = json.loads((run / "finetune_summary.json").read_text())
    assert summary["steps"] == 6  # ceil(8 epochs x 3 rows / batch 4)
    assert summary["loss_after"]["loss"] < summary["loss_before"]["loss"]

    out = tmp_path / "eval"
    assert eval_main([f"model={run}", "tasks=[s2st]", f"data.s2st={parallel_set['manifest']}", f"save_audio={out / 'wav'}",
                      f"out={out / 'results.json'}", "log_items=true", "s2st_temperature=0", "s2st_max_new_tokens=120",
                      "s2st_force_source_lang=true", "s2st_max_text_tokens=6"]) == 0
    task = json.loads((out / "results.json").read_text())["tasks"]["s2st"]
    metrics = task["metrics"]
    for key in ("asr_bleu", "text_bleu", "sim", "reference_sim"):
        assert np.isfinite(metrics[key]), key
    assert metrics["num_items"] == 3 and 0.0 <= metrics["asr_bleu"] <= 100.0
    # The span plan and the text-span cap carry even this barely trained model through to target speech.
    assert metrics["empty_outputs"] == 0 and metrics["mean_seconds"] > 0.3
    assert task["protocol"]["judges"]["asr"]["judge"] == "pocketsphinx-en-us" and task["comparable_to_paper"] is False
    # Source and reference target share a voice variant: the reference SIM is high.
    assert metrics["reference_sim"] > 0.5
    rows = [json.loads(line) for line in (out / "results.items" / "s2st.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"] and all(r["generated_source_lang"] == "fr" for r in rows)
    for r in rows:
        wav, sr = sf.read(out / "wav" / f"{r['id']}.wav")
        assert sr == 24000 and len(wav) % 1920 == 0


def test_prepare_reads_the_manifest_a_chunk_at_a_time(parallel_set, tmp_path, monkeypatch, capsys):
    """Chunks of pairs give the same sequences as one batch, and the command reports its progress."""
    from sodakit.train import finetune

    whole = SFTDataset.load(finetune.prepare_s2st(parallel_set["manifest"], tmp_path / "whole", model=str(parallel_set["base"])))
    monkeypatch.setattr(finetune, "PREPARE_CHUNK", 2)  # 3 pairs: a chunk of 2, then 1
    capsys.readouterr()
    chunked = SFTDataset.load(finetune.prepare_s2st(parallel_set["manifest"], tmp_path / "chunked",
                                                    model=str(parallel_set["base"])))
    assert "finetune prepare-s2st" in capsys.readouterr().err
    assert [list(s) for s in chunked.sequences] == [list(s) for s in whole.sequences]
    assert list(chunked.response_starts) == list(whole.response_starts)


def test_s2st_metrics_on_an_oracle(parallel_set, tmp_path):
    """A generator that 'translates' into the reference speech and text: text BLEU is 100, SIM equals the
    reference SIM, and ASR-BLEU is the judge's BLEU on the reference speech -- the metrics are wired right."""
    from sodakit.audio.io import load_audio
    from sodakit.eval.config import EvalConfig
    from sodakit.eval.judges import make_asr_judge
    from sodakit.eval.metrics import corpus_bleu
    from sodakit.eval.tasks import EvalContext, get_task
    from sodakit.generate.tasks import TaskOutput

    items = read_manifest(parallel_set["manifest"])

    class Oracle:
        sample_rate = 24000

        def s2st(self, waves, sr, **kw):
            assert len(waves) == len(items) and sr == 24000
            return [TaskOutput(text=it.target_text, audio=load_audio(it.target_audio, sr), stop_reason="stop_token",
                               extra={"source_lang": "fr", "source_text": it.source_text}) for it in items]

    ctx = EvalContext(lm=None, tokenizer=parallel_set["tok"], generator=Oracle(),
                      cfg=EvalConfig(log_items=True, save_audio=str(tmp_path / "oracle")))
    res = get_task("s2st").run(ctx, parallel_set["manifest"])
    m = res.metrics
    assert m["text_bleu"] == pytest.approx(100.0) and m["source_wer"] == 0.0 and m["empty_outputs"] == 0
    assert m["sim"] == pytest.approx(m["reference_sim"], abs=1e-6)
    refs = [load_audio(it.target_audio, 16000) for it in items]
    hyps = make_asr_judge("pocketsphinx").transcribe(refs, 16000)
    assert [r["asr_of_generated_speech"] for r in res.items] == hyps
    assert m["asr_bleu"] == pytest.approx(corpus_bleu(hyps, [it.target_text for it in items]))
