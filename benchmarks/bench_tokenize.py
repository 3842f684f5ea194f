"""SODA string -> ids: sodakit's SodaTokenizer vs the `tokenizers` tokenizer with 16,388 added tokens.

The peer is the released tokenizer's construction (a text BPE + 4 markers + 16,384 audio characters as
added tokens + BOS template), built from the same BPE, so outputs must be identical. Documents look like
real SODA data: mostly audio (8 x 12.5 Hz = 100 tokens/s) with a transcript every few seconds.

    python benchmarks/bench_tokenize.py [--docs 400] [--segments 10]
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np

from sodakit.tokens.documents import document_string
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe

WORDS = ("the of and to in is that it was for on are as with his they at be this from have or by one had not but "
         "what all were when we there can an your which their said if do will each about how up out them then she "
         "many some so these would other into has more her two like him see time could no make than first been its "
         "who now people my made over did down only way find use may water long little very after words called just "
         "where most know get through back much before go good new write our used me man too any day same right look "
         "think also around another came come work three word must because does part even place well such").split()


class Seg:
    def __init__(self, text: str, codes: np.ndarray):
        self.text, self.codes = text, codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--segments", type=int, default=10, help="segments (utterances) per document")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = random.Random(0)
    nrng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20))).capitalize() + "." for _ in range(5000)]
    tok = SodaTokenizer(train_bpe(sentences, vocab_size=8192))
    peer = tok.to_hf_tokenizer()
    docs = []
    for _ in range(args.docs):
        segs = [Seg(rng.choice(sentences), nrng.integers(0, 2048, (8, int(nrng.integers(25, 90))))) for _ in range(args.segments)]
        docs.append(document_string(segs, rng.choice(["text_first", "audio_first"]), tok.vocab))
    n_chars = sum(len(d) for d in docs)

    def best(fn):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    t_peer, ref = best(lambda: [e.ids for e in peer.encode_batch(docs)])
    t_ours, ours = best(lambda: tok.encode_batch(docs, add_bos=False))
    t_peer1, _ = best(lambda: [peer.encode(d).ids for d in docs[:100]])
    t_ours1, _ = best(lambda: [tok.encode(d, add_bos=False) for d in docs[:100]])
    # the peer's template prepends BOS; our strings already begin with <|begin_of_text|>
    identical = all([tok.vocab.bos_id, *o.tolist()] == r for o, r in zip(ours, ref))
    n_tokens = sum(len(r) for r in ref)
    print(f"{args.docs} documents, {n_chars / 1e6:.2f}M characters, {n_tokens / 1e6:.2f}M tokens "
          f"({sum(len(d) for d in docs) / args.docs:.0f} tokens/doc, mostly audio); identical output: {identical}")
    print(f"{'':28}{'tokens/s':>14}{'ratio':>8}")
    print(f"{'tokenizers encode_batch':28}{n_tokens / t_peer:14,.0f}{1.0:8.1f}")
    print(f"{'sodakit encode_batch':28}{n_tokens / t_ours:14,.0f}{t_peer / t_ours:8.1f}x")
    n1 = sum(len(r) for r in ref[:100])
    print(f"{'tokenizers encode (1 by 1)':28}{n1 / t_peer1:14,.0f}{1.0:8.1f}")
    print(f"{'sodakit encode (1 by 1)':28}{n1 / t_ours1:14,.0f}{t_peer1 / t_ours1:8.1f}x")
    print(f"(TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}, {os.cpu_count()} cores)")
    if not identical:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
