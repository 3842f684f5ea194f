"""`sodakit import-codes yodas2-mm INPUT... --output DIR --codec SPEC`: already-encoded data -> segment shards.

The SODA authors released YODAS2 as subshard JSON files holding transcripts and Mimi codes
(`sodakit.data.yodas2_mm`). This writes them as a segment directory, the form `sodakit tokenize` produces,
so `sodakit pack` builds the text-first / audio-first documents from them. `--codec` names the codec the
codes came from (a Mimi directory or hub id: its config hash is recorded, as for encoded data), or
`--codec-from` copies the codec record of an existing segment directory.
"""

from __future__ import annotations

import argparse
import json

from sodakit.audio.registry import load_codec
from sodakit.data.segments import SegmentManifest
from sodakit.data.yodas2_mm import import_yodas2_mm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sodakit import-codes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=("yodas2-mm",))
    p.add_argument("inputs", nargs="+", help="subshard .json files or folders of them")
    p.add_argument("--output", required=True, help="new segment directory")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--codec", help="the codec the codes came from (Mimi directory or hub id, e.g. kyutai/mimi)")
    g.add_argument("--codec-from", help="copy the codec record of this segment directory")
    p.add_argument("--num-codebooks", type=int, default=8, help="codebooks kept (SODA: the first 8)")
    args = p.parse_args(argv)
    if args.codec_from:
        codec = SegmentManifest.load(args.codec_from).codec
    else:
        codec = load_codec(args.codec, device="cpu", num_codebooks=args.num_codebooks).info()
    summary = import_yodas2_mm(args.inputs, args.output, codec, num_codebooks=args.num_codebooks)
    print(json.dumps(summary, indent=2))
    return 0
