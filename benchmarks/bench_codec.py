"""Codec benchmark: speed of Mimi and of the offline codec, and the offline codec's quality.

    python benchmarks/bench_codec.py                     # CPU: Mimi + offline codec, speed and WER
    python benchmarks/bench_codec.py --device cuda       # the same table on a GPU
    python benchmarks/bench_codec.py --skip-wer --skip-fit --codec DIR   # speed of an already fitted codec
    python benchmarks/bench_codec.py --device cuda --skip-fit --synthetic-clips   # Mimi speed only, no flite

Speed: encode throughput (audio seconds per wall second) batched versus one clip at a time, and decode
throughput, for Mimi (random-init full-size config: same shapes and FLOPs as kyutai/mimi, so the same
speed) and for the offline codec, on the same clips in the same run.

Quality: the offline codec is fitted on an offline TTS corpus (HellaSwag contexts read by flite/espeak-ng
voices *other than* the evaluation voices), then the PocketSphinx ASR judge transcribes (a) the real
LibriSpeech clips of ../shared/data/librispeech-mini (real speakers never seen in the fit) and (b) Harvard
sentences read by the unseen flite voices slt and rms, original versus resynthesised. Target: resynthesis
WER within 20 points of the original's. Also reports bitrate and fit time.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sodakit.audio.codec import Codec
from sodakit.audio.io import load_audio, save_wav
from sodakit.audio.offline_codec import OfflineCodec, OfflineCodecConfig
from sodakit.audio.registry import load_codec
from sodakit.audio.synth import synthesize
from sodakit.config import load_config, to_dict

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SODAKIT_DATA", REPO.parent / "shared" / "data"))
# Fit voices never include the evaluation voices (flite slt and rms).
FIT_VOICES = ["flite:kal16", "flite:awb", "espeak:en-us+m3", "espeak:en-gb+f3", "espeak:en-us+klatt",
              "espeak:en-us+f2", "espeak:en-gb-x-rp+m5"]
EVAL_VOICES = ["flite:slt", "flite:rms"]
# IEEE/Harvard phonetically balanced sentences (list 1 and 2), public domain.
HARVARD = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def speed(codec: Codec, clips: list[np.ndarray], repeats: int) -> dict:
    """Throughputs in audio seconds per wall second; clips are at the codec's sample rate."""
    seconds = sum(len(c) for c in clips) / codec.sample_rate
    codec.encode(clips)  # warm-up (allocations, lazy init, cuDNN autotune) for both shapes
    codec.encode(clips[:1])
    batched = timed(lambda: codec.encode(clips), repeats)
    single = timed(lambda: [codec.encode([c]) for c in clips], repeats)
    codes, frames = codec.encode(clips)
    decode = timed(lambda: codec.decode(codes, frames), repeats)
    return {
        "audio_s": round(seconds, 1),
        "encode_batched_x": seconds / batched,
        "encode_single_x": seconds / single,
        "batch_speedup": single / batched,
        "decode_batched_x": seconds / decode,
    }


def fit_corpus(cache: Path, hours: float) -> list[Path]:
    """Synthesise (once, cached) about `hours` of speech from HellaSwag contexts with the fit voices."""
    src = SHARED / "hellaswag" / "hellaswag_val_full.txt.bz2"
    if not src.is_file():
        raise SystemExit(f"need {src} for the fit corpus text (set SODAKIT_DATA to a folder holding hellaswag/)")
    out = cache / "corpus"
    done = out / f"DONE-{hours}"
    if done.is_file():
        return sorted(out.glob("*.wav"))
    lines = bz2.open(src, "rt", encoding="utf-8").read().splitlines()
    texts = [ln.split(":", 1)[1].strip() for ln in lines[0::6] if ":" in ln]
    texts = [t for t in texts if 60 < len(t) < 300]
    rng = random.Random(0)
    rng.shuffle(texts)
    total, files = 0.0, []
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        if total >= hours * 3600:
            break
        wav = synthesize(text, FIT_VOICES[i % len(FIT_VOICES)], 16000, speed=rng.uniform(0.9, 1.1))
        files.append(save_wav(out / f"{i:05d}.wav", wav, 16000))
        total += len(wav) / 16000
    log(f"fit corpus: {len(files)} utterances, {total / 3600:.2f} h synthesised in {time.perf_counter() - t0:.0f}s")
    done.write_text(json.dumps({"hours": total / 3600, "files": len(files)}))
    return files


