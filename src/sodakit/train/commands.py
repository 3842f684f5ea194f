"""`sodakit train CONFIG.yaml [key.sub=value ...] [--resume auto|PATH]`: pre-train (single process or torchrun).

Single process:   sodakit train configs/train_tiny.yaml data.sources='[{path: data/packed}]'
One node, 8 GPUs: torchrun --nproc-per-node 8 -m sodakit train configs/train_135m.yaml
Multi-node:       torchrun --nnodes N --node-rank R --nproc-per-node 8 --rdzv-backend c10d \\
                      --rdzv-endpoint HOST:29500 -m sodakit train configs/train_600m.yaml
"""

from __future__ import annotations

from sodakit.config import ConfigError, Flag, parse_config_args
from sodakit.train.config import TrainConfig
from sodakit.train.trainer import train


def main(argv: list[str]) -> int:
    """Errors (bad config, refused resume, a run directory in use, divergence) reach sodakit.cli, which
    prints them as one line with their exit code (2 user error, 3 diverged)."""
    argv = list(argv)
    # `--resume X` is a shorthand for checkpoint.resume=X.
    if "--resume" in argv:
        i = argv.index("--resume")
        if i + 1 >= len(argv):
            raise ConfigError("--resume needs a value (auto or a checkpoint path)")
        value = argv[i + 1]
        del argv[i : i + 2]
        argv.append(f"checkpoint.resume={value}")
    cfg, _ = parse_config_args(TrainConfig, argv, "sodakit train", __doc__ or "",
                               flags=(Flag("quiet", "no progress output", const=True),))
    result = train(cfg)
    if result.rank != 0:
        return 0
    loss = f"{result.last_loss:.4f}" if result.last_loss is not None else "n/a"
    print(f"done: step {result.step}, last loss {loss}, checkpoint {result.last_checkpoint}, metrics {result.metrics_path}")
    return 0
