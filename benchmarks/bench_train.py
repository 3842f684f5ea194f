"""Training speed and memory: sodakit's Qwen3 vs transformers.Qwen3ForCausalLM, side by side.

Speed (goal: >= 1.3x transformers' tokens/s): one training step = forward + loss + backward + AdamW step,
same config, batch, sequence length, dtype, same optimizer (torch AdamW, foreach), same process and
threads; the two models alternate step by step and the median step time is reported. MFU uses the SODA
FLOP convention (3 x forward incl. attention and LM head) against a matmul peak measured in the same run.

Memory (goal: <= 60% of transformers' peak): one training step of the 135M shape at 4096 tokens with
the full 144,644-token vocabulary, each model in its own fresh process; peak resident memory (RSS
high-water mark) is reported in total and as the increase over the process right after building the
model (which holds the weights: the same for both).

    .venv/bin/python benchmarks/bench_train.py                 # everything (CPU: a few minutes)
    .venv/bin/python benchmarks/bench_train.py --only speed --dtype bf16
    .venv/bin/python benchmarks/bench_train.py --smoke --dtype fp32 --steps 1 --preset tiny --seq 64   # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sodakit.model.config import PRESETS, ModelConfig, train_flops_per_token
from sodakit.model.hf import to_hf_config, to_hf_state_dict
from sodakit.model.qwen3 import build_model
from sodakit.train.cpu import tune_cpu_allocator
from sodakit.train.metrics import measure_matmul_peak


def hf_model(cfg: ModelConfig, ours=None):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    raw = {k: v for k, v in to_hf_config(cfg).items() if k not in ("architectures", "torch_dtype", "dtype")}
    hcfg = Qwen3Config(**raw)
    hcfg._attn_implementation = "sdpa"  # transformers' fastest built-in attention on CPU
    model = Qwen3ForCausalLM(hcfg)
    if ours is not None:
        model.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg))
    return model


def make_step(kind: str, model, dtype: torch.dtype):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    def step(ids: torch.Tensor) -> float:
        x, y = ids[:, :-1], ids[:, 1:].contiguous()
        with autocast:
            if kind == "ours":
                loss = model(x, y).loss
            else:
                loss = model(input_ids=x, labels=y, shift_labels=y).loss  # y already shifted
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def bench_speed(
    name: str, cfg: ModelConfig, batch: int, seq: int, dtype: torch.dtype, steps: int, compile_blocks: bool = False
) -> dict:
    torch.manual_seed(0)
    ours = build_model(cfg, seed=0)
    theirs = hf_model(cfg, ours)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq + 1))
    runners = {"ours": make_step("ours", ours, dtype), "transformers": make_step("hf", theirs, dtype)}
    if compile_blocks:
        compiled = build_model(cfg, seed=0)
        for block in compiled.layers:
            block.compile()
        runners["ours+compile"] = make_step("ours", compiled, dtype)
    losses = {k: r(ids) for k, r in runners.items()}  # warm-up (allocations, kernels, compilation)
    assert max(losses.values()) - min(losses.values()) < 2e-2, f"models disagree: {losses}"
    for r in runners.values():
        r(ids)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(steps):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r(ids)
            times[k].append(time.perf_counter() - t0)
    peak = measure_matmul_peak(torch.device("cpu"), dtype, n=1024)
    fpt = train_flops_per_token(cfg, seq, "soda")
    out = {"name": name, "batch": batch, "seq": seq, "dtype": str(dtype).removeprefix("torch."),
           "vocab": cfg.vocab_size, "peak_flops": peak, "threads": torch.get_num_threads()}
    for k, ts in times.items():
        med = statistics.median(ts)
        tps = batch * seq / med
        out[k] = {"step_s": med, "tokens_per_s": tps, "mfu": tps * fpt / peak}
    out["speedup"] = out["ours"]["tokens_per_s"] / out["transformers"]["tokens_per_s"]
    if compile_blocks:
        out["speedup_compiled"] = out["ours+compile"]["tokens_per_s"] / out["transformers"]["tokens_per_s"]
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, preset: str, seq: int, dtype: torch.dtype) -> dict:
    cfg = PRESETS[preset]
    model = build_model(cfg, seed=0) if kind == "ours" else hf_model(cfg)
    ids = torch.randint(0, cfg.vocab_size, (1, seq + 1))
    base = rss_bytes()
    step = make_step("ours" if kind == "ours" else "hf", model, dtype)
    t0 = time.perf_counter()
    step(ids)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": kind, "peak_rss": peak, "base_rss": base, "step_increase": peak - base, "step_s": seconds}


def bench_memory(preset: str, seq: int, dtype: str) -> dict:
    res = {}
    for kind in ("ours", "transformers"):
        p = subprocess.run(
            [sys.executable, __file__, "--child-memory", kind, "--preset", preset, "--seq", str(seq), "--dtype", dtype],
            capture_output=True, text=True, timeout=3600,
        )
        if p.returncode != 0:
            raise RuntimeError(f"memory child {kind} failed:\n{p.stderr[-3000:]}")
        res[kind] = json.loads(p.stdout.strip().splitlines()[-1])
    res["ratio_peak"] = res["ours"]["peak_rss"] / res["transformers"]["peak_rss"]
    res["ratio_step_increase"] = res["ours"]["step_increase"] / res["transformers"]["step_increase"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["speed", "memory"], default=None)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="default: both")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seq", type=int, default=4096, help="memory benchmark sequence length")
    ap.add_argument("--preset", default="135M")
    ap.add_argument("--compile", action="store_true", help="also time ours with torch.compile per block")
    ap.add_argument("--smoke", action="store_true",
                    help="speed on one tiny shape only (vocab 8192, B1 x 64): checks the script runs, in seconds")
    ap.add_argument("--default-allocator", action="store_true", help="keep glibc's default malloc settings")
    ap.add_argument("--child-memory", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if args.child_memory:
        print(json.dumps(memory_child(args.child_memory, args.preset, args.seq, dtypes[args.dtype or "bf16"])))
        return
    # What `sodakit train` does on CPU (sodakit/train/cpu.py); both models share this process, so both
    # benefit. The memory benchmark's children do not use it (it keeps freed memory resident).
    allocator = tune_cpu_allocator() if not args.default_allocator else False
    chosen = [args.dtype] if args.dtype else ["fp32", "bf16"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}; load average {os.getloadavg()[0]:.1f} (shared CPU); "
          f"heap-reusing allocator: {allocator}")
    if args.only in (None, "speed"):
        shapes = [
            ("tiny, vocab 8192, B4 x 256", PRESETS["tiny"].replace(vocab_size=8192), 4, 256),
            ("tiny, vocab 144644, B4 x 256", PRESETS["tiny"], 4, 256),
            ("135M, vocab 144644, B2 x 256", PRESETS["135M"], 2, 256),
        ]
        if args.smoke:
            shapes = [("tiny, vocab 8192, B1 x 64", PRESETS["tiny"].replace(vocab_size=8192), 1, 64)]
        print("\n== training step speed (fwd + loss + bwd + AdamW), median of alternating steps ==")
        print(f"{'shape':<32} {'dtype':<6} {'ours tok/s':>11} {'hf tok/s':>10} {'speedup':>8} {'ours MFU':>9} {'hf MFU':>8}")
        for d in chosen:
            for name, cfg, b, s in shapes:
                r = bench_speed(name, cfg, b, s, dtypes[d], args.steps, args.compile)
                extra = f"  compiled: {r['speedup_compiled']:.2f}x" if args.compile else ""
                print(f"{name:<32} {d:<6} {r['ours']['tokens_per_s']:>11.0f} {r['transformers']['tokens_per_s']:>10.0f} "
                      f"{r['speedup']:>7.2f}x {r['ours']['mfu']:>8.1%} {r['transformers']['mfu']:>8.1%}{extra}", flush=True)
    if args.only in (None, "memory"):
        print(f"\n== peak memory of one training step: {args.preset}, 1 x {args.seq} tokens, vocab 144644 ==")
        for d in chosen:
            r = bench_memory(args.preset, args.seq, d)
            o, h = r["ours"], r["transformers"]
            print(f"{d}: peak RSS ours {o['peak_rss'] / 2**30:.2f} GiB vs transformers {h['peak_rss'] / 2**30:.2f} GiB "
                  f"({r['ratio_peak']:.0%}); step increase ours {o['step_increase'] / 2**30:.2f} GiB vs "
                  f"{h['step_increase'] / 2**30:.2f} GiB ({r['ratio_step_increase']:.0%}); "
                  f"step time {o['step_s']:.1f}s vs {h['step_s']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
