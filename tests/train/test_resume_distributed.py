"""Real processes: SIGKILL mid-run then `--resume auto` reproduces the uninterrupted loss curve exactly;
2 gloo ranks under torchrun match 1 process at the same global batch, also after the 2-rank run continues
in 1 process (tests/train/test_resize.py changes the world size back and forth)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Single-threaded, so the CPU results are bit-reproducible and small ops stay fast on a shared machine.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
# 2 ranks vs 1 process differ only by float summation order (FSDP reduce-scatter, sharded norms).
DP_RTOL = 1e-5


def write_cfg(path: Path, run_dir: Path, data: Path, **extra) -> Path:
    cfg = {
        "run_dir": str(run_dir), "steps": 40, "global_batch": 8, "micro_batch": 4, "precision": "fp32",
        "data": {"sources": [{"path": str(data)}], "seq_len": 64},
        "model": {"preset": "tiny", "overrides": {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                                                  "head_dim": 16, "d_ff": 128}},
        "log": {"every": 1, "progress": False, "tensorboard": False},
        "checkpoint": {"every": 5, "keep_last": 2},
    }
    cfg.update(extra)
    path.write_text(yaml.safe_dump(cfg))
    return path


def curve(run_dir: Path, partial_ok: bool = False) -> dict[int, tuple[float, float]]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            if partial_ok:  # the line being written when we looked, or when the run was killed
                continue
            raise
        if "loss" in r:
            out[r["step"]] = (r["loss"], r["grad_norm"])
    return out


def run_train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "sodakit", "train", *args], env=ENV, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"train failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def test_sigkill_then_resume_reproduces_the_curve_exactly(packed, tmp_path):
    data = packed[0]
    full_cfg = write_cfg(tmp_path / "full.yaml", tmp_path / "full", data)
    run_train(str(full_cfg))
    reference = curve(tmp_path / "full")
    assert sorted(reference) == list(range(1, 41))

    cfg = write_cfg(tmp_path / "kill.yaml", tmp_path / "killed", data)
    proc = subprocess.Popen([sys.executable, "-m", "sodakit", "train", str(cfg)], env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and any(s >= 12 for s in curve(tmp_path / "killed", partial_ok=True)):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen = max(curve(tmp_path / "killed", partial_ok=True))
    assert 12 <= seen < 40
    ckpts = tmp_path / "killed" / "checkpoints"
    # a half-written checkpoint (temp dir) and a step directory without its COMPLETE marker are ignored
    (ckpts / ".tmp-step_00000099-123").mkdir()
    (ckpts / "step_00000095").mkdir()
    (ckpts / "step_00000095" / "model.safetensors").write_bytes(b"partial")
    with open(metrics, "a") as f:  # a metrics record cut short by the kill
        f.write('{"step": 13, "loss": 1.2')
    p = run_train(str(cfg), "--resume", "auto")
    resumed = curve(tmp_path / "killed")
    assert sorted(resumed) == list(range(1, 41)), p.stderr[-2000:]
    assert resumed == reference  # exactly equal losses and gradient norms, step by step
    assert not (ckpts / ".tmp-step_00000099-123").exists()


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "sodakit", "train", *args],
        env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun + gloo test written for Linux")
def test_two_gloo_ranks_match_one_process(packed, tmp_path):
    data = packed[0]
    # constant LR so a run can be extended by resuming with more steps
    common = {"checkpoint": {"every": 2}, "schedule": {"kind": "constant", "warmup_steps": 0}}
    one = write_cfg(tmp_path / "one.yaml", tmp_path / "one", data, steps=6, **common)
    two = write_cfg(tmp_path / "two.yaml", tmp_path / "two", data, steps=4, **common)
    run_train(str(one))  # 1 process: 2 micro-batches of 4 per step
    p = torchrun(str(two))  # 2 ranks: 1 micro-batch of 4 each
    assert p.returncode == 0, p.stderr[-3000:]
    state = json.loads((tmp_path / "two" / "checkpoints" / "step_00000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and [r["loader"]["consumed"] for r in state["ranks"]] == [32, 32]
    p = torchrun(str(two), "--resume", "auto", "steps=6")  # resume the sharded model and optimizer
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = curve(tmp_path / "one"), curve(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert b[step][0] == pytest.approx(a[step][0], rel=DP_RTOL), step
        assert b[step][1] == pytest.approx(a[step][1], rel=DP_RTOL), step
    # the 2-rank run continues in 1 process, as the 1-process run does
    run_train(str(two), "--resume", "auto", "steps=8")
    run_train(str(one), "--resume", "auto", "steps=8")
    a, b = curve(tmp_path / "one"), curve(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in (7, 8):
        assert b[step][0] == pytest.approx(a[step][0], rel=DP_RTOL), step
        assert b[step][1] == pytest.approx(a[step][1], rel=DP_RTOL), step
