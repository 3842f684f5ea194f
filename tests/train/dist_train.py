"""One torchrun job of `sodakit train` that records what each rank drew and what the live model computes.

    python -m torch.distributed.run --standalone --nproc-per-node N tests/train/dist_train.py OUT CONFIG.yaml [key=value ...]

Writes OUT/batches-rank{R}.npy: every micro-batch rank R drew, [calls, micro_batch, seq_len + 1]; and, when
OUT/probe.npy exists (token ids [B, T]), OUT/logits.npy from rank 0: the logits of the trained model of
this run, still sharded over its ranks, before anything is read back from a checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sodakit.config import load_config
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.batches import build_source
from sodakit.train.config import TrainConfig, validate_train_config
from sodakit.train.trainer import Trainer


class Recording:
    """A batch source that keeps a copy of every batch it hands out."""

    def __init__(self, source: Any) -> None:
        self.source, self.batches = source, []

    def __getattr__(self, name: str) -> Any:  # vocab, datasets, ...
        return getattr(self.source, name)

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        batch = self.source.next_batch(batch_size)
        self.batches.append(batch["tokens"].numpy().copy())
        return batch

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)


def main(out: Path, argv: list[str]) -> None:
    cfg = load_config(TrainConfig, argv[0], argv[1:])
    validate_train_config(cfg)
    ctx = D.setup(cfg.device)
    torch.set_num_threads(1)
    try:
        with C.run_directory(Path(cfg.run_dir), ctx):
            source = Recording(build_source(cfg, ctx))
            trainer = Trainer(cfg, ctx, source)
            trainer.train()
            np.save(out / f"batches-rank{ctx.rank}.npy", np.stack(source.batches))
            if (out / "probe.npy").exists():
                trainer.model.eval()
                with torch.no_grad():  # every rank: the sharded model gathers its weights for the forward
                    logits = trainer.model(torch.from_numpy(np.load(out / "probe.npy")))
                if ctx.is_main:
                    np.save(out / "logits.npy", logits.float().numpy())
    finally:
        D.teardown(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
