"""The Checkpointer in one process: an asynchronous save returns before anything is written and still holds
the state of its own step; a write that fails fails the save on every rank and leaves no checkpoint."""

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
