"""Mixture loader throughput: 4096-token windows from a page-cached packed shard, on one core.

Goal: >= 20M tokens/s. Printed beside the ceiling measured in the same run: copying the same number of
contiguous 4097-token slices out of the memory map with no loader logic at all.

    python benchmarks/bench_loader.py [--tokens 200_000_000] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sodakit.data.loader import MixtureLoader
from sodakit.data.packed import PACKED_FORMAT, ShardWriter, write_metadata
from sodakit.tokens.vocab import Vocab


def build(directory: Path, n_tokens: int) -> None:
    vocab = Vocab.soda()
    writer = ShardWriter(directory, 0)
    rng = np.random.default_rng(0)
    doc_len = 8192
    for _ in range(n_tokens // doc_len):
        doc = rng.integers(vocab.audio_offset, vocab.size, doc_len, dtype=np.uint32)
        doc[0], doc[-1] = vocab.bos_id, vocab.eos_id
        writer.add(doc)
    info = writer.finish()
    write_metadata(directory, {"format": PACKED_FORMAT, "vocab": vocab.to_dict(), "shards": [info],
                               "num_tokens": info["num_tokens"], "num_documents": info["num_docs"], "counts": {}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000_000, help="dataset size (uint32 tokens)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        build(d, args.tokens)
        (d / "tokens-00000.bin").read_bytes()  # page-cache the shard
        loader = MixtureLoader([(d, 1.0)], seq_len=args.seq_len, seed=0)
        loader.next_batch(args.batch)

        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds:
            n += loader.next_batch(args.batch)["tokens"][:, :-1].numel()
        ours = n / (time.perf_counter() - t0)

        mm = np.memmap(d / "tokens-00000.bin", dtype=np.uint32, mode="r")
        n_win = (len(mm) - 1) // args.seq_len
        starts = np.random.default_rng(0).integers(0, n_win, 1 << 20) * args.seq_len
        t0, n, i = time.perf_counter(), 0, 0
        while time.perf_counter() - t0 < args.seconds:
            out = np.empty((args.batch, args.seq_len + 1), dtype=np.uint32)
            for r in range(args.batch):
                out[r] = mm[starts[i] : starts[i] + args.seq_len + 1]
                i += 1
            torch.from_numpy(out.astype(np.int64))
            n += args.batch * args.seq_len
        ceiling = n / (time.perf_counter() - t0)
    print(json.dumps({"seq_len": args.seq_len, "batch": args.batch, "dataset_tokens": args.tokens}))
    print(f"{'':34}{'tokens/s':>14}{'vs ceiling':>12}")
    print(f"{'raw memmap slices (ceiling)':34}{ceiling:14,.0f}{1.0:12.2f}")
    print(f"{'MixtureLoader.next_batch':34}{ours:14,.0f}{ours / ceiling:12.2f}")
    print(f"goal >= 20,000,000 tokens/s: {'met' if ours >= 20e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
