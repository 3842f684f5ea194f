"""Training with its data and its run directory on S3 (a real S3 server on localhost): SIGKILL, then
`--resume auto` from another machine's empty cache reproduces the uninterrupted loss curve exactly;
the store only ever holds complete checkpoints (COMPLETE last), pruned to keep_last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sodakit import storage
from sodakit.model.load import COMPLETE_MARKER, SIDECAR
from sodakit.train.remote_run import RunMirror

from .test_resume_distributed import REPO, curve, write_cfg


def remote_curve(url: str) -> dict[int, tuple[float, float]]:
    out = {}
    for line in storage.read_text(f"{url}/metrics.jsonl").splitlines():
        r = json.loads(line)
        if "loss" in r:
            out[r["step"]] = (r["loss"], r["grad_norm"])
    return out


def remote_steps(url: str) -> list[str]:
    return sorted({storage.basename(storage.parent(p)) for p in storage.list_files(f"{url}/checkpoints")
                   if p.endswith("/" + COMPLETE_MARKER)})


def test_run_directory_on_s3_killed_and_resumed_elsewhere(packed, tmp_path, s3_bucket):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    train_data, val_data = packed
    storage.upload_dir(train_data, f"{s3_bucket}/packed/train", last=["metadata.json"])
    storage.upload_dir(val_data, f"{s3_bucket}/packed/val", last=["metadata.json"])
    log = {"every": 1, "val_every": 10, "progress": False, "tensorboard": False}
    run = f"{s3_bucket}/runs/r1"
    cfg = write_cfg(tmp_path / "remote.yaml", run, f"{s3_bucket}/packed/train", steps=20, log=log)
    reference_cfg = write_cfg(tmp_path / "ref.yaml", tmp_path / "ref", train_data, steps=20, log=log)
    for path, val in ((cfg, f"{s3_bucket}/packed/val"), (reference_cfg, str(val_data))):
        d = yaml.safe_load(path.read_text())
        d["data"].update(val_path=val, val_batches=1)
        path.write_text(yaml.safe_dump(d))
    p = subprocess.run([sys.executable, "-m", "sodakit", "train", str(reference_cfg)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    reference = curve(tmp_path / "ref")

    machine_a = {**env, "SODAKIT_CACHE": str(tmp_path / "cache-a")}
    proc = subprocess.Popen([sys.executable, "-m", "sodakit", "train", str(cfg)], env=machine_a, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mirror = Path(machine_a["SODAKIT_CACHE"]) / "runs"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        local = next(mirror.glob("*/metrics.jsonl"), None) if mirror.is_dir() else None
        if local is not None and any(s >= 12 for s in curve(local.parent, partial_ok=True)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "step_00000005" in remote_steps(run) and "step_00000020" not in remote_steps(run)

    machine_b = {**env, "SODAKIT_CACHE": str(tmp_path / "cache-b")}  # nothing of the run on this machine
    p = subprocess.run([sys.executable, "-m", "sodakit", "train", str(cfg), "--resume", "auto"], env=machine_b,
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "downloading step_0000001" in p.stderr or "downloading step_00000005" in p.stderr
    assert remote_curve(run) == reference  # exactly the uninterrupted run's losses and gradient norms
    assert remote_steps(run) == ["step_00000015", "step_00000020"]  # keep_last=2, on the store too
    assert storage.isfile(f"{run}/config.yaml")
    # A fresh run into the same URL is refused, as for a local run directory.
    p = subprocess.run([sys.executable, "-m", "sodakit", "train", str(cfg)], env=machine_b, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and f"{run} already holds checkpoints" in p.stderr


def _fake_checkpoint(root: Path, step: int) -> Path:
    d = root / "checkpoints" / f"step_{step:08d}"
    d.mkdir(parents=True)
    (d / SIDECAR).write_text("{}")
    (d / "model.safetensors").write_bytes(b"w" * step)
    (d / COMPLETE_MARKER).write_text("{}")
    return d


def test_sync_finishes_an_interrupted_upload_and_drops_partial_ones(s3_bucket, sodakit_cache):
    url = f"{s3_bucket}/runs/r2"
    mirror = RunMirror(url, keep_last=2, log=lambda m: None)
    _fake_checkpoint(mirror.local, 5)
    mirror.push_checkpoint(mirror.local / "checkpoints" / "step_00000005")
    _fake_checkpoint(mirror.local, 10)  # complete locally; killed before its upload finished:
    storage.write_bytes(f"{url}/checkpoints/step_00000010/model.safetensors", b"partial")
    storage.write_bytes(f"{url}/checkpoints/step_00000009/model.safetensors", b"orphan")
    (mirror.local / "metrics.jsonl").write_text('{"step": 10}\n')
    mirror.sync("auto")
    assert remote_steps(url) == ["step_00000005", "step_00000010"]
    assert storage.read_bytes(f"{url}/checkpoints/step_00000010/model.safetensors") == b"w" * 10
    assert not storage.exists(f"{url}/checkpoints/step_00000009/model.safetensors")
    assert storage.read_text(f"{url}/metrics.jsonl") == '{"step": 10}\n'
    # Another machine: the newest complete checkpoint comes down, into the checkpoints folder of its mirror.
    os.environ["SODAKIT_CACHE"] = str(sodakit_cache / "other")
    try:
        other = RunMirror(url, keep_last=2, log=lambda m: None)
        other.sync("auto")
    finally:
        os.environ["SODAKIT_CACHE"] = str(sodakit_cache)
    assert (other.local / "checkpoints" / "step_00000010" / "model.safetensors").read_bytes() == b"w" * 10
    assert not (other.local / "checkpoints" / "step_00000005").exists()
    assert (other.local / "metrics.jsonl").read_text() == '{"step": 10}\n'
