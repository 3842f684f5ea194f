"""The training loop: metrics, checkpoints, refusals, NaN handling, fine-tuning hooks (in-process, 1 rank)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sodakit.cli import main as cli_main
from sodakit.model.load import CheckpointError, list_checkpoints, load_pretrained
from sodakit.train.config import CheckpointConfig, DataConfig, DataSource, LogConfig, ModelSpec, TrainConfig
from sodakit.train.trainer import NonFiniteLossError, train

from .conftest import VOCAB, checkpoint_tensors, make_packed

SMALL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16, "d_ff": 128}




def make_cfg(run_dir, data, **kw) -> TrainConfig:
    cfg = TrainConfig(
        run_dir=str(run_dir), steps=8, global_batch=8, micro_batch=4, precision="fp32", seed=0,
        data=DataConfig(sources=[DataSource(str(data[0]))], seq_len=64, val_path=str(data[1]), val_batches=2),
        model=ModelSpec(preset="tiny", overrides=dict(SMALL)),
        log=LogConfig(every=1, val_every=4, progress=False, tensorboard=True),
        checkpoint=CheckpointConfig(every=4, keep_last=1),
    )
    cfg.optim.lr = 3e-3
    for key, value in kw.items():
        obj = cfg
        *path, last = key.split(".")
        for p in path:
            obj = getattr(obj, p)
        setattr(obj, last, value)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory, packed):
    run = tmp_path_factory.mktemp("run") / "r"
    torch.set_num_threads(1)
    result = train(make_cfg(run, packed))
    return run, result


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_metrics_checkpoints_and_loading(trained):
    run, result = trained
    rows = [r for r in records(run) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 9))
    for key in ("loss", "loss_text", "loss_audio", "loss_semantic", "lr", "grad_norm", "tokens_per_s", "mfu",
                "peak_mem_gb", "z_loss"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3
    assert rows[0]["loss"] == pytest.approx(math.log(VOCAB.size), abs=0.3)  # near-uniform at init
    vals = [r for r in records(run) if "val_loss" in r]
    assert [r["step"] for r in vals] == [4, 8] and "val_loss_audio" in vals[-1] and "val_loss_semantic" in vals[-1]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # keep_last=1: only the final checkpoint remains, complete, with its sidecar
    ckpts = list_checkpoints(run)
    assert [c.name for c in ckpts] == ["step_00000008"] and result.last_checkpoint == ckpts[0]
    model, info = load_pretrained(run)
    assert info.step == 8 and info.vocab == VOCAB and info.codec["name"] == "test"
    assert info.sidecar["tokens_seen"] == 8 * 8 * 64
    state = json.loads((ckpts[0] / "trainer_state.json").read_text())
    assert state["world_size"] == 1 and state["ranks"][0]["loader"]["consumed"] == 64
    assert state["config"]["optim"]["lr"] == 3e-3
    ids = torch.randint(0, VOCAB.size, (1, 10))
    assert model(ids).shape == (1, 10, VOCAB.size)


def test_refusals(trained, packed, tmp_path):
    run, _ = trained
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        train(make_cfg(run, packed, steps=10))
    bigger = make_cfg(run, packed, steps=10, **{"checkpoint.resume": "auto"})
    bigger.model.overrides["n_layers"] = 3
    with pytest.raises(CheckpointError, match="model config differs"):
        train(bigger)
    other_vocab = VOCAB.__class__(text_vocab_size=64, bos_id=1, eos_id=2, num_codebooks=2, codebook_size=17)
    other = make_packed(tmp_path / "other", 80, vocab=other_vocab)
    cfg = make_cfg(run, (other, other), steps=10, **{"checkpoint.resume": "auto"})
    cfg.model.overrides["vocab_size"] = other_vocab.size
    with pytest.raises(CheckpointError, match="vocabulary layout"):
        train(cfg)
    with pytest.raises(ValueError, match="not a multiple"):
        train(make_cfg(tmp_path / "x", packed, global_batch=6))
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len"):
        train(make_cfg(tmp_path / "x", packed, **{"data.seq_len": 2048}))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(packed, tmp_path):
    cfg = make_cfg(tmp_path / "nan", packed, **{"checkpoint.every": 1, "checkpoint.keep_last": 5})
    cfg.optim.name, cfg.optim.lr, cfg.optim.grad_clip, cfg.schedule.warmup_steps = "adamw", 1e30, 0.0, 0
    with pytest.raises(NonFiniteLossError, match=r"at step 2 .*consumed': 8.*step_00000001"):
        train(cfg)
    ckpts = list_checkpoints(tmp_path / "nan")
    assert [c.name for c in ckpts] == ["step_00000001"]
    weights, _ = checkpoint_tensors(ckpts[0])
    assert all(torch.isfinite(t).all() for t in weights.values())


class MaskedSource:
    """A fine-tuning style source: fixed sequences whose loss covers only the second half."""

    def __init__(self, vocab, seq_len):
        self.vocab, self.seq_len, self.consumed = vocab, seq_len, 0
        g = torch.Generator().manual_seed(5)
        self.data = torch.randint(0, vocab.size, (64, seq_len + 1), generator=g)

    def next_batch(self, n):
        tokens = self.data[self.consumed % 64 : self.consumed % 64 + n]
        self.consumed += n
        mask = torch.zeros_like(tokens)
        mask[:, self.seq_len // 2 :] = 1
        return {"tokens": tokens, "loss_mask": mask}

    def state_dict(self):
        return {"consumed": self.consumed}

    def load_state_dict(self, d):
        self.consumed = d["consumed"]


def test_init_from_and_loss_mask(trained, packed, tmp_path):
    run, _ = trained
    src = MaskedSource(VOCAB, 64)
    cfg = make_cfg(tmp_path / "sft", packed, steps=1, **{"model.init_from": str(run), "data.val_path": None})
    cfg.model.overrides = {}
    first = src.data[:8]
    result = train(cfg, source=src)
    model, _ = load_pretrained(run)  # the starting weights
    mask = torch.zeros(8, 64)
    mask[:, 31:] = 1  # loss_mask[:, t] scores token t, i.e. target t - 1
    with torch.no_grad():
        out = model(first[:, :-1], first[:, 1:], loss_mask=mask)
    assert result.last_loss == pytest.approx(out.ce_sum.item() / mask.sum().item(), rel=1e-5)
    other = VOCAB.__class__(text_vocab_size=60, bos_id=1, eos_id=2, num_codebooks=2, codebook_size=16)
    with pytest.raises(CheckpointError, match="differs from the data's"):
        train(make_cfg(tmp_path / "sft2", packed, steps=1, **{"model.init_from": str(run), "data.val_path": None,
                                                              "model.overrides": {}}),
              source=MaskedSource(other, 64))


def test_cli_errors(tmp_path, capsys):
    # User errors: one line, exit code 2 (sodakit.cli reports them for every command).
    assert cli_main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["train", "steps=3", f"run_dir={tmp_path}"]) == 2
    assert "data.sources is empty" in capsys.readouterr().err
    assert cli_main(["train", "--resume"]) == 2


def test_shipped_train_configs_load():
    from pathlib import Path

    from sodakit.config import load_config

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("train_*.yaml"))
    assert configs
    for path in configs:
        cfg = load_config(TrainConfig, path)
        assert cfg.global_batch % cfg.micro_batch == 0, path
        assert cfg.data.seq_len <= 4096, path
