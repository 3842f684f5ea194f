"""One rank of a 2-process gloo job whose rank 0 cannot write a full-format checkpoint.

    RANK=R WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=P python tests/train/dist_failed_save.py RUN_DIR

Prints "raised: MESSAGE" when the save raises CheckpointError on this rank, "saved" when it returns.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import torch

from sodakit.model.config import PRESETS
from sodakit.model.load import CheckpointError
from sodakit.model.qwen3 import build_model
from sodakit.tokens.vocab import Vocab
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.config import CheckpointConfig, OptimConfig
from sodakit.train.optim import build_optimizer

VOCAB = Vocab(text_vocab_size=64, bos_id=1, eos_id=2, num_codebooks=2, codebook_size=16)
CFG = PRESETS["tiny"].replace(vocab_size=VOCAB.size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                              d_ff=64)


def main(run_dir: Path) -> None:
    ctx = D.setup("cpu")
    model = build_model(CFG, ctx.device, seed=0)
    D.shard_model(model, ctx, bf16=False)
    optimizer = build_optimizer(model, OptimConfig(), 1e-2)
    if ctx.is_main:
        def full_disk(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", str(run_dir))

        C.write_optimizer = full_disk  # rank 0 alone writes a full-format checkpoint
    checkpointer = C.Checkpointer(run_dir, CheckpointConfig(format="full"), ctx)
    info = C.SaveInfo(vocab=VOCAB, codec=None, tokenizer=None, config={})
    try:
        checkpointer.save(1, 100, model, optimizer, CFG, {"consumed": 1}, info)
        print("saved", flush=True)
    except CheckpointError as e:
        print(f"raised: {e}", flush=True)
    checkpointer.close()
    D.teardown(ctx)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
