"""The training config: one dataclass tree, loaded from YAML plus `key.sub=value` overrides.

Defaults follow SODA (docs/soda.md#training-recipe) except where a CPU-sized default is needed to make
`sodakit train` runnable out of the box (preset, steps, batch); configs/train_*.yaml hold the real recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sodakit.config import ConfigError, check_ranges

CHECKPOINT_FORMATS = ("sharded", "full")


@dataclass
class DataSource:
    path: str = ""
    weight: float = 1.0


@dataclass
class DataConfig:
    # Packed datasets (`sodakit pack` outputs) mixed by weight by sodakit.data.loader.MixtureLoader.
    sources: list[DataSource] = field(default_factory=list)
    seq_len: int = 4096
    # Restrict attention to each packed document (segment ids from BOS); SODA trained without it.
    document_masking: bool = False
    # Held-out packed dataset for periodic validation (sequential windows), split by token type.
    val_path: str | None = None
    val_batches: int = 8  # batches of `micro_batch` windows per rank per validation
    # tokenizer.json copied into every checkpoint; default: the one recorded in the data's metadata.
    tokenizer: str | None = None


@dataclass
class ModelSpec:
    preset: str = "tiny"
    # Any ModelConfig field, e.g. {n_layers: 2, d_model: 64}. vocab_size defaults to the data's layout.
    overrides: dict[str, Any] = field(default_factory=dict)
    # Start from these weights (a sodakit checkpoint, a run directory or an HF Qwen3 directory) instead
    # of random init: continued pre-training and fine-tuning. The optimizer starts fresh.
    init_from: str | None = None


@dataclass
class OptimConfig:
    name: str = "cautious_adamw"  # or "adamw" (plain, no cautious mask)
    # Peak learning rate; None applies SODA's rule 3e-3 * sqrt(B / 256) * sqrt(1024 / width).
    lr: float | None = None
    # Width used by that rule; None: the preset's (LR_RULE_WIDTH, 1024 for 135M) or d_model.
    lr_rule_width: int | None = None
    beta1: float = 0.98
    beta2: float = 0.98
    eps: float = 1e-16
    weight_decay: float = 0.033
    # AdamC: decay scaled by lr_t / lr_max, so it anneals with the schedule.
    wd_lr_scaling: bool = True  # (cautious_adamw only; "adamw" is plain torch AdamW)
    # Cautious rescale 1 / (mean(mask) + cautious_eps).
    cautious_eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    z_loss: float = 1e-4


@dataclass
class ScheduleConfig:
    kind: str = "wsd"  # "wsd", "cosine" or "constant"
    warmup_frac: float = 0.1
    decay_frac: float = 0.2  # WSD: linear decay over the last 20% of steps
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak
    warmup_steps: int | None = None  # overrides warmup_frac when set


@dataclass
class CheckpointConfig:
    every: int = 500  # steps; the last step is always saved
    keep_last: int = 3  # complete checkpoints kept (older ones deleted after a new one is complete)
    # "none": start fresh (refused if the run directory already holds checkpoints),
    # "auto": newest complete checkpoint of run_dir if any, else fresh; or a checkpoint path.
    # A checkpoint of either format resumes on any number of ranks that divides the global batch.
    resume: str = "none"
    # "sharded": every rank writes its own pieces of weights and optimizer state, in parallel
    # (torch.distributed.checkpoint); "full": rank 0 gathers everything and writes model.safetensors and
    # optimizer.safetensors alone (the format of checkpoints before sharded ones existed).
    format: str = "sharded"
    # Sharded only: copy the state to CPU memory, then write it in a background thread while training
    # goes on; one save in flight at most (the next save and the end of the run wait for it).
    async_save: bool = False


@dataclass
class LogConfig:
    every: int = 10  # steps between metric records
    val_every: int = 0  # steps between validations (0: only at the end, when data.val_path is set)
    tensorboard: bool = True
    # Progress on rank 0 (stderr): a bar on a terminal, a status line every SODAKIT_PROGRESS_SECONDS
    # (default 30) in a log; false (or quiet=true) turns it off. Validation losses are printed either way.
    progress: bool = True


@dataclass
class TrainConfig:
    run_dir: str = "runs/train"
    seed: int = 0
    steps: int = 1000
    # Sequences per optimizer step, over all ranks. Must equal micro_batch * world_size * accumulation.
    global_batch: int = 8
    micro_batch: int = 8  # sequences per rank per forward/backward
    precision: str = "bf16"  # "bf16" (bf16 compute, fp32 master weights and reductions) or "fp32"
    device: str = "auto"  # "auto" (cuda when available), "cuda" or "cpu"
    compile: bool = False  # torch.compile each decoder block
    activation_checkpointing: bool = False
    # fp32 logits per chunk of the fused LM head + cross-entropy (memory vs matmul size);
    # None: 2**27 on GPU, 2**22 on CPU (sodakit.model.qwen3.DEFAULT_CE_CHUNK_ELEMENTS).
    ce_chunk_elements: int | None = None
    quiet: bool = False  # no progress output (the same as log.progress=false)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


def validate_train_config(cfg: TrainConfig, prefix: str = "") -> None:
    """Sizes, counts and fractions that cannot work raise a ConfigError naming the key."""
    check_ranges(
        cfg,
        positive=("steps", "global_batch", "micro_batch", "ce_chunk_elements", "data.seq_len", "data.val_batches",
                  "optim.lr", "optim.lr_rule_width", "checkpoint.every", "log.every"),
        non_negative=("optim.eps", "optim.weight_decay", "optim.cautious_eps", "optim.grad_clip", "optim.z_loss",
                      "schedule.warmup_steps", "checkpoint.keep_last", "log.val_every"),
        unit_interval=("optim.beta1", "optim.beta2", "schedule.warmup_frac", "schedule.decay_frac",
                       "schedule.min_lr_ratio"),
        prefix=prefix,
    )
    if cfg.checkpoint.format not in CHECKPOINT_FORMATS:
        raise ConfigError(f"{prefix}checkpoint.format must be one of {list(CHECKPOINT_FORMATS)}, got {cfg.checkpoint.format!r}")
    if cfg.checkpoint.async_save and cfg.checkpoint.format != "sharded":
        raise ConfigError(f"{prefix}checkpoint.async_save=true needs checkpoint.format=sharded (a full-state save "
                          f"gathers everything to rank 0 first, which is the wait an asynchronous save avoids)")
