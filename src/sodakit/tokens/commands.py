"""`sodakit tokenizer`: train the offline text BPE, convert Llama-3's tokenizer.model, export a SODA-style
tokenizer (a complete Hugging Face directory, as the released one behaves), encode/decode strings."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from sodakit.fileio import atomic_write_text
from sodakit.tokens.llama3 import llama3_tokenizer
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import train_bpe


def _texts(paths: list[str], field: str) -> Iterator[str]:
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer: input {path} does not exist")
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    row = json.loads(line)
                    if field not in row:
                        raise ValueError(f"{path}:{n}: no field {field!r}")
                    yield row[field]
                else:
                    yield line.rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sodakit tokenizer", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train a byte-level BPE on .txt (one text per line) or .jsonl files")
    tr.add_argument("inputs", nargs="+")
    tr.add_argument("--output", required=True, help="directory to write (SODA-style tokenizer.json + layout)")
    tr.add_argument("--vocab-size", type=int, default=4096, help="text ids incl. BOS/EOS (default 4096: CPU-sized)")
    tr.add_argument("--field", default="text", help="JSONL field holding the text")
    tr.add_argument("--num-codebooks", type=int, default=8)
    tr.add_argument("--codebook-size", type=int, default=2048)
    ex = sub.add_parser("export", help="write a SODA-style tokenizer (markers + audio added tokens) for a text BPE")
    ex.add_argument("tokenizer", help="text tokenizer.json (e.g. Llama-3) or directory")
    ex.add_argument("--output", required=True)
    ex.add_argument("--num-codebooks", type=int, default=8)
    ex.add_argument("--codebook-size", type=int, default=2048)
    tk = sub.add_parser("from-tiktoken", help="convert Meta's Llama-3 tokenizer.model to a tokenizer.json")
    tk.add_argument("model", help="tokenizer.model (tiktoken format)")
    tk.add_argument("--output", required=True, help="directory to write tokenizer.json into")
    enc = sub.add_parser("encode", help="print the ids of a SODA string")
    enc.add_argument("tokenizer")
    enc.add_argument("text")
    enc.add_argument("--no-bos", action="store_true")
    dec = sub.add_parser("decode", help="print the SODA string of comma-separated ids")
    dec.add_argument("tokenizer")
    dec.add_argument("ids")
    args = parser.parse_args(argv)

    if args.cmd == "train":
        text = train_bpe(_texts(args.inputs, args.field), vocab_size=args.vocab_size)
        tok = SodaTokenizer(text).with_audio_layout(args.num_codebooks, args.codebook_size)
        tok.save_pretrained(args.output)
        print(f"tokenizer: wrote {args.output} ({text.vocab_size} text ids, vocab size {tok.vocab.size}, "
              f"fingerprint {tok.vocab.fingerprint})")
    elif args.cmd == "export":
        tok = SodaTokenizer.from_pretrained(args.tokenizer).with_audio_layout(args.num_codebooks, args.codebook_size)
        tok.save_pretrained(args.output)
        print(f"tokenizer: wrote {args.output} (vocab size {tok.vocab.size}, fingerprint {tok.vocab.fingerprint})")
    elif args.cmd == "from-tiktoken":
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "tokenizer.json", llama3_tokenizer(args.model).to_str())
        print(f"tokenizer: wrote {out / 'tokenizer.json'} (Llama-3, 128,256 ids); `sodakit tokenizer export "
              f"{out} --output DIR` makes the SODA tokenizer")
    elif args.cmd == "encode":
        tok = SodaTokenizer.from_pretrained(args.tokenizer)
        print(",".join(map(str, tok.encode(args.text, add_bos=not args.no_bos).tolist())))
    else:
        tok = SodaTokenizer.from_pretrained(args.tokenizer)
        print(tok.decode([int(x) for x in args.ids.split(",") if x.strip()]))
    return 0
