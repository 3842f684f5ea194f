"""Likelihood-task scoring throughput (pairs/s) on CPU: batched versus one sequence per forward pass.

The peer is the way published speech-LM eval scripts score minimal pairs (one utterance per forward
pass, e.g. the sLM21 / SALMon scripts of Llama-Mimi); sodakit batches length-sorted, right-padded
requests. Scores must be identical (max |difference| printed; tests require batch-size independence
to 1e-5). Pairs look like sWUGGY/sBLIMP: audio spans of 1-3 s (12-38 frames x 8 codebooks) scored
with the speech template, in SODA's vocabulary (144,644 ids) or a small one (--layout small).

    python benchmarks/bench_eval.py [--pairs 48] [--preset tiny] [--layout soda|small] [--batches 1,8,16]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from sodakit.eval.lm import as_scoring_lm
from sodakit.eval.scoring import score_requests
from sodakit.eval.spans import AudioSelection, speech_request
from sodakit.model.config import PRESETS
from sodakit.model.qwen3 import build_model
from sodakit.tokens.vocab import Vocab

LAYOUTS = {
    # SODA's vocabulary: on a tiny body the 144,644-way output head dominates the cost.
    "soda": Vocab.soda(),
    # A small layout (2,048 text ids + 8 x 64 codes): the transformer body dominates, as in larger models.
    "small": Vocab(text_vocab_size=2048, bos_id=0, eos_id=1, num_codebooks=8, codebook_size=64),
}


def make_pairs(n: int, v: Vocab, seed: int = 0):
    rng = np.random.default_rng(seed)
    reqs = []
    for _ in range(2 * n):
        frames = int(rng.integers(12, 39))  # 1-3 s at 12.5 Hz
        codes = rng.integers(0, v.codebook_size, size=(v.num_codebooks, frames))
        reqs.append(speech_request(codes, v, AudioSelection()))
    return reqs


def timed(lm, reqs, batch_size: int) -> tuple[float, list]:
    score_requests(lm, reqs[: 2 * batch_size], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    scores = score_requests(lm, reqs, batch_size=batch_size)
    return time.perf_counter() - t0, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batches", default="1,8,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout", default="soda", choices=sorted(LAYOUTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab = LAYOUTS[args.layout]
    cfg = PRESETS[args.preset].replace(vocab_size=vocab.size)
    lm = as_scoring_lm(build_model(cfg, seed=0).eval())
    reqs = make_pairs(args.pairs, vocab)
    sizes = [int(b) for b in args.batches.split(",")]
    if 1 not in sizes:
        sizes.insert(0, 1)
    results = {b: timed(lm, reqs, b) for b in sizes}
    base_t, base_scores = results[1]
    print(json.dumps({"preset": args.preset, "layout": args.layout, "vocab": vocab.size, "pairs": args.pairs, "threads": args.threads,
                      "tokens": int(sum(r.ids.size for r in reqs)), "device": "cpu", "dtype": "float32"}))
    print(f"{'':28}{'pairs/s':>10}{'vs batch 1':>12}{'max |dmean|':>14}")
    for b, (t, scores) in results.items():
        diff = max(abs(a.mean_logprob - c.mean_logprob) for a, c in zip(base_scores, scores))
        label = "batch 1 (peer: per-item)" if b == 1 else f"batch {b} (sodakit)"
        print(f"{label:28}{args.pairs / t:10.2f}{base_t / t:12.2f}{diff:14.2e}")
    print("note: CPU shared with other jobs; ratios are from the same run")


if __name__ == "__main__":
    main()
