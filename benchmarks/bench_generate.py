"""Decoding speed: sodakit.generate vs `transformers` `generate` on the same weights, CPU, greedy.

Goal: >= 1.5x transformers' tokens/s with identical greedy output. For each shape (tiny and the 135M
SODA shape, both with the 144,644-id SODA vocabulary, random weights exported to a Hugging Face
Qwen3ForCausalLM directory with sodakit.model.hf) and batch size (1 and 8, ragged left-padded prompts):

- free:  plain greedy decoding from text prompts, no constraints on either side (the raw LM);
- text:  ASR-style decoding inside a text span (prompt ends with <|audio_end|><|text_start|>);
- audio: TTS-style decoding inside an audio span (prompt ends with <|audio_start|>).
For text and audio both sides decode under the modality constraints: transformers gets them as a
LogitsProcessor (the state machine of sodakit.generate.constraints, advanced by one token per call), so
both decode the same distribution and must agree token for token. Real-time factor = audio seconds
produced (8 codebooks x 12.5 Hz = 100 tokens/s) per wall-clock second.

Our weights sit in transparent huge pages (sodakit.generate.memory, as SodaGenerator does on a CPU;
--no-hugepages turns that off); transformers keeps its loader's memory. tokens/s counts new tokens (batch x new tokens) over the whole call, prefill included. Each number is
the best of --repeats runs after one warm-up call, ours and transformers alternating. The CPU is shared with other processes: compare
ratios within one run.

    python benchmarks/bench_generate.py [--shapes tiny,135M] [--batches 1,8] [--new-tokens 129]
    python benchmarks/bench_generate.py --silence CODEC_DIR   # silence detectors on real speech
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sodakit.generate.constraints import ModalityConstraints
from sodakit.generate.decoding import GenerationConfig, generate
from sodakit.generate.memory import weights_to_hugepages
from sodakit.model import hf
from sodakit.model.config import preset
from sodakit.model.qwen3 import build_model
from sodakit.tokens.vocab import Vocab

AUDIO_TOKENS_PER_SECOND = 100.0  # 8 codebooks x 12.5 Hz


def prompts_for(kind: str, batch: int, vocab: Vocab, seed: int = 0) -> list[list[int]]:
    """Ragged prompts: text ids (free), an ASR prompt (text), or a TTS prompt with a voice span (audio)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(batch):
        n = 16 + (b * 5) % 16
        if kind == "free":
            out.append([vocab.bos_id, *rng.integers(0, vocab.text_vocab_size, n - 1).tolist()])
        elif kind == "text":
            codes = rng.integers(0, vocab.codebook_size, (vocab.num_codebooks, 1 + b % 3))
            out.append([vocab.bos_id, vocab.audio_start_id, *vocab.codes_to_ids(codes).tolist(), vocab.audio_end_id,
                        vocab.text_start_id])
        else:
            text = rng.integers(0, vocab.text_vocab_size, 3 + b % 4).tolist()
            codes = rng.integers(0, vocab.codebook_size, (vocab.num_codebooks, 2))
            out.append([vocab.bos_id, vocab.text_start_id, *text, vocab.text_end_id, vocab.audio_start_id,
                        *vocab.codes_to_ids(codes).tolist(), vocab.audio_end_id, vocab.text_start_id, *text,
                        vocab.text_end_id, vocab.audio_start_id])
    return out


class ConstraintProcessor:
    """The sodakit decoding constraints as a transformers LogitsProcessor (incremental state)."""

    def __init__(self, vocab: Vocab, model_vocab: int, prompts: list[list[int]]) -> None:
        self.c = ModalityConstraints(vocab, model_vocab)
        self.state = self.c.initial_state(prompts)
        self.seen = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.seen is not None:
            self.state = self.c.advance(self.state, input_ids[:, -1])
        self.seen = input_ids.shape[1]
        return scores.masked_fill(~self.c.allowed(self.state), float("-inf"))


def run_ours(model, prompts, vocab, n, constrain):
    cfg = GenerationConfig(max_new_tokens=n, constrain=constrain, close_audio_at_budget=False)
    t = time.perf_counter()
    out = generate(model, prompts, vocab, cfg)
    return time.perf_counter() - t, [g.tokens for g in out]


def run_hf(model, prompts, vocab, n, constrain):
    from transformers import LogitsProcessorList

    t_len = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), t_len), vocab.eos_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, t_len - len(p) :] = torch.tensor(p)
        mask[i, t_len - len(p) :] = 1
    procs = LogitsProcessorList([ConstraintProcessor(vocab, model.config.vocab_size, prompts)]) if constrain else None
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n, min_new_tokens=n,
            eos_token_id=None, pad_token_id=vocab.eos_id, logits_processor=procs,
        )
    return time.perf_counter() - t, out[:, t_len:].tolist()


def best_interleaved(fn_a, fn_b, repeats):
    """Best time of each of two callables, run alternately (a shared CPU's load drifts)."""
    ta, tb, ra, rb = [], [], None, None
    for _ in range(repeats):
        dt, ra = fn_a()
        ta.append(dt)
        dt, rb = fn_b()
        tb.append(dt)
    return min(ta), ra, min(tb), rb


