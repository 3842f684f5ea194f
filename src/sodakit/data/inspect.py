"""`sodakit inspect DIR`: a packed dataset's metadata, integrity check and a readable sample window."""

from __future__ import annotations

import argparse
import json

import numpy as np

from sodakit.data.packed import PackedDataset
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import Vocab


def describe_window(ids: np.ndarray, vocab: Vocab, decode_text=None) -> str:
    """Ids as text with markers by name and each audio run summarised as <audio: F frames>."""
    names = {i: m for m, i in vocab.marker_ids.items()}
    names[vocab.bos_id], names[vocab.eos_id] = "<BOS>", "<EOS>"
    out, text_run, audio_run = [], [], 0

    def flush():
        nonlocal text_run, audio_run
        if text_run:
            out.append(decode_text(text_run) if decode_text else f"<text: {len(text_run)} tokens>")
            text_run = []
        if audio_run:
            out.append(f"<audio: {audio_run / vocab.num_codebooks:g} frames>")
            audio_run = 0

    for i in ids.tolist():
        if i in names:
            flush()
            out.append(names[i])
        elif vocab.is_audio(np.int64(i)):
            if text_run:
                flush()
            audio_run += 1
        else:
            if audio_run:
                flush()
            text_run.append(i)
    flush()
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sodakit inspect", description=__doc__)
    parser.add_argument("path", help="packed dataset directory")
    parser.add_argument("--verify", action="store_true", help="check every shard's sha256")
    parser.add_argument("--show", type=int, default=1, help="documents to print from the start")
    parser.add_argument("--tokenizer", help="tokenizer to decode text runs with")
    args = parser.parse_args(argv)
    ds = PackedDataset(args.path, verify_checksums=args.verify)
    meta = ds.metadata
    summary = {k: meta[k] for k in ("num_documents", "num_tokens", "counts", "codec", "tokenizer")}
    summary["vocab"] = {k: meta["vocab"][k] for k in ("size", "fingerprint", "num_codebooks", "codebook_size")}
    summary["shards"] = len(meta["shards"])
    summary["checksums"] = "verified" if args.verify else "not checked (--verify)"
    print(json.dumps(summary, indent=2))
    decode = None
    if args.tokenizer:
        decode = SodaTokenizer.from_pretrained(args.tokenizer).text.decode
    offsets = ds.documents(0)
    ends = [*offsets[1:].tolist(), meta["shards"][0]["num_tokens"]]
    for start, end in list(zip(offsets.tolist(), ends))[: args.show]:
        print(describe_window(ds.read(start, end - start), ds.vocab, decode))
    return 0
