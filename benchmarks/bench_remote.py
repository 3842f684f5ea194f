"""Reading from an object store vs local disk: `sodakit tokenize` and the training loader.

An S3-compatible server runs on localhost (moto's standalone server, started here on a free port), or
pass --endpoint URL for another one (credentials from the usual AWS variables). The same data is read
from a local folder and from the bucket:

- loader: a packed dataset of --tokens uint32 tokens in --shards shards; MixtureLoader windows of
  --seq-len from local disk (page-cached), from S3 with the shard cache (a cold pass that downloads every
  shard, then warm, memory-mapped from the cache), and from S3 by ranged reads (cache=False).
  Goal: >= 20M tokens/s from S3 with the cache.
- tokenize: --clips WAV clips of --clip-seconds through a small random Mimi (so reading, not encoding,
  is what differs), input and output local vs both on S3, and on S3 reading one file at a time
  (read_threads=1) vs several at once (the default). moto on localhost answers in about a millisecond;
  a real store's tens of milliseconds per request make reading one file at a time far slower still:
  --latency-ms adds that wait to every audio download of the S3 runs (simulated latency, labelled so).

    python benchmarks/bench_remote.py [--tokens 50_000_000] [--shards 4] [--clips 40] [--endpoint URL]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sodakit import storage
from sodakit.audio.tokenize import TokenizeConfig, tokenize
from sodakit.data.loader import MixtureLoader
from sodakit.data.packed import PACKED_FORMAT, ShardWriter, write_metadata
from sodakit.tokens.vocab import Vocab


def start_server() -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return server, f"http://127.0.0.1:{port}"


def build_packed(directory: Path, n_tokens: int, shards: int) -> None:
    vocab = Vocab.soda()
    rng = np.random.default_rng(0)
    doc_len, infos = 8192, []
    per_shard = max(doc_len, n_tokens // shards)
    for i in range(shards):
        writer = ShardWriter(directory, i)
        for _ in range(per_shard // doc_len):
            doc = rng.integers(vocab.audio_offset, vocab.size, doc_len, dtype=np.uint32)
            doc[0], doc[-1] = vocab.bos_id, vocab.eos_id
            writer.add(doc)
        infos.append(writer.finish())
    total = sum(s["num_tokens"] for s in infos)
    write_metadata(directory, {"format": PACKED_FORMAT, "vocab": vocab.to_dict(), "shards": infos, "num_tokens": total,
                               "num_documents": sum(s["num_docs"] for s in infos), "counts": {}})


def loader_rate(source: str, seq_len: int, batch: int, seconds: float, cache: bool = True) -> tuple[float, float]:
    """(tokens/s over `seconds` of next_batch, seconds the first batch took)."""
    t0 = time.perf_counter()
    loader = MixtureLoader([(source, 1.0)], seq_len=seq_len, seed=0, cache=cache)
    loader.next_batch(batch)
    first = time.perf_counter() - t0
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        n += loader.next_batch(batch)["tokens"][:, :-1].numel()
    return n / (time.perf_counter() - t0), first


def bench_loader(args, work: Path, bucket: str) -> dict:
    local = work / "packed"
    local.mkdir()
    build_packed(local, args.tokens, args.shards)
    t0 = time.perf_counter()
    storage.upload_dir(local, f"{bucket}/packed", last=["metadata.json"])
    upload_s = time.perf_counter() - t0
    nbytes = sum(p.stat().st_size for p in local.glob("tokens-*.bin"))
    for p in local.glob("tokens-*.bin"):
        p.read_bytes()  # page-cache the local shards
    local_tps, _ = loader_rate(str(local), args.seq_len, args.batch, args.seconds)
    # Cold: an empty cache; the first pass downloads (and verifies) each shard it touches.
    os.environ["SODAKIT_CACHE"] = str(work / "cache")
    t0 = time.perf_counter()
    loader = MixtureLoader([(f"{bucket}/packed", 1.0)], seq_len=args.seq_len, seed=0)
    for shard in loader.datasets[0].shards:
        _ = shard.tokens  # fetch every shard now: the cold cost of the whole dataset
    cold_s = time.perf_counter() - t0
    warm_tps, _ = loader_rate(f"{bucket}/packed", args.seq_len, args.batch, args.seconds)
    ranged_tps, ranged_first = loader_rate(f"{bucket}/packed", args.seq_len, args.batch, min(args.seconds, 2.0),
                                           cache=False)
    return {"dataset_tokens": nbytes // 4, "shards": args.shards, "upload_s": round(upload_s, 2),
            "local_tokens_per_s": local_tps, "s3_cold_fetch_s": round(cold_s, 2),
            "s3_cold_fetch_tokens_per_s": nbytes / 4 / cold_s, "s3_cached_tokens_per_s": warm_tps,
            "s3_ranged_tokens_per_s": ranged_tps, "s3_ranged_first_batch_s": round(ranged_first, 3)}


def bench_tokenize(args, work: Path, bucket: str) -> dict:
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(0)
    mimi = work / "mimi"
    MimiModel(MimiConfig(hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=16, codebook_dim=16,
                         vector_quantization_hidden_dimension=16, num_quantizers=8, codebook_size=2048,
                         upsample_groups=32)).save_pretrained(mimi)
    corpus = work / "corpus"
    (corpus / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(args.clips):
        sf.write(corpus / "audio" / f"c{i}.flac", (0.1 * rng.standard_normal(int(16000 * args.clip_seconds))).astype(np.float32),
                 16000)
        rows.append({"audio": f"audio/c{i}.flac", "text": f"clip {i}"})
    (corpus / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    storage.upload_dir(corpus, f"{bucket}/corpus")
    hours = args.clips * args.clip_seconds / 3600
    real_download = storage.download

    def slow_download(url, dest):
        time.sleep(args.latency_ms / 1000)
        return real_download(url, dest)

    if args.latency_ms:  # audio files on a store are fetched with storage.download (sodakit.audio.io)
        storage.download = slow_download
    try:
        walls = _tokenize_walls(args, work, bucket, corpus, mimi)
    finally:
        storage.download = real_download
    return {"clips": args.clips, "clip_seconds": args.clip_seconds, "repeats": args.repeats,
            **{f"{n}_audio_h_per_s": hours / w for n, w in walls.items()},
            **{f"{n}_wall_s": round(w, 2) for n, w in walls.items()}}


def _tokenize_walls(args, work: Path, bucket: str, corpus: Path, mimi: Path) -> dict[str, float]:
    """Best wall time of each kind of tokenize run."""
    walls: dict[str, float] = {}
    for rep in range(args.repeats):  # alternating, best of each: the first run also pays for warming up
        for name, src, out, threads in (
                ("local", str(corpus / "m.jsonl"), str(work / f"tok-local-{rep}"), TokenizeConfig.read_threads),
                ("s3", f"{bucket}/corpus/m.jsonl", f"{bucket}/tok-{rep}", TokenizeConfig.read_threads),
                ("s3_serial", f"{bucket}/corpus/m.jsonl", f"{bucket}/tok-serial-{rep}", 1)):
            t0 = time.perf_counter()
            summary = tokenize(TokenizeConfig(input=src, output=out, codec=str(mimi), device="cpu", shard_size=10,
                                              read_threads=threads), log=lambda m: None)
            wall = time.perf_counter() - t0
            assert summary["segments"] == args.clips, summary
            walls[name] = min(walls.get(name, wall), wall)
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000_000, help="packed dataset size (uint32 tokens)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0, help="per loader measurement")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--clip-seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=2, help="tokenize runs of each kind (best is kept)")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="simulated wait before every remote audio download (a real store's request latency)")
    ap.add_argument("--endpoint", help="an S3-compatible server to use instead of starting moto")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    server = None
    if args.endpoint:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    else:
        server, os.environ["AWS_ENDPOINT_URL"] = start_server()
    try:
        bucket = f"s3://sodakit-bench-{os.getpid()}"
        storage._fs(bucket)[0].mkdir(bucket[len("s3://"):])
        with tempfile.TemporaryDirectory() as tmp:
            loader = bench_loader(args, Path(tmp), bucket)
            tok = bench_tokenize(args, Path(tmp), bucket)
    finally:
        if server is not None:
            server.stop()
    result = {"endpoint": "moto (localhost)" if server else args.endpoint, "seq_len": args.seq_len,
              "batch": args.batch, "loader": loader, "tokenize": tok}
    print(json.dumps(result))
    print(f"\nloader ({loader['dataset_tokens']:,} tokens in {loader['shards']} shards, windows of {args.seq_len})")
    print(f"{'':36}{'tokens/s':>16}{'vs local':>10}")
    for label, key in (("local disk (page-cached)", "local_tokens_per_s"),
                       ("S3, shard cache (warm)", "s3_cached_tokens_per_s"),
                       ("S3, cold fetch of every shard", "s3_cold_fetch_tokens_per_s"),
                       ("S3, ranged reads (cache=False)", "s3_ranged_tokens_per_s")):
        print(f"{label:36}{loader[key]:16,.0f}{loader[key] / loader['local_tokens_per_s']:10.3f}")
    ok = loader["s3_cached_tokens_per_s"] >= 20e6
    print(f"goal >= 20,000,000 tokens/s from S3 with the cache: {'met' if ok else 'NOT met'}")
    print(f"\ntokenize ({tok['clips']} clips x {tok['clip_seconds']} s, small random Mimi"
          + (f"; S3 audio reads wait a simulated {args.latency_ms:g} ms each)" if args.latency_ms else ")"))
    print(f"{'':44}{'audio h/s':>16}{'vs local':>10}")
    print(f"{'local input and output':44}{tok['local_audio_h_per_s']:16.4f}{1.0:10.3f}")
    for label, key in ((f"S3 input and output ({TokenizeConfig.read_threads} reads at once)", "s3"),
                       ("S3, one file at a time (read_threads=1)", "s3_serial")):
        print(f"{label:44}{tok[key + '_audio_h_per_s']:16.4f}"
              f"{tok[key + '_audio_h_per_s'] / tok['local_audio_h_per_s']:10.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