def bench(shapes, batches, new_tokens, repeats, kinds, hugepages=True):
    from transformers import Qwen3ForCausalLM

    vocab = Vocab.soda()
    rows = []
    for shape in shapes:
        cfg = preset(shape, vocab_size=vocab.size)
        ours = build_model(cfg, seed=0).eval()
        if hugepages:
            weights_to_hugepages(ours)  # what SodaGenerator.from_bundle does on a CPU
        with tempfile.TemporaryDirectory() as tmp:
            path = hf.save_hf_dir(Path(tmp) / "hf", cfg, ours.state_dict())
            theirs = Qwen3ForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        n = new_tokens[shape]
        for kind in kinds:
            for b in batches:
                prompts = prompts_for(kind, b, vocab)
                constrain = kind != "free"
                run_ours(ours, prompts, vocab, 4, constrain)  # warm-up
                run_hf(theirs, prompts, vocab, 4, constrain)
                t_ours, tok_ours, t_hf, tok_hf = best_interleaved(
                    lambda: run_ours(ours, prompts, vocab, n, constrain),  # noqa: B023
                    lambda: run_hf(theirs, prompts, vocab, n, constrain),  # noqa: B023
                    repeats,
                )
                total = b * n
                row = {
                    "shape": shape, "kind": kind, "batch": b, "new_tokens": n,
                    "ours_tok_s": total / t_ours, "hf_tok_s": total / t_hf, "speedup": t_hf / t_ours,
                    "identical": tok_ours == tok_hf,
                }
                if kind == "audio":
                    row["ours_rtf"] = total / AUDIO_TOKENS_PER_SECOND / t_ours
                    row["hf_rtf"] = total / AUDIO_TOKENS_PER_SECOND / t_hf
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def silence_report(codec_spec: str) -> None:
    """Measure the silence detectors on real speech (LibriSpeech-mini, with its pauses) followed by 2 s of
    digital silence and 2 s of -60 dBFS noise, through the codec given (e.g. a fitted offline codec)."""
    from sodakit.audio.io import load_audio
    from sodakit.audio.registry import load_codec
    from sodakit.generate.silence import (
        CodeSetSilence,
        EnergySilence,
        RepeatSilence,
        calibrate_silence_codes,
        measure_detectors,
    )

    root = os.environ.get("SODAKIT_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
    data = Path(root) / "librispeech-mini"
    files = sorted(data.glob("*.wav")) + sorted(data.glob("*.flac"))
    if not files:
        raise SystemExit(f"no audio under {data}")
    codec = load_codec(codec_spec, device="cpu")
    sr = codec.sample_rate
    rng = np.random.default_rng(0)
    waves, speech = [], []
    for f in files:
        w = load_audio(f, sr)
        pad = np.concatenate([np.zeros(2 * sr, np.float32), (rng.standard_normal(2 * sr) * 1e-3).astype(np.float32)])
        waves.append(np.concatenate([w, pad]))
        speech.append(len(w) / sr)
    # Calibrate on half, measure on the other half (and on all, for reference).
    half = len(waves) // 2
    det = calibrate_silence_codes(codec, waves[:half], sr)
    synth_only = calibrate_silence_codes(codec, [], sr)
    detectors = [det, CodeSetSilence(synth_only.codes, name="codes-synthetic-only"), RepeatSilence(max_distinct=2),
                 RepeatSilence(max_distinct=1), EnergySilence(codec)]
    print(json.dumps({"codec": codec.name, "codec_hash": codec.config_hash, "files": [f.name for f in files],
                      "calibrated_on": [f.name for f in files[:half]], "silence_codes": len(det.codes)}))
    for row in measure_detectors(codec, detectors, waves[half:], sr, speech[half:]):
        row["detector"] = {k: v for k, v in row["detector"].items() if k not in ("codes", "calibration")}
        print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny,135M")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--kinds", default="free,text,audio")
    ap.add_argument("--new-tokens", default="tiny=129,135M=33", help="new tokens per shape")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the CPU is shared; more threads oversubscribe it)")
    ap.add_argument("--no-hugepages", action="store_true", help="keep our weights in ordinary pages")
    ap.add_argument("--silence", default=None, metavar="CODEC", help="measure the silence detectors with this codec instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.silence:
        silence_report(args.silence)
        return
    new_tokens = dict(kv.split("=") for kv in args.new_tokens.split(","))
    shapes = args.shapes.split(",")
    rows = bench(shapes, [int(b) for b in args.batches.split(",")], {s: int(new_tokens[s]) for s in shapes},
                 args.repeats, args.kinds.split(","), hugepages=not args.no_hugepages)
    print()
    print(f"{'shape':<6} {'kind':<6} {'batch':>5} {'ours tok/s':>11} {'hf tok/s':>9} {'speedup':>8} {'RTF ours/hf':>12}  identical")
    for r in rows:
        rtf = f"{r['ours_rtf']:.2f}/{r['hf_rtf']:.2f}" if "ours_rtf" in r else "-"
        print(f"{r['shape']:<6} {r['kind']:<6} {r['batch']:>5} {r['ours_tok_s']:>11.1f} {r['hf_tok_s']:>9.1f} "
              f"{r['speedup']:>7.2f}x {rtf:>12}  {r['identical']}")


if __name__ == "__main__":
    main()
