"""`sodakit eval`: run the SODA benchmark battery on a checkpoint and write a results JSON.

    sodakit eval --model PATH --tasks tblimp,hellaswag,swuggy [--data swuggy=DIR ...] [--codec DIR]
                 [--limit N] [--batch-size B] [--out results.json] [--log-items]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sodakit.eval.loading import ModelLoadError, load_eval_codec, load_for_eval
from sodakit.eval.results import run_header, write_results
from sodakit.eval.runner import parse_task_list, run_tasks
from sodakit.eval.spans import AudioSelection
from sodakit.eval.tasks import TASKS, EvalContext


def _codebooks(value: str) -> str | int:
    if value in ("all", "semantic"):
        return value
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected all, semantic or an integer, got {value!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"codebook count must be >= 1, got {k}")
    return k


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sodakit eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="sodakit checkpoint / run directory, or a Hugging Face causal LM directory")
    p.add_argument("--tasks", help="comma-separated task names (see --list)")
    p.add_argument("--list", action="store_true", help="list the tasks and the data each expects, then exit")
    p.add_argument("--data", action="append", default=[], metavar="TASK=PATH",
                   help="data location of a task (repeatable); tblimp and hellaswag default to ../shared/data")
    p.add_argument("--codec", help="codec for spoken tasks (Mimi directory, offline codec directory); "
                                   "default: the codec source recorded with the model")
    p.add_argument("--allow-codec-mismatch", action="store_true",
                   help="score with a codec whose config hash differs from the model's training codec")
    p.add_argument("--tokenizer", help="tokenizer.json to use instead of the model's")
    p.add_argument("--backend", choices=("auto", "sodakit", "transformers"), default="auto")
    p.add_argument("--limit", type=int, help="score only the first N readable items of each task (quick runs)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (scores do not depend on it)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--input-codebooks", type=_codebooks, default="all",
                   help="audio codebooks put in the prompt: all, semantic, or the first k")
    p.add_argument("--score-codebooks", type=_codebooks, default="all",
                   help="audio codebooks scored: all, semantic, or the first k of the input")
    g = p.add_argument_group("generation tasks (asr, asr_fewshot, tts)")
    g.add_argument("--asr-judge", default="pocketsphinx",
                   help="ASR judge for TTS: pocketsphinx (offline) or whisper:/local/whisper-large-v3")
    g.add_argument("--speaker-judge", default="classical",
                   help="speaker judge for TTS: classical (offline) or wavlm:/local/wavlm-xvector-dir")
    g.add_argument("--shots", type=int, default=3, help="shots of asr_fewshot (from the dev set)")
    g.add_argument("--asr-max-new-tokens", type=int, default=448, help="transcript length cap")
    g.add_argument("--tts-max-new-tokens", type=int, default=1500, help="SPEC section 9: 1500")
    g.add_argument("--save-audio", help="write the generated TTS audio here")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (TTS) and shot selection (ASR)")
    p.add_argument("--control", choices=("none", "permute-codebooks"), default="none",
                   help="negative control: permute-codebooks scores the spoken tasks with each frame's codebooks "
                        "in the wrong slots (sodakit.eval.controls); the scores should fall to chance")
    p.add_argument("--out", default="eval_results.json", help="results JSON path")
    p.add_argument("--log-items", action="store_true", help="also write per-item logs next to the results")
    return p


def list_tasks() -> str:
    lines = ["tasks:"]
    for name, spec in sorted(TASKS.items()):
        lines.append(f"  {name:<12} {spec.description}\n  {'':<12} data: {spec.data_help}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print(list_tasks())
        return 0
    if not args.model or not args.tasks:
        print("sodakit eval: --model and --tasks are required (or --list)", file=sys.stderr)
        return 2
    try:
        names = parse_task_list(args.tasks)
    except ValueError as e:
        print(f"sodakit eval: {e}", file=sys.stderr)
        return 2
    data: dict[str, str] = {}
    for d in args.data:
        task, sep, path = d.partition("=")
        if not sep or not path:
            print(f"sodakit eval: --data expects TASK=PATH, got {d!r}", file=sys.stderr)
            return 2
        data[task.strip()] = path.strip()
    unknown = sorted(set(data) - set(TASKS))
    if unknown:
        print(f"sodakit eval: --data names unknown task(s) {unknown}", file=sys.stderr)
        return 2
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1) or args.shots < 1 or args.tts_max_new_tokens < 8:
        print("sodakit eval: --batch-size, --limit and --shots must be >= 1, --tts-max-new-tokens >= 8", file=sys.stderr)
        return 2
    try:
        loaded = load_for_eval(args.model, args.device, args.dtype, args.backend, args.tokenizer)
        needs_codec = any(TASKS[n].needs_codec for n in names)
        codec = (load_eval_codec(args.codec, loaded.codec_record, args.device, args.allow_codec_mismatch)
                 if needs_codec else None)
    except (ModelLoadError, ValueError, FileNotFoundError) as e:
        print(f"sodakit eval: {e}", file=sys.stderr)
        return 2
    if codec is not None and args.control == "permute-codebooks":
        from sodakit.eval.controls import PermutedCodebooks

        codec = PermutedCodebooks(codec)
    ctx = EvalContext(lm=loaded.lm, tokenizer=loaded.tokenizer, batch_size=args.batch_size, codec=codec,
                      audio=AudioSelection(args.input_codebooks, args.score_codebooks), limit=args.limit,
                      log_items=args.log_items, dtype=args.dtype, device=args.device,
                      codec_record=loaded.codec_record, asr_judge=args.asr_judge, speaker_judge=args.speaker_judge,
                      asr_shots=args.shots, asr_max_new_tokens=args.asr_max_new_tokens,
                      tts_max_new_tokens=args.tts_max_new_tokens,
                      audio_out=Path(args.save_audio) if args.save_audio else None, seed=args.seed)
    tok = loaded.tokenizer
    results = run_header(
        argv,
        model=loaded.info | {"notes": loaded.notes},
        tokenizer={"source": tok.text.source, "sha256": tok.text.sha256, "vocab": tok.vocab.to_dict()},
        codec=(codec.info().__dict__ if codec is not None else None),
        settings={"batch_size": args.batch_size, "limit": args.limit, "dtype": args.dtype, "device": args.device,
                  "input_codebooks": args.input_codebooks, "score_codebooks": args.score_codebooks,
                  "data": data, "asr_judge": args.asr_judge, "speaker_judge": args.speaker_judge,
                  "shots": args.shots, "asr_max_new_tokens": args.asr_max_new_tokens,
                  "tts_max_new_tokens": args.tts_max_new_tokens, "seed": args.seed, "control": args.control},
    )
    out = Path(args.out)
    item_dir = out.with_suffix("").with_name(out.stem + ".items") if args.log_items else None
    results["tasks"], failed = run_tasks(ctx, names, data, item_dir, log=lambda m: print(m, file=sys.stderr))
    write_results(out, results)
    print(f"[eval] results: {out}" + (f" (per-item logs: {item_dir})" if item_dir else ""), file=sys.stderr)
    return 1 if failed else 0
