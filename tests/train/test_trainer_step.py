"""The Trainer's seams outside its loop: one `train_step` on a toy batch, a metrics record, a checkpoint."""

from __future__ import annotations

import pytest
import torch

from sodakit.model.load import list_checkpoints
from sodakit.model.qwen3 import build_model
from sodakit.train import distributed as D
from sodakit.train.metrics import TOKEN_TYPES, ThroughputWindow
from sodakit.train.schedule import lr_multiplier
from sodakit.train.trainer import Trainer

from .conftest import VOCAB
from .test_trainer import MaskedSource, make_cfg


@pytest.fixture()
def trainer(tmp_path):
    cfg = make_cfg(tmp_path / "run", (tmp_path / "unused", None), steps=4, **{"data.val_path": None})
    ctx = D.setup("cpu")
    t = Trainer(cfg, ctx, source=MaskedSource(VOCAB, 64))
    try:
        yield t
    finally:
        t.close()
        D.teardown(ctx)


def test_train_step_on_a_toy_batch(trainer):
    src = trainer.source
    first = src.data[:8].clone()
    reference = build_model(trainer.model_cfg, "cpu", seed=0)  # the weights the trainer starts from
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.start_step == 0 and trainer.accum == 2  # global batch 8 = 2 micro-batches of 4

    result = trainer.train_step(0, with_type_sums=True)

    mask = torch.zeros(8, 64)
    mask[:, 31:] = 1  # the source scores tokens 32.. (loss_mask[:, t] scores target t - 1)
    with torch.no_grad():
        out = reference(first[:, :-1], first[:, 1:], loss_mask=mask)
    assert result.loss == pytest.approx(out.ce_sum.item() / mask.sum().item(), rel=1e-5)
    assert result.step == 1 and result.scored_tokens == mask.sum().item()
    assert result.input_tokens == 8 * 64 and src.consumed == 8
    assert result.lr == pytest.approx(trainer.peak_lr * lr_multiplier(0, 4, trainer.cfg.schedule))
    assert result.grad_norm > 0 and result.type_sums is not None
    assert result.type_sums.shape == (1 + 2 * len(TOKEN_TYPES),)
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k].detach()) for k in before)  # the update was applied

    window = ThroughputWindow()
    window.add(result.input_tokens)
    window.step_done()
    record = trainer.step_record(result, window)
    assert record["step"] == 1 and record["loss"] == result.loss and record["tokens"] == 8 * 64
    assert record["tokens_per_s"] > 0 and window.tokens == 0 and window.steps == 0  # a new window starts
    assert {f"loss_{k}" for k in ("text", "audio")} <= set(record)

    assert trainer.train_step(1).type_sums is None  # per-type sums only when asked (log steps)
    trainer.save_checkpoint(2)
    assert [c.name for c in list_checkpoints(trainer.run_dir)] == ["step_00000002"]
    assert trainer.last_checkpoint == list_checkpoints(trainer.run_dir)[0]
