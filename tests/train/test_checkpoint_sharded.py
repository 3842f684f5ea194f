"""The Checkpointer: an asynchronous save returns before anything is written and still holds the state of its
own step; a write that fails fails the save on every rank and leaves no checkpoint (in one process, and for
a full-format save whose rank 0 fails, in two)."""

from __future__ import annotations

import errno
import threading

import pytest
import torch

from sodakit.config import ConfigError
from sodakit.model.config import PRESETS
from sodakit.model.load import CheckpointError, list_checkpoints, read_pretrained
from sodakit.model.qwen3 import build_model
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.config import CheckpointConfig, OptimConfig, TrainConfig, validate_train_config
from sodakit.train.optim import build_optimizer
from sodakit.train.sharded_state import ShardWriter

from .conftest import VOCAB, checkpoint_tensors

CFG = PRESETS["tiny"].replace(vocab_size=VOCAB.size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                              d_ff=64)


@pytest.fixture
def trainee():
    """(ctx, model, optimizer) after one optimizer step, in a 1-rank process group."""
    ctx = D.setup("cpu")
    model = build_model(CFG, ctx.device, seed=0)
    D.shard_model(model, ctx, bf16=False)
    optimizer = build_optimizer(model, OptimConfig(), 1e-2)
    for group in optimizer.param_groups:
        group["max_lr"] = 1e-2
    ids = torch.randint(0, VOCAB.size, (2, 9), generator=torch.Generator().manual_seed(0))
    model(ids[:, :-1], ids[:, 1:]).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    yield ctx, model, optimizer
    D.teardown(ctx)


def _save(checkpointer: C.Checkpointer, step: int, model, optimizer) -> None:
    info = C.SaveInfo(vocab=VOCAB, codec=None, tokenizer=None, config={})
    checkpointer.save(step, step * 100, model, optimizer, CFG, {"consumed": step}, info)


def _full(model) -> dict[str, torch.Tensor]:
    return {k: v.full_tensor().clone() for k, v in model.state_dict().items()}


def test_an_async_save_returns_before_writing_and_keeps_its_steps_state(trainee, tmp_path, monkeypatch):
    ctx, model, optimizer = trainee
    release = threading.Event()
    real_write = ShardWriter.write_data

    def held_write(self, plan, planner):
        assert release.wait(60), "the test never released the writer"
        return real_write(self, plan, planner)

    monkeypatch.setattr(ShardWriter, "write_data", held_write)
    committed: list[C.SaveReport] = []
    checkpointer = C.Checkpointer(tmp_path, CheckpointConfig(async_save=True), ctx, on_commit=committed.append)
    before = _full(model)
    exp_avg = {k: v.full_tensor().clone() for k, v in
               ((n, optimizer.state[p]["exp_avg"]) for n, p in model.named_parameters())}
    _save(checkpointer, 1, model, optimizer)
    # the save returned while its writer is still held: nothing is committed yet, training may go on
    assert committed == [] and list_checkpoints(tmp_path) == [] and checkpointer.pending is not None
    with torch.no_grad():  # what the next optimizer step would do to the live state
        for p in model.parameters():
            p.add_(1.0)
            optimizer.state[p]["exp_avg"].add_(1.0)
    release.set()
    checkpointer.close()
    (ckpt,) = list_checkpoints(tmp_path)
    assert [r.step for r in committed] == [1] and committed[0].path == ckpt and committed[0].asynchronous
    weights, optim = checkpoint_tensors(ckpt)
    assert weights.keys() == before.keys() and all(torch.equal(weights[k], before[k]) for k in before)
    assert all(torch.equal(optim[f"{k}::exp_avg"], v) for k, v in exp_avg.items())  # the step's copy
    C.verify_checkpoint(ckpt)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_failed_shard_write_fails_the_save_and_leaves_no_checkpoint(asynchronous, trainee, tmp_path, monkeypatch):
    ctx, model, optimizer = trainee

    def full_disk(self, plan, planner):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))

    checkpointer = C.Checkpointer(tmp_path, CheckpointConfig(async_save=asynchronous), ctx)
    _save(checkpointer, 1, model, optimizer)
    checkpointer.wait()
    monkeypatch.setattr(ShardWriter, "write_data", full_disk)
    with pytest.raises(CheckpointError, match=r"checkpoint step_00000002 was not saved: .*No space left on device"):
        _save(checkpointer, 2, model, optimizer)
        checkpointer.wait()  # an asynchronous save reports its failure here
    checkpointer.close()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000001"]  # no temp directory
    weights, _ = read_pretrained(tmp_path)
    assert weights.keys() == _full(model).keys()


