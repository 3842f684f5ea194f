"""Learning-rate schedules (WSD, cosine, constant) and SODA's peak-LR rule.

The schedule is a pure function of the step, so resuming needs no scheduler state beyond the step.
Step s (0-based) is the s-th optimizer update; warmup reaches the peak at step warmup-1.
"""

from __future__ import annotations

import math

from sodakit.model.config import LR_RULE_WIDTH
from sodakit.train.config import ScheduleConfig

SCHEDULES = ("wsd", "cosine", "constant")


def soda_peak_lr(global_batch: int, width: int) -> float:
    """docs/soda.md#training-recipe: 3e-3 * sqrt(B / 256) * sqrt(1024 / width), B in sequences."""
    if global_batch <= 0 or width <= 0:
        raise ValueError(f"peak-LR rule needs a positive batch and width, got {global_batch}, {width}")
    return 3e-3 * math.sqrt(global_batch / 256) * math.sqrt(1024 / width)


def rule_width(preset: str, d_model: int, override: int | None = None) -> int:
    """Width used by the peak-LR rule: explicit, else the preset's (135M uses 1024), else d_model."""
    if override is not None:
        return override
    return LR_RULE_WIDTH.get(preset, d_model)


def warmup_steps(cfg: ScheduleConfig, total: int) -> int:
    if cfg.warmup_steps is not None:
        return max(0, min(cfg.warmup_steps, total))
    return min(total, round(cfg.warmup_frac * total))


def lr_multiplier(step: int, total: int, cfg: ScheduleConfig) -> float:
    """Fraction of the peak learning rate used at optimizer step `step` of `total`."""
    if cfg.kind not in SCHEDULES:
        raise ValueError(f"schedule.kind {cfg.kind!r} unknown; choose one of {SCHEDULES}")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"schedule.min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}")
    warm = warmup_steps(cfg, total)
    if step < warm:
        return (step + 1) / warm
    lo = cfg.min_lr_ratio
    if cfg.kind == "constant":
        return 1.0
    if cfg.kind == "cosine":
        span = max(1, total - warm)
        progress = min(1.0, (step - warm + 1) / span)
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # WSD: constant, then linear decay to min over the last decay_frac of the steps (reaching it at the end).
    decay = min(total - warm, round(cfg.decay_frac * total))
    decay_start = total - decay
    if step < decay_start or decay == 0:
        return 1.0
    progress = (step - decay_start + 1) / decay
    return lo + (1.0 - lo) * (1.0 - progress)
