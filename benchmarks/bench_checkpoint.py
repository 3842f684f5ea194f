"""Checkpoint save cost: how long the training loop is blocked, and how long until the checkpoint is committed.

Three ways of writing the same state (fp32 weights + Adam moments, FSDP2-sharded over the ranks), each
through the trainer's own `Checkpointer` (the same files, checksums, COMPLETE marker and rename):

    full gather   checkpoint.format=full: every tensor gathered to rank 0, which writes it alone
    DCP sync      checkpoint.format=sharded: every rank writes its own shards, in parallel
    DCP async     the same, asynchronous: the loop waits only for the copy to CPU memory

"loop blocked" is the time `save` kept the caller (the training loop) waiting; "until committed" runs from
the start of the save until COMPLETE is written and the directory renamed. Between repeats, each save is
waited for, so an asynchronous save is measured alone (in training it overlaps the next steps instead).

    python benchmarks/bench_checkpoint.py                          # 135M, 2 ranks on gloo (CPU)
    python benchmarks/bench_checkpoint.py --preset 600M --ranks 1 --device cuda --json out.json
With --ranks > 1 the script starts itself under torchrun; rank 0 prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sodakit.model.config import PRESETS, count_params
from sodakit.model.qwen3 import build_model
from sodakit.tokens.vocab import Vocab
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.config import CheckpointConfig, OptimConfig
from sodakit.train.optim import build_optimizer

METHODS = {  # name: (checkpoint.format, checkpoint.async_save)
    "full gather": ("full", False),
    "DCP sync": ("sharded", False),
    "DCP async": ("sharded", True),
}


def build(preset: str, layers: int | None, vocab: int | None, ctx: D.DistContext):
    cfg = PRESETS[preset].replace(**{k: v for k, v in (("n_layers", layers), ("vocab_size", vocab)) if v})
    model = build_model(cfg, ctx.device, seed=0)
    D.shard_model(model, ctx, bf16=False)
    optimizer = build_optimizer(model, OptimConfig(), lr=1e-3)
    for group in optimizer.param_groups:
        group["max_lr"] = 1e-3
    for p in model.parameters():  # one (zero-gradient) step: the optimizer state exists, as mid-training
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return cfg, model, optimizer


def measure(method: str, root: Path, repeats: int, cfg, model, optimizer, ctx: D.DistContext) -> dict:
    fmt, asynchronous = METHODS[method]
    reports: list[C.SaveReport] = []
    run_dir = root / method.replace(" ", "_")
    checkpointer = C.Checkpointer(run_dir, CheckpointConfig(format=fmt, async_save=asynchronous, keep_last=1), ctx,
                                  on_commit=reports.append)
    vocab = Vocab.soda() if cfg.vocab_size >= Vocab.soda().size else None
    info = C.SaveInfo(vocab=vocab, codec=None, tokenizer=None, config={})
    blocked = []
    for step in range(1, repeats + 1):
        D.barrier()
        t0 = time.perf_counter()
        checkpointer.save(step, 0, model, optimizer, cfg, {"consumed": 0}, info)
        blocked.append(time.perf_counter() - t0)
        checkpointer.wait()
    checkpointer.close()
    size = sum(p.stat().st_size for p in (checkpointer.last or run_dir).rglob("*") if p.is_file())
    D.barrier()
    if ctx.is_main:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"method": method, "blocked_s": statistics.median(blocked),
            "committed_s": statistics.median(r.total_s for r in reports), "bytes": size, "repeats": repeats}


def worker(args: argparse.Namespace) -> None:
    ctx = D.setup(args.device)
    torch.set_num_threads(max(1, args.threads))
    root = Path(D.broadcast_object(tempfile.mkdtemp(prefix="bench_ckpt_", dir=args.dir) if ctx.is_main else None))
    try:
        cfg, model, optimizer = build(args.preset, args.layers, args.vocab, ctx)
        rows = [measure(m, root, args.repeats, cfg, model, optimizer, ctx) for m in METHODS]
    finally:
        D.barrier()
        if ctx.is_main:
            shutil.rmtree(root, ignore_errors=True)
        D.teardown(ctx)
    if not ctx.is_main:
        return
    params = count_params(cfg).total
    head = {"preset": args.preset, "layers": cfg.n_layers, "params": params, "ranks": ctx.world_size,
            "device": str(ctx.device), "backend": ctx.backend, "repeats": args.repeats}
    print(json.dumps(head))
    print(f"checkpoint save: {args.preset} ({params / 1e6:.0f}M parameters, {cfg.n_layers} layers), "
          f"{ctx.world_size} rank(s) on {ctx.backend} ({ctx.device}), {rows[0]['bytes'] / 2**30:.2f} GiB per checkpoint, "
          f"median of {args.repeats}")
    print("| method | loop blocked s | until committed s | blocked vs full gather | committed vs full gather |")
    print("|---|---|---|---|---|")
    base = rows[0]
    for r in rows:
        print(f"| {r['method']} | {r['blocked_s']:.3f} | {r['committed_s']:.3f} | "
              f"{r['blocked_s'] / base['blocked_s']:.2f}x | {r['committed_s'] / base['committed_s']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({**head, "rows": rows}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="135M", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int, default=None, help="override the preset's number of layers")
    ap.add_argument("--vocab", type=int, default=None, help="override the vocabulary size (smoke tests)")
    ap.add_argument("--ranks", type=int, default=2, help="processes (torchrun); gloo on CPU, NCCL on GPU")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--dir", default=None, help="where to write the checkpoints (default: the temp directory)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.ranks > 1 and "RANK" not in os.environ:  # start the ranks; rank 0 prints
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.ranks),
               __file__, *sys.argv[1:]]
        sys.exit(subprocess.run(cmd).returncode)
    worker(args)


if __name__ == "__main__":
    main()