def test_checkpoint_options_that_cannot_work_are_refused():
    cfg = TrainConfig()
    cfg.checkpoint.format = "zip"
    with pytest.raises(ConfigError, match=r"checkpoint.format must be one of \['sharded', 'full'\], got 'zip'"):
        validate_train_config(cfg)
    cfg.checkpoint.format, cfg.checkpoint.async_save = "full", True
    with pytest.raises(ConfigError, match="checkpoint.async_save=true needs checkpoint.format=sharded"):
        validate_train_config(cfg)


def test_an_async_save_reaches_the_store_only_once_committed_with_every_file(trainee, s3_bucket, sodakit_cache,
                                                                             monkeypatch):
    import json

    from sodakit import storage
    from sodakit.model.load import COMPLETE_MARKER
    from sodakit.train.remote_run import RunMirror

    ctx, model, optimizer = trainee
    mirror = RunMirror(f"{s3_bucket}/runs/a", log=lambda m: None)
    release = threading.Event()
    real_write = ShardWriter.write_data

    def held_write(self, plan, planner):
        assert release.wait(60), "the test never released the writer"
        return real_write(self, plan, planner)

    monkeypatch.setattr(ShardWriter, "write_data", held_write)
    checkpointer = C.Checkpointer(mirror.local, CheckpointConfig(async_save=True), ctx, publish=mirror.push_checkpoint)
    _save(checkpointer, 1, model, optimizer)
    assert not storage.exists(f"{mirror.url}/checkpoints")  # the save is in flight: nothing uploaded
    release.set()
    checkpointer.close()
    (ckpt,) = list_checkpoints(mirror.local)
    remote = f"{mirror.url}/checkpoints/{ckpt.name}"
    listed = json.loads(storage.read_text(f"{remote}/{COMPLETE_MARKER}"))["sha256"]
    assert any(name.startswith("shards/") for name in listed)
    uploaded = {url[len(remote) + 1:] for url in storage.list_files(remote)}
    assert uploaded == {*listed, COMPLETE_MARKER}  # every file COMPLETE lists, every rank's shards included
    assert all(storage.sha256(f"{remote}/{name}") == digest for name, digest in listed.items())


def test_a_failed_upload_fails_the_save_and_keeps_the_local_checkpoint(trainee, tmp_path):
    ctx, model, optimizer = trainee

    def unreachable(path):
        raise CheckpointError(f"{path.name}: the store cannot be reached")

    checkpointer = C.Checkpointer(tmp_path, CheckpointConfig(async_save=True), ctx, publish=unreachable)
    with pytest.raises(CheckpointError, match="checkpoint step_00000001 was not saved: step_00000001: the store"):
        _save(checkpointer, 1, model, optimizer)
        checkpointer.wait()
    checkpointer.close()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001"]  # the next start uploads it


@pytest.mark.parametrize("fmt", ["sharded", "full"])
def test_checkpoint_files_follow_the_umask(fmt, trainee, tmp_path):
    """safetensors creates its files 0600: a teammate could not read a checkpoint written with umask 022."""
    import os
    import stat

    ctx, model, optimizer = trainee
    old = os.umask(0o022)
    try:
        checkpointer = C.Checkpointer(tmp_path, CheckpointConfig(format=fmt), ctx)
        _save(checkpointer, 1, model, optimizer)
        checkpointer.close()
    finally:
        os.umask(old)
    (ckpt,) = list_checkpoints(tmp_path)
    modes = {p.relative_to(ckpt).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in ckpt.rglob("*")}
    assert any(name.endswith(".safetensors") for name in modes)
    assert modes == {name: oct(0o755 if (ckpt / name).is_dir() else 0o644) for name in modes}


def test_a_failed_full_format_write_on_rank_0_fails_the_save_on_every_rank(tmp_path):
    """A full-format checkpoint is written by rank 0 alone: when that write fails, the other ranks must
    learn it and raise the same error, not wait in a barrier for the collective timeout (30 minutes)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, str(repo / "tests/train/dist_failed_save.py"), str(tmp_path / "run")],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=120))
    finally:
        for p in procs:
            p.kill()
    for rank, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank}: {err[-2000:]}"
        assert out.strip() == ("raised: checkpoint step_00000001 was not saved: "
                               "OSError: [Errno 28] No space left on device: '" + str(tmp_path / "run") + "'"), out
    assert list_checkpoints(tmp_path / "run") == []
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == []  # no temp directory left
