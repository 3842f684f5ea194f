"""One-command GPU training throughput: tokens/s and MFU for the 135M and 600M presets at sequence 4096.

Runs the trainer's own step on one GPU: FSDP2 (1 rank, bf16 compute / fp32 masters and reductions),
torch.compile per decoder block, fused chunked LM head + cross-entropy + z-loss, Cautious AdamW, gradient
clipping. Synthetic tokens over the full 144,644-token vocabulary (the data loader is not the bottleneck).
MFU uses the SODA FLOP convention (3 x forward incl. attention over the full sequence and the LM head)
against the dense bf16 peak of the device (sodakit.train.metrics.PEAK_BF16_FLOPS). Goal: >= 45% for 600M.

With --document-masking, each sequence is cut into documents (lengths drawn around --doc-len tokens) and
attention stays inside each: "flex" (FlexAttention block masks, what training uses on CUDA) or "dense"
(a [B, 1, T, T] boolean mask through SDPA); "none" is plain causal attention (SDPA's flash kernel).

    python benchmarks/gpu_train.py                       # 135M and 600M, defaults below
    python benchmarks/gpu_train.py --models 600M --batch 8 --no-compile --ac
    python benchmarks/gpu_train.py --models 135M --document-masking none flex dense
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sodakit.model.config import PRESETS, count_params, train_flops_per_token
from sodakit.model.qwen3 import build_model
from sodakit.train import distributed as D
from sodakit.train.config import OptimConfig
from sodakit.train.metrics import device_peak_flops, peak_memory_bytes
from sodakit.train.optim import build_optimizer, clip_grad_norm

# Sequences per micro-batch at seq 4096 that fit an 80 GB GPU without activation checkpointing.
DEFAULT_BATCH = {"135M": 8, "600M": 4, "1.7B": 2, "4B": 1, "tiny": 2, "mini": 2}


def document_ids(batch: int, seq: int, doc_len: int, device: torch.device) -> torch.Tensor:
    """Segment ids [batch, seq]: documents of exponentially distributed lengths with mean `doc_len`."""
    gen = torch.Generator().manual_seed(1)
    starts = torch.rand(batch, seq, generator=gen) < 1.0 / doc_len
    return torch.cumsum(starts, dim=1).to(device)


def run(name: str, batch: int, seq: int, steps: int, warmup: int, compile_blocks: bool, ac: bool,
        ctx: D.DistContext, masking: str = "none", doc_len: int = 1024) -> dict:
    cfg = PRESETS[name]
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = build_model(cfg, ctx.device, seed=0)
    model.activation_checkpointing = ac
    if masking != "none":
        model.document_attention = masking
    D.shard_model(model, ctx, bf16=True, compile_blocks=compile_blocks)
    opt = build_optimizer(model, OptimConfig(), lr=1e-3)
    gen = torch.Generator(device=ctx.device).manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=ctx.device, generator=gen)
    x, y = tokens[:, :-1], tokens[:, 1:]
    segments = document_ids(batch, seq, doc_len, ctx.device) if masking != "none" else None

    def step() -> None:  # as sodakit.train.trainer does it, including its one sync per step
        out = model(x, y, z_loss_weight=1e-4, segment_ids=segments)
        out.loss.backward()
        norm = clip_grad_norm(model.parameters(), 1.0)
        if not all(map(math.isfinite, torch.stack([out.loss.detach().float(), norm.float()]).tolist())):
            raise RuntimeError("non-finite loss or gradient norm")
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    peak, source = device_peak_flops(ctx.device, torch.bfloat16)
    med = statistics.median(times)
    tps = batch * seq / med
    fpt = train_flops_per_token(cfg, seq, "soda")
    res = {
        "model": name, "batch": batch, "seq": seq, "compile": compile_blocks, "activation_checkpointing": ac,
        "document_masking": masking, "documents_per_row": (segments[:, -1].float().mean().item() + 1
                                                            if segments is not None else 1.0),
        "params": count_params(cfg).total, "step_s": med, "tokens_per_s": tps,
        "mfu": tps * fpt / peak, "mfu_6N": tps * train_flops_per_token(cfg, seq, "6N") / peak,
        "peak_flops": peak, "peak_source": source, "warmup_s": warm_s,
        "peak_mem_gib": peak_memory_bytes(ctx.device) / 2**30,
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["135M", "600M"], choices=sorted(DEFAULT_BATCH))
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default per model)")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--ac", action="store_true", help="activation checkpointing")
    ap.add_argument("--document-masking", nargs="+", default=["none"], choices=["none", "flex", "dense"],
                    help="attention within documents: each choice is one run per model")
    ap.add_argument("--doc-len", type=int, default=1024, help="mean document length with --document-masking")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke test of this script")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_train.py needs a CUDA GPU (or --device cpu --models tiny for a smoke test)")
    ctx = D.setup(args.device)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"{name} | torch {torch.__version__}")
    print(f"{'model':<6} {'mask':>5} {'batch':>5} {'seq':>5} {'tok/s':>10} {'MFU':>7} {'MFU(6N)':>8} {'step':>8} "
          f"{'peak mem':>9}")
    results = []
    try:
        for model_name, masking in [(m, k) for m in args.models for k in args.document_masking]:
            try:
                r = run(model_name, args.batch or DEFAULT_BATCH[model_name], args.seq, args.steps, args.warmup,
                        not args.no_compile, args.ac, ctx, masking, args.doc_len)
            except torch.OutOfMemoryError:
                print(f"{model_name:<6} out of memory at batch {args.batch or DEFAULT_BATCH[model_name]}: "
                      "lower --batch or add --ac")
                torch.cuda.empty_cache()
                continue
            results.append(r)
            if args.device == "cuda":
                torch.cuda.empty_cache()
            print(f"{model_name:<6} {masking:>5} {r['batch']:>5} {r['seq']:>5} {r['tokens_per_s']:>10.0f} {r['mfu']:>6.1%} "
                  f"{r['mfu_6N']:>7.1%} {r['step_s']:>7.3f}s {r['peak_mem_gib']:>7.1f}GiB", flush=True)
        print(f"(MFU vs {results[0]['peak_flops'] / 1e12:.0f} TFLOP/s from {results[0]['peak_source']})" if results else "")
    finally:
        D.teardown(ctx)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
