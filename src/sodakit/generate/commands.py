"""`sodakit generate asr|tts|continue|s2st`: prompting a trained model, WAV and text in and out.

    sodakit generate asr      --model RUN a.wav b.flac [--output transcripts.jsonl]
    sodakit generate tts      --model RUN --text "Hello there." --output hello.wav
                              [--voice-audio ref.wav --voice-text "Transcript of ref."]
    sodakit generate continue --model RUN prompt.wav --seconds 4 --output cont.wav [--include-prompt]
    sodakit generate s2st     --model FT_RUN src.wav --source-lang fr --output out.wav
    sodakit generate s2st     --model FT_RUN --manifest test.tsv --output-dir eval/ [--asr-judge pocketsphinx]

The codec is the one recorded in the checkpoint unless --codec names one (it must have the same config
hash, or pass --allow-codec-mismatch). Output audio is written at the codec's sample rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sodakit.generate.sampling import SamplingConfig
from sodakit.generate.tasks import (
    ASR_MAX_NEW_TOKENS,
    S2ST_MAX_TEXT_TOKENS,
    TTS_MAX_NEW_TOKENS,
    TTS_SAMPLING,
    SodaGenerator,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _common(p: argparse.ArgumentParser, greedy: bool) -> None:
    p.add_argument("--model", required=True, help="checkpoint, run directory (newest checkpoint) or HF Qwen3 directory")
    p.add_argument("--codec", default=None, help="codec directory or hub id (default: the one recorded in the model)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the checkpoint's)")
    p.add_argument("--allow-codec-mismatch", action="store_true", help="use a codec whose hash differs from the recorded one")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="model weights dtype (no float16 on CPU)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts decoded together")
    default_t = 0.0 if greedy else TTS_SAMPLING.temperature
    default_p = 1.0 if greedy else TTS_SAMPLING.top_p
    p.add_argument("--temperature", type=float, default=default_t, help=f"0 = greedy (default {default_t})")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely ids (0 = off)")
    p.add_argument("--top-p", type=float, default=default_p, help=f"nucleus mass (default {default_p})")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def _audio_guards(p: argparse.ArgumentParser, max_new: int) -> None:
    p.add_argument("--max-new-tokens", type=int, default=max_new, help=f"token budget per item (default {max_new})")
    p.add_argument("--max-seconds", type=float, default=None, help="duration cap of the generated audio")
    p.add_argument("--silence-stop-seconds", type=float, default=None, help="stop after this much trailing silence")
    p.add_argument("--silence-detector", default="codes", choices=["codes", "repeat", "energy"],
                   help="what counts as silence (see README-generate): codes (default), repeat, energy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sodakit generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)

    asr = sub.add_parser("asr", help="speech -> transcript")
    _common(asr, greedy=True)
    asr.add_argument("audio", nargs="+", help="audio files")
    asr.add_argument("--max-new-tokens", type=int, default=ASR_MAX_NEW_TOKENS)
    asr.add_argument("--shots", default=None, help="TSV of `audio_path<TAB>transcript` examples put before each prompt")
    asr.add_argument("--output", default=None, help=".jsonl ({audio, text}) or .txt (one transcript a line); default stdout")

    tts = sub.add_parser("tts", help="text -> speech, optionally in the voice of a prompt")
    _common(tts, greedy=False)
    _audio_guards(tts, TTS_MAX_NEW_TOKENS)
    src = tts.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to speak")
    src.add_argument("--text-file", help="one text per line; outputs go to --output-dir as 0000.wav, ...")
    tts.add_argument("--voice-audio", default=None, help="voice prompt audio")
    tts.add_argument("--voice-text", default=None, help="transcript of the voice prompt")
    tts.add_argument("--output", default=None, help="output WAV (with --text)")
    tts.add_argument("--output-dir", default=None, help="output directory (with --text-file)")

    cont = sub.add_parser("continue", help="continue a recording")
    _common(cont, greedy=False)
    cont.add_argument("audio", nargs="+", help="prompt audio files")
    cont.add_argument("--seconds", type=float, default=5.0, help="seconds to generate (cap)")
    cont.add_argument("--silence-stop-seconds", type=float, default=None)
    cont.add_argument("--silence-detector", default="codes", choices=["codes", "repeat", "energy"])
    cont.add_argument("--include-prompt", action="store_true", help="write prompt + continuation")
    cont.add_argument("--output", default=None, help="output WAV (one input)")
    cont.add_argument("--output-dir", default=None, help="output directory (several inputs): <stem>.wav")

    s2 = sub.add_parser("s2st", help="speech -> translated speech in the source voice (fine-tuned model)")
    _common(s2, greedy=False)
    _audio_guards(s2, TTS_MAX_NEW_TOKENS)
    s2.add_argument("audio", nargs="*", help="source audio files")
    s2.add_argument("--manifest", default=None, help="CVSS-style manifest (TSV/JSONL) to translate and score")
    s2.add_argument("--source-lang", default=None, help="force the source language tag (e.g. fr)")
    s2.add_argument("--source-text", default=None, help="force the source transcript (single input)")
    s2.add_argument("--target-lang", default="en", help="target language tag when forcing (default en)")
    s2.add_argument("--max-text-tokens", type=int, default=S2ST_MAX_TEXT_TOKENS,
                    help=f"close a runaway text span after this many tokens (default {S2ST_MAX_TEXT_TOKENS})")
    s2.add_argument("--output", default=None, help="output WAV (single input)")
    s2.add_argument("--output-dir", default=None, help="output directory (several inputs or --manifest)")
    s2.add_argument("--asr-judge", default="pocketsphinx", help="ASR judge for ASR-BLEU: pocketsphinx | whisper:/dir")
    s2.add_argument("--speaker-judge", default="classical", help="speaker judge: classical | wavlm:/dir")
    s2.add_argument("--limit", type=int, default=None, help="first N manifest items only")
    return parser


def _sampling(a) -> SamplingConfig:
    return SamplingConfig(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed)


def _generator(a, need_codec: bool = True) -> SodaGenerator:
    g = SodaGenerator.from_pretrained(
        a.model,
        codec=a.codec,
        tokenizer=a.tokenizer,
        device=a.device,
        dtype=DTYPES[a.dtype],
        allow_codec_mismatch=a.allow_codec_mismatch,
        batch_size=a.batch_size,
        need_codec=need_codec,
    )
    for note in g.notes:
        print(f"note: {note}", file=sys.stderr)
    return g


def _read(paths, sr: int):
    from sodakit.audio.io import load_audio

    return [load_audio(p, sr) for p in paths]


def _save(path: Path, wav, sr: int) -> None:
    from sodakit.audio.io import save_wav

    save_wav(path, wav, sr)
    print(f"wrote {path} ({len(wav) / sr:.2f} s)", file=sys.stderr)


def _out_paths(a, inputs: list[str] | None, n: int) -> list[Path]:
    if n == 1 and a.output:
        return [Path(a.output)]
    if not a.output_dir:
        raise ValueError("give --output for one item or --output-dir for several")
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if inputs:
        stems = [Path(p).stem for p in inputs]
        if len(set(stems)) == len(stems):
            return [out / f"{s}.wav" for s in stems]
    return [out / f"{i:04d}.wav" for i in range(n)]


def _silence(g: SodaGenerator, a, calibration):
    if getattr(a, "silence_stop_seconds", None) is None:
        return None
    return g.silence_detector(a.silence_detector, calibration)


def run_asr(a) -> int:
    g = _generator(a)
    waves = _read(a.audio, g.sample_rate)
    shots = []
    if a.shots:
        from sodakit.audio.io import load_audio

        base = Path(a.shots).parent
        for n, line in enumerate(Path(a.shots).read_text().splitlines(), 1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{a.shots}:{n}: expected `audio_path<TAB>transcript`")
            path, text = line.split("\t", 1)
            p = Path(path) if Path(path).is_absolute() else base / path
            shots.append((load_audio(p, g.sample_rate), g.sample_rate, text))
    results = g.asr(waves, g.sample_rate, shots=shots, max_new_tokens=a.max_new_tokens, sampling=_sampling(a))
    if a.output and a.output.endswith(".jsonl"):
        lines = [json.dumps({"audio": p, "text": r.text, "stop_reason": r.stop_reason}) for p, r in zip(a.audio, results)]
    else:
        lines = [r.text for r in results]
    text = "\n".join(lines) + "\n"
    if a.output:
        from sodakit.config import atomic_write_text

        atomic_write_text(Path(a.output), text)
    else:
        sys.stdout.write(text)
    return 0


def run_tts(a) -> int:
    g = _generator(a)
    texts = [a.text] if a.text is not None else [t for t in Path(a.text_file).read_text().splitlines() if t.strip()]
    if not texts:
        raise ValueError(f"{a.text_file}: no text lines")
    voice = None
    if (a.voice_audio is None) != (a.voice_text is None):
        raise ValueError("--voice-audio and --voice-text go together (the prompt audio and its transcript)")
    calibration = []
    if a.voice_audio:
        wav = _read([a.voice_audio], g.sample_rate)[0]
        voice = g.voice(wav, g.sample_rate, a.voice_text)
        calibration.append((wav, g.sample_rate))
    outs = _out_paths(a, None, len(texts))
    results = g.tts(
        texts, voice, max_new_tokens=a.max_new_tokens, sampling=_sampling(a), max_seconds=a.max_seconds,
        silence_stop_seconds=a.silence_stop_seconds, silence=_silence(g, a, calibration),
    )
    for path, r in zip(outs, results):
        _save(path, r.audio, g.sample_rate)
        print(f"  stop: {r.stop_reason}, {r.audio_frames} frames, {r.new_tokens} tokens", file=sys.stderr)
    return 0


def run_continue(a) -> int:
    g = _generator(a)
    waves = _read(a.audio, g.sample_rate)
    outs = _out_paths(a, a.audio, len(waves))
    results = g.continue_audio(
        waves, g.sample_rate, seconds=a.seconds, sampling=_sampling(a), silence_stop_seconds=a.silence_stop_seconds,
        silence=_silence(g, a, [(w, g.sample_rate) for w in waves]), include_prompt=a.include_prompt,
    )
    for path, r in zip(outs, results):
        _save(path, r.audio, g.sample_rate)
    return 0


def run_s2st(a) -> int:
    g = _generator(a)
    if a.manifest:
        from sodakit.generate.s2st import evaluate_s2st, read_manifest

        if not a.output_dir:
            raise ValueError("--manifest needs --output-dir (generated WAVs and metrics.json go there)")
        items = read_manifest(a.manifest)[: a.limit]
        res = evaluate_s2st(
            g, items, Path(a.output_dir), asr_judge=a.asr_judge, speaker_judge=a.speaker_judge,
            sampling=_sampling(a), max_new_tokens=a.max_new_tokens, max_seconds=a.max_seconds,
            silence_stop_seconds=a.silence_stop_seconds, force_source_lang=a.source_lang is not None,
            max_text_tokens=a.max_text_tokens,
        )
        print(json.dumps(res["metrics"], indent=2))
        return 0
    if not a.audio:
        raise ValueError("give source audio files or --manifest")
    if a.source_text is not None and len(a.audio) != 1:
        raise ValueError("--source-text is for a single input")
    waves = _read(a.audio, g.sample_rate)
    results = g.s2st(
        waves, g.sample_rate, source_lang=a.source_lang,
        source_texts=None if a.source_text is None else [a.source_text], target_lang=a.target_lang,
        max_new_tokens=a.max_new_tokens, sampling=_sampling(a), max_seconds=a.max_seconds,
        silence_stop_seconds=a.silence_stop_seconds, silence=_silence(g, a, [(w, g.sample_rate) for w in waves]),
        max_text_tokens=a.max_text_tokens,
    )
    for path, r in zip(_out_paths(a, a.audio, len(waves)), results):
        _save(path, r.audio, g.sample_rate)
        print(json.dumps({"output": str(path), "source_lang": r.extra.get("source_lang"), "source_text": r.extra.get("source_text"),
                          "target_text": r.text, "stop_reason": r.stop_reason}))
    return 0


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    return {"asr": run_asr, "tts": run_tts, "continue": run_continue, "s2st": run_s2st}[a.task](a)
