"""The whole pipeline where users keep things: data, packed tokens, the run directory, eval data, results
and the report on S3 (a real S3 server on localhost, tests/conftest.py), and the dataset, the codec, the
tokenizer and an exported model behind hub ids (a Hugging Face cache laid out by tests/hub_cache.py,
offline). tokenize -> pack -> train (sharded checkpoints saved and uploaded asynchronously; killed, resumed
on "another machine") -> eval -> report."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from sodakit import storage
from sodakit.audio.tokenize import TokenizeConfig, tokenize
from sodakit.cli import main as cli_main
from sodakit.data.pack import PackConfig, pack
from sodakit.model.commands import export_hf
from sodakit.model.load import CheckpointError
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe
from sodakit.train.config import TrainConfig
from sodakit.train.trainer import train

from .hub_cache import REVISION, make_hub_repo
from .train.test_resume_distributed import curve

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat sat on a warm mat while two dogs ran past the old red barn".split()
SMALL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16, "d_ff": 128}


def wav_bytes(seconds: float, seed: int) -> bytes:
    buf = io.BytesIO()
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))
    sf.write(buf, x.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def speech_snapshot(root: Path) -> Path:
    """A hub dataset snapshot: data/{train,validation}-00000-of-00001.parquet, audio bytes embedded."""
    (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("validation", 3)):
        texts = [" ".join(rng.choice(WORDS, 5)) for _ in range(n)]
        audio = [{"bytes": wav_bytes(1.0 + 0.5 * (i % 3), i), "path": f"{i}.wav"} for i in range(n)]
        pq.write_table(pa.table({"audio": audio, "text": texts, "speaker_id": [f"s{i % 2}" for i in range(n)]}),
                       root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def remote_curve(url: str) -> dict[int, tuple[float, float]]:
    records = [json.loads(line) for line in storage.read_text(f"{url}/metrics.jsonl").splitlines()]
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in records if "loss" in r}


@pytest.mark.slow
def test_pipeline_on_s3_and_the_hub(tmp_path, s3_bucket, hub_cache, sodakit_cache, small_mimi, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    bucket = s3_bucket
    # --- the hub: a speech dataset, a codec and a tokenizer, all by id
    make_hub_repo(hub_cache, "org/speech", speech_snapshot(tmp_path / "speech"), repo_type="dataset")
    make_hub_repo(hub_cache, "kyutai/mimi", small_mimi(tmp_path / "mimi"))
    tok = SodaTokenizer(train_bpe([" ".join(WORDS)] * 30, vocab_size=300)).with_audio_layout(8, 2048)
    tok.save_pretrained(tmp_path / "tok")
    make_hub_repo(hub_cache, "org/tok", tmp_path / "tok")

    # --- tokenize straight from the hub dataset into the bucket; the held-out split on its own
    for split, out in (("train", f"{bucket}/tok/train"), ("validation", f"{bucket}/tok/dev")):
        summary = tokenize(TokenizeConfig(input="org/speech", split=split, output=out, codec="kyutai/mimi",
                                          device="cpu", shard_size=4), log=lambda m: None)
        assert summary["finished"] and summary["errors"] == 0
    manifest = json.loads(storage.read_text(f"{bucket}/tok/train/manifest.json"))
    assert manifest["codec"]["source"] == f"kyutai/mimi@{REVISION}"  # portable: the hub id and its commit
    assert manifest["extra"]["segments"] == 12 and len(manifest["shards"]) == 3

    # --- pack into the bucket with the hub tokenizer
    meta = pack(PackConfig(inputs=[f"{bucket}/tok/train"], output=f"{bucket}/packed/speech", tokenizer="org/tok"),
                progress=False)
    pack(PackConfig(inputs=[f"{bucket}/tok/dev"], output=f"{bucket}/packed/dev", tokenizer="org/tok"), progress=False)
    assert meta["tokenizer"]["resolved"] == f"org/tok@{REVISION}" and meta["num_documents"] == 24

    # --- train with the run directory in the bucket: SIGKILL, then resume on a machine with an empty cache
    run = f"{bucket}/runs/tiny"
    cfg = {"run_dir": run, "steps": 16, "global_batch": 4, "micro_batch": 4, "precision": "fp32",
           "data": {"sources": [{"path": f"{bucket}/packed/speech"}], "seq_len": 64,
                    "val_path": f"{bucket}/packed/dev", "val_batches": 1},
           "model": {"preset": "tiny", "overrides": SMALL}, "optim": {"lr": 3e-3},
           "log": {"every": 1, "val_every": 8, "progress": False, "tensorboard": False},
           "checkpoint": {"every": 4, "keep_last": 2, "async_save": True}}  # uploads in the background
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump({**cfg, "run_dir": str(tmp_path / "ref")}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def sodakit(*args: str, cache: str, **kw):
        return subprocess.Popen([sys.executable, "-m", "sodakit", *args], cwd=tmp_path, text=True,
                                env={**env, "SODAKIT_CACHE": str(tmp_path / cache)}, **kw)

    ref = sodakit("train", "ref.yaml", cache="cache-ref", stderr=subprocess.PIPE)
    killed = sodakit("train", "run.yaml", cache="cache-a", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and killed.poll() is None:
        local = next((tmp_path / "cache-a" / "runs").glob("*/metrics.jsonl"), None)
        if local is not None and any(s >= 9 for s in curve(local.parent, partial_ok=True)):
            break
        time.sleep(0.01)
    assert killed.poll() is None, "finished before the kill: " + killed.stderr.read()[-2000:]
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-2000:]
    resumed = sodakit("train", "run.yaml", "--resume", "auto", cache="cache-b", stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"from {run}" in err and "downloading step_0000000" in err
    assert remote_curve(run) == curve(tmp_path / "ref")  # the same losses and gradient norms as without the kill
    steps = {storage.basename(storage.parent(p)) for p in storage.list_files(f"{run}/checkpoints")
             if p.endswith("/COMPLETE")}
    assert steps == {"step_00000012", "step_00000016"}
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        train(_train_cfg(cfg))  # a fresh run into a URL that holds checkpoints

    # --- evaluate the run in the bucket on data in the bucket, from another directory, with no --codec:
    # the codec recorded with the model (kyutai/mimi@<commit>) opens from the hub cache
    blimp = "".join(json.dumps({"sentence_good": f"the cat sat {w}", "sentence_bad": f"cat the sat {w}", "UID": "order",
                                "pairID": str(i)}) + "\n" for i, w in enumerate(WORDS[:6]))
    storage.write_text(f"{bucket}/bench/blimp/order.jsonl", blimp)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli_main(["eval", f"model={run}", "tasks=[val_nll,tblimp]", f"data.val_nll={bucket}/tok/dev",
                     f"data.tblimp={bucket}/bench/blimp", f"out={bucket}/results/eval.json", "device=cpu"]) == 0
    results = json.loads(storage.read_text(f"{bucket}/results/eval.json"))
    assert results["tasks"]["tblimp"]["counts"]["scored"] == 6 and results["model"]["source"] == run
    assert results["tasks"]["val_nll"]["metrics"]["nll_all"] > 0
    sf.write(elsewhere / "q.wav", 0.1 * np.random.default_rng(5).standard_normal(16000).astype(np.float32), 16000)
    assert cli_main(["generate", "asr", "--model", run, "q.wav", "--max-new-tokens", "4", "--device", "cpu"]) == 0

    # --- the same model exported and published under a hub id
    exported = export_hf(storage.local_copy(run), tmp_path / "export")
    make_hub_repo(hub_cache, "org/tiny-soda", exported)
    assert cli_main(["eval", "model=org/tiny-soda", "tasks=[tblimp]", f"data.tblimp={bucket}/bench/blimp",
                     f"out={bucket}/results/hub.json", "device=cpu"]) == 0
    hub_results = json.loads(storage.read_text(f"{bucket}/results/hub.json"))
    assert hub_results["model"]["source"] == f"org/tiny-soda@{REVISION}"
    assert hub_results["tasks"]["tblimp"]["metrics"] == results["tasks"]["tblimp"]["metrics"]

    # --- the report, written to the bucket
    summary = {"title": "remote run", "evaluation": {"scale": "tiny", "scores": {
        "tBLIMP": 100 * results["tasks"]["tblimp"]["metrics"]["accuracy"]}}}
    (elsewhere / "summary.json").write_text(json.dumps(summary))
    assert cli_main(["report", "summary.json", "--out", f"{bucket}/report"]) == 0
    page = storage.read_text(f"{bucket}/report/index.html")
    assert "remote run" in page and storage.isfile(f"{bucket}/report/report.json")


def _train_cfg(cfg: dict) -> TrainConfig:
    from sodakit.config import from_dict

    return from_dict(TrainConfig, {**cfg, "checkpoint": {**cfg["checkpoint"], "resume": "none"}})
