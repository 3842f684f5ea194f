"""Training observability: per-token-type loss sums, MFU against a device peak, JSONL + TensorBoard.

MFU = achieved model FLOP/s / (peak FLOP/s per device x devices), with model FLOPs per token from
`train_flops_per_token(cfg, seq_len, "soda")` (docs/soda.md#isoflop-sweep: 3 x forward, attention over the full
sequence, LM head included). GPU peaks are dense bf16 tensor-core numbers from vendor datasheets
(no sparsity); on a CPU, or a GPU not in the table, the peak is measured at start-up with a large
matmul in the compute dtype, so MFU there reads "fraction of achievable matmul throughput".
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sodakit.tokens.vocab import Vocab

# Dense bf16 peak FLOP/s per device (datasheets, without 2:4 sparsity). Matched by substring of
# torch.cuda.get_device_name(), first match wins (so more specific names come first).
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("B100", 1.75e15),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H800", 989e12),
    ("H20", 148e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("A6000", 155e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("MI300X", 1307e12),
    ("MI250X", 383e12),
]

TOKEN_TYPES = ("text", "marker", "audio", "semantic")


def table_peak(device_name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops
    return None


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 0.5) -> float:
    """Achieved FLOP/s of an n x n matmul in `dtype` on `device` (best of repeated timings).

    The operands come from a private generator: drawing from the global one here would move the RNG
    state a resumed run restored from its checkpoint, so it would differ from an uninterrupted run's.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        a @ b
    sync()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def device_peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the number comes from)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = table_peak(name)
        if peak is not None and dtype == torch.bfloat16:
            return peak, f"table:{name}"
        return measure_matmul_peak(device, dtype), f"measured:{name}:{dtype}"
    return measure_matmul_peak(device, dtype, n=1024), f"measured:cpu:{dtype}"


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated GPU memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def token_type_sums(token_nll: Tensor, targets: Tensor, weights: Tensor, vocab: Vocab) -> Tensor:
    """[2 * len(TOKEN_TYPES)]: (nll sum, count) per type of the *target* token, weighted by the mask.

    text = text BPE ids incl. BOS/EOS, marker = modality markers, audio = any codebook,
    semantic = the semantic codebook(s) (a subset of audio).
    """
    out = []
    for kind in TOKEN_TYPES:
        sel = getattr(vocab, f"is_{kind}")(targets).to(weights.dtype) * weights
        out += [(token_nll * sel).sum(), sel.sum()]
    return torch.stack(out).float()


def type_losses(sums: Tensor, prefix: str = "loss") -> dict[str, float]:
    vals = sums.tolist()
    res = {}
    for i, kind in enumerate(TOKEN_TYPES):
        total, count = vals[2 * i], vals[2 * i + 1]
        if count > 0:
            res[f"{prefix}_{kind}"] = total / count
    return res


class ThroughputWindow:
    """Input tokens and optimizer steps since the last log record, and the training time they took.

    Validation and checkpoint writing run inside `paused()`, so their time is not training time; the
    window keeps its steps and tokens across them.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.steps = 0
        self.tokens = 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def step_done(self) -> None:
        self.steps += 1

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.t0 += time.perf_counter() - t


class MetricsWriter:
    """metrics.jsonl (one JSON object per record) + TensorBoard scalars; rank 0 only."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # Drop records after the checkpoint we resume from (they will be produced again) and a
            # last line cut short by a kill.
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("step", 0) <= resume_step:
                    kept.append(line)
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(k + "\n" for k in kept))
            tmp.replace(self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tb.add_scalar(key.replace("_", "/", 1) if key.startswith(("loss_", "val_")) else key, value, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