def eval_sets(max_clips: int | None = None) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """The WER sets; `max_clips` keeps only the first clips of each (a quick check, not a measurement)."""
    sets = {}
    ls = SHARED / "librispeech-mini"
    if (ls / "trans.txt").is_file():
        refs = dict(line.rstrip("\n").split("\t", 1) for line in (ls / "trans.txt").read_text().splitlines() if line)
        wavs, texts = [], []
        for utt in sorted(refs)[:max_clips]:
            path = next(p for p in ls.iterdir() if p.stem == utt)
            wavs.append(load_audio(path, 16000))
            texts.append(refs[utt])
        sets[f"librispeech (real, {len(wavs)} clips)"] = (wavs, texts)
    else:
        log(f"no {ls}: skipping the real-speech WER")
    pairs = [(s, v) for v in EVAL_VOICES for s in HARVARD][:max_clips]
    wavs = [synthesize(s, v, 16000) for s, v in pairs]
    sets[f"flite {'+'.join(v.split(':')[1] for v in EVAL_VOICES)} (Harvard, unseen voices)"] = (wavs, [s for s, _ in pairs])
    return sets


def synthetic_clips(n: int, seconds: float, sr: int = 24000, seed: int = 0) -> list[np.ndarray]:
    """Speech-rate modulated noise (no TTS binary needed). Mimi's speed does not depend on the content."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return [(0.1 * rng.standard_normal(len(t)) * 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + i))).astype(np.float32)
            for i in range(n)]


def quality(codec: OfflineCodec, cache: Path, max_clips: int | None = None) -> list[dict]:
    from sodakit.eval.judges.asr_pocketsphinx import PocketSphinxASR
    from sodakit.eval.metrics import wer

    asr = PocketSphinxASR()
    rows = []
    for name, (wavs, refs) in eval_sets(max_clips).items():
        codes = codec.encode_audio(wavs, 16000)
        resyn = [codec.decode(c)[0] for c in codes]
        sr = codec.sample_rate
        for i, w in enumerate(resyn[:2]):
            save_wav(cache / "samples" / f"{name.split()[0]}-{i}.wav", w, sr)
        w_orig = wer(refs, asr.transcribe(wavs, 16000))
        w_resyn = wer(refs, asr.transcribe(resyn, sr))
        rows.append({"set": name, "clips": len(wavs), "audio_s": round(sum(len(w) for w in wavs) / 16000, 1),
                     "wer_original": w_orig, "wer_resynth": w_resyn, "delta_points": 100 * (w_resyn - w_orig)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (Mimi; the offline codec runs on CPU)")
    p.add_argument("--dtype", default="float32", help="Mimi dtype: float32 or bfloat16 (float16 on CUDA only)")
    p.add_argument("--fit-hours", type=float, default=1.0, help="hours of TTS speech to fit the offline codec on")
    p.add_argument("--codec", type=Path, help="an already fitted offline codec directory (skips the fit)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="offline codec config overrides for the fit, e.g. fit_warps=[0.9,1.1] codebook_size=1024")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "sodakit-bench-codec")
    p.add_argument("--clips", type=int, default=8, help="clips per speed test")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--skip-mimi", action="store_true")
    p.add_argument("--skip-wer", action="store_true")
    p.add_argument("--skip-fit", action="store_true", help="no offline codec at all unless --codec is given")
    p.add_argument("--synthetic-clips", action="store_true",
                   help="time on modulated noise instead of flite TTS sentences (no flite needed; fine for Mimi, "
                        "whose speed does not depend on the content, not for the offline codec)")
    p.add_argument("--eval-clips", type=int, default=None, metavar="N",
                   help="WER on only the first N clips of each set (a quick check of the script; default: all)")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    args.cache.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": args.device, "torch_threads": torch.get_num_threads(), "speed": {}}
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)

    # Speech-like test clips: TTS sentences concatenated to clip_seconds (content matters for the offline codec).
    results["clips"] = "synthetic noise" if args.synthetic_clips else "flite:slt Harvard sentences"
    if args.synthetic_clips:
        clips24 = synthetic_clips(args.clips, args.clip_seconds)
    else:
        base = np.concatenate([synthesize(s, "flite:slt", 24000) for s in HARVARD])
        n = int(args.clip_seconds * 24000)
        clips24 = [np.roll(base, i * 7919)[:n] for i in range(args.clips)]

    if not args.skip_mimi:
        from transformers import MimiConfig, MimiModel

        from sodakit.audio.mimi import MimiCodec

        mimi = MimiCodec(MimiModel(MimiConfig()), num_codebooks=8, device=args.device, dtype=args.dtype,
                         source="random-init full-size")
        log("timing Mimi ...")
        results["speed"][f"mimi (random-init, full size, {args.dtype})"] = speed(mimi, clips24, args.repeats)
        del mimi

    codec = None
    if args.codec:
        codec = load_codec(args.codec)
    elif not args.skip_fit:
        files = fit_corpus(args.cache, args.fit_hours)
        log(f"fitting the offline codec on {len(files)} files ...")
        t = time.perf_counter()
        codec_cfg = load_config(OfflineCodecConfig, None, args.set)
        codec = OfflineCodec.fit((load_audio(f, 16000) for f in files), codec_cfg, log=log)
        results["offline_config"] = to_dict(codec_cfg)
        results["offline_fit"] = {**codec.fit_summary, "wall_s": round(time.perf_counter() - t, 1)}
        codec.save(args.cache / "offline-codec")
    if codec is not None:
        clips16 = [load_audio_array(c, 24000, codec.sample_rate) for c in clips24]
        log("timing the offline codec ...")
        results["speed"]["offline codec (CPU)"] = speed(codec, clips16, args.repeats)
        results["offline_bitrate_bps"] = codec.bitrate()
        if not args.skip_wer:
            log("ASR judge on original and resynthesised audio ...")
            results["offline_wer"] = quality(codec, args.cache, args.eval_clips)

    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def load_audio_array(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    from sodakit.audio.io import resample

    return resample(wav, sr, target)


def print_table(r: dict) -> None:
    dev = r["device"] + (f" ({r['gpu']})" if "gpu" in r else f", {r['torch_threads']} threads")
    print(f"\n## Codec speed on {dev}: audio seconds per wall second (higher is better)\n")
    print("| codec | audio s | encode batched | encode one-by-one | batched / one-by-one | decode batched |")
    print("|---|---|---|---|---|---|")
    for name, s in r["speed"].items():
        print(f"| {name} | {s['audio_s']} | {s['encode_batched_x']:.1f}x | {s['encode_single_x']:.1f}x "
              f"| {s['batch_speedup']:.2f} | {s['decode_batched_x']:.1f}x |")
    speeds = r["speed"]
    if len(speeds) == 2:
        (na, a), (nb, b) = speeds.items()
        print(f"\nencode ratio {nb} / {na}: {b['encode_batched_x'] / a['encode_batched_x']:.2f} (batched)")
    if "offline_fit" in r:
        f = r["offline_fit"]
        per_h = 60 * max(f["audio_hours"], 1e-9)
        print(f"\noffline codec fit: {f['audio_hours']} h of speech x {f.get('fit_copies', 1)} (VTLP copies), "
              f"{f['frames']} frames: {f['wall_s']} s wall ({f['wall_s'] / per_h:.1f} min per hour of speech), "
              f"{f.get('cpu_seconds', float('nan'))} s CPU ({f.get('cpu_seconds', float('nan')) / per_h:.1f} CPU-min per hour)")
    if "offline_bitrate_bps" in r:
        print(f"offline codec bitrate: {r['offline_bitrate_bps']:.0f} bit/s (Mimi 8 codebooks: 1100 bit/s)")
    if "offline_wer" in r:
        print("\n## Offline codec quality: PocketSphinx WER, original vs resynthesised (target: within 20 points)\n")
        print("| set | clips | audio s | WER original | WER resynth | delta (points) |")
        print("|---|---|---|---|---|---|")
        for row in r["offline_wer"]:
            print(f"| {row['set']} | {row['clips']} | {row['audio_s']} | {100 * row['wer_original']:.1f}% "
                  f"| {100 * row['wer_resynth']:.1f}% | {row['delta_points']:+.1f} |")


if __name__ == "__main__":
    sys.exit(main())
