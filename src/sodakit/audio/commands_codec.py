"""`sodakit codec fit|encode|decode|info`: fit the offline codec; encode/decode single files with any codec."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sodakit import storage
from sodakit.audio.codec import CodecError
from sodakit.audio.io import AudioError, load_audio, save_wav
from sodakit.audio.offline_codec import OfflineCodec, OfflineCodecConfig
from sodakit.audio.registry import load_codec
from sodakit.audio.sources import AUDIO_EXTENSIONS, detect_kind, open_source
from sodakit.config import atomic_write_bytes, describe, load_config
from sodakit.progress import Progress

EPILOG = """examples:
  sodakit codec fit LibriSpeech/train-clean-100 runs/codec max_hours=1
  sodakit codec fit my_audio/ runs/codec num_codebooks=4 codebook_size=1024
  sodakit codec encode runs/codec speech.wav speech.codes.npy
  sodakit codec decode runs/codec speech.codes.npy speech.resynth.wav
  sodakit codec encode kyutai/mimi speech.wav speech.mimi.npy --device cuda
  sodakit codec info ./mimi
"""


def _fit_audio(source: str, sample_rate: int, max_hours: float, log) -> Iterator[np.ndarray]:
    """Mono waveforms of every readable file of an audio folder (any layout), manifest or HF dataset, local
    or at a URL (transcripts are not needed)."""
    if storage.isdir(source) and detect_kind(source) in ("folder", "librispeech"):
        loaders = [(p, lambda p=p: load_audio(p, sample_rate)) for p in storage.list_files(source, AUDIO_EXTENSIONS)]
    else:
        items, _ = open_source(source, require_text=False)
        loaders = [(it.path if it.row is None else f"{it.path}[{it.row}]", lambda it=it: it.load(sample_rate)) for it in items]
    if not loaders:
        raise CodecError(f"{source}: no audio found to fit on")
    budget = max_hours * 3600 * sample_rate if max_hours > 0 else float("inf")
    used = 0
    skipped = 0
    # Each file is read, then its features are computed by the fit while this generator waits: the count
    # covers both. With max_hours the files are not all read, so there is no total to show an ETA against.
    with Progress("codec fit: reading audio", total=None if max_hours > 0 else len(loaders), unit="file") as bar:
        for where, load in loaders:
            if used >= budget:
                break
            try:
                wav = load()
            except AudioError as e:
                skipped += 1
                bar.write(f"skipping {where}: {e.reason}: {e.detail}")
                bar.update(1)
                continue
            used += len(wav)
            yield wav
            bar.update(1, hours=round(used / sample_rate / 3600, 3))
    log(f"read {used / sample_rate / 3600:.3f} h of audio ({skipped} unreadable files skipped)")


def cmd_fit(args: argparse.Namespace) -> int:
    overrides = [o for o in args.overrides if not o.startswith("max_hours=")]
    max_hours = next((float(o.split("=", 1)[1]) for o in args.overrides if o.startswith("max_hours=")), 0.0)
    cfg = load_config(OfflineCodecConfig, args.config, overrides)
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
    t = time.perf_counter()
    codec = OfflineCodec.fit(_fit_audio(storage.as_location(args.input), cfg.sample_rate, max_hours, log), cfg, log=log)
    codec.save(args.output)
    print(json.dumps({"output": str(args.output), "config_hash": codec.config_hash, **codec.fit_summary,
                      "wall_seconds": round(time.perf_counter() - t, 1)}, indent=2))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    codec = load_codec(args.codec, device=args.device, dtype=args.dtype)
    wav = load_audio(args.audio, codec.sample_rate)
    codes, frames = codec.encode([wav])
    out = codes[0, :, : int(frames[0])].numpy().astype(np.int64)
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    atomic_write_bytes(Path(args.codes), buf.getvalue())
    print(json.dumps({"codes": str(args.codes), "shape": list(out.shape), "seconds": len(wav) / codec.sample_rate,
                      "codec": codec.name, "config_hash": codec.config_hash}))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    codec = load_codec(args.codec, device=args.device, dtype=args.dtype)
    try:
        codes = np.load(args.codes, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CodecError(f"{args.codes}: not a .npy array of codes ({e})") from e
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise CodecError(f"{args.codes}: expected integer codes [K, F], got {codes.dtype} {codes.shape}")
    wav = codec.decode(codes.astype(np.int64))[0]
    save_wav(args.audio, wav, codec.sample_rate)
    print(json.dumps({"audio": str(args.audio), "seconds": len(wav) / codec.sample_rate, "sample_rate": codec.sample_rate}))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    codec = load_codec(args.codec, device=args.device, dtype=args.dtype)
    info = asdict(codec.info())
    info["bitrate_bps"] = codec.bitrate()
    if isinstance(codec, OfflineCodec):
        info["fit"] = codec.fit_summary
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sodakit codec", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit the offline codec on audio (folder, manifest or HF dataset)",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="config fields (key=value):\n" + "\n".join(describe(OfflineCodecConfig))
                         + "\n  max_hours: float = 0 (all)")
    fit.add_argument("input", help="audio folder (any layout), manifest .jsonl/.csv, or HF dataset directory")
    fit.add_argument("output", help="codec directory to write")
    fit.add_argument("overrides", nargs="*", help="key=value config overrides (and max_hours=H)")
    fit.add_argument("--config", help="YAML with OfflineCodecConfig fields")
    fit.set_defaults(fn=cmd_fit)
    for name, fn, help_text in (("encode", cmd_encode, "audio file -> codes .npy [K, F]"),
                                ("decode", cmd_decode, "codes .npy [K, F] -> wav"),
                                ("info", cmd_info, "print the codec's info as JSON")):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("codec", help="offline codec directory, local Mimi directory, or hub id (kyutai/mimi)")
        if name == "encode":
            sp.add_argument("audio")
            sp.add_argument("codes")
        elif name == "decode":
            sp.add_argument("codes")
            sp.add_argument("audio")
        sp.add_argument("--device", default="auto")
        sp.add_argument("--dtype", default="float32")
        sp.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))
