"""`sodakit train CONFIG.yaml [key.sub=value ...] [--resume auto|PATH]`: pre-train (single process or torchrun).

Single process:   sodakit train configs/train_tiny.yaml data.sources='[{path: data/packed}]'
One node, 8 GPUs: torchrun --nproc-per-node 8 -m sodakit train configs/train_135m.yaml
Multi-node:       torchrun --nnodes N --node-rank R --nproc-per-node 8 --rdzv-backend c10d \\
                      --rdzv-endpoint HOST:29500 -m sodakit train configs/train_600m.yaml
"""

from __future__ import annotations

import sys

from sodakit.config import ConfigError, parse_config_args
from sodakit.model.load import CheckpointError
from sodakit.train.config import TrainConfig
from sodakit.train.trainer import NonFiniteLossError, train

# Exit codes: 1 bad config/input, 3 training diverged (NaN/Inf).
EXIT_BAD_INPUT, EXIT_DIVERGED = 1, 3


def main(argv: list[str]) -> int:
    argv = list(argv)
    # `--resume X` is a shorthand for checkpoint.resume=X.
    if "--resume" in argv:
        i = argv.index("--resume")
        if i + 1 >= len(argv):
            print("sodakit train: --resume needs a value (auto or a checkpoint path)", file=sys.stderr)
            return EXIT_BAD_INPUT
        value = argv[i + 1]
        del argv[i : i + 2]
        argv.append(f"checkpoint.resume={value}")
    try:
        cfg, _ = parse_config_args(TrainConfig, argv, "sodakit train", __doc__ or "")
        result = train(cfg)
    except NonFiniteLossError as e:
        print(f"sodakit train: stopped: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ConfigError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"sodakit train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if result.rank != 0:
        return 0
    loss = f"{result.last_loss:.4f}" if result.last_loss is not None else "n/a"
    print(f"done: step {result.step}, last loss {loss}, checkpoint {result.last_checkpoint}, metrics {result.metrics_path}")
    return 0
