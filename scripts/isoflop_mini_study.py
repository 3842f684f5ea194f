#!/usr/bin/env python
"""The laptop IsoFLOP study, end to end on offline data: speech corpus -> codec -> tokens -> sweep -> fit.

    python scripts/isoflop_mini_study.py [--out runs/isoflop-mini] [--docs docs/isoflop] [--until STAGE]

Stages (each one is skipped when its output is complete, so rerunning the script resumes it; the sweep
itself skips finished runs and resumes an interrupted run from its checkpoint):

1. corpus    the shipped paragraphs read aloud by every installed English flite / espeak-ng voice
             (`sodakit.demo.corpus.build_corpus`); manifest.jsonl has one row per sentence.
2. split     held-out validation = the corpus's `--val-paragraphs` held-out paragraphs read by every
             `--val-voice-stride`-th voice; those paragraphs are in no training data (speech or text), so
             validation text and speech are unseen. train.jsonl / val.jsonl / train_text.txt. A corpus
             from the builder before its fix (held-out and training recordings sharing WAV files) is
             refused: delete OUT/corpus and rerun.
3. codec     `sodakit codec fit` on the training speech (8 codebooks x 128 entries: SODA's 8 codebooks,
             a CPU-sized vocabulary).
4. tokenize  `sodakit tokenize` of train.jsonl and val.jsonl with that codec.
5. tokenizer `sodakit tokenizer train` (byte-level BPE, 512 text ids) on train_text.txt.
6. pack      `sodakit pack`: speech (text-first + audio-first documents), text-only (same layout via
             vocab_from), validation speech. Training mixture 95% speech / 5% text (SODA's recipe).
7. plan      `sodakit isoflop plan --config configs/isoflop_mini.yaml vocab_size=<the data's>`.
8. run       `sodakit isoflop run` (single-threaded torch: on a shared 2-core machine one thread per
             process is faster than two fighting threads; `--workers 2` runs two sweep processes that
             share the plan, each claiming a run before training it).
9. fit       `sodakit isoflop fit` on the audio-token NLL (OUT/fit_audio, the primary result: the runs
             memorise the 4k-token text corpus) and on all tokens (OUT/fit) -> fit.json + plots;
             `--docs DIR` copies the plots, the results table and a summary there.

`--until pack|plan|run` stops after that stage (e.g. build the data now and sweep later).

Wall time of each stage goes to OUT/study.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sodakit.config import atomic_write_text  # noqa: E402

# Codec and text vocabulary: vocab = 512 text ids + 4 markers + 8 x 128 audio ids = 1540 (the mini preset's).
NUM_CODEBOOKS, CODEBOOK_SIZE, TEXT_VOCAB = 8, 128, 512
SPEECH_WEIGHT, TEXT_WEIGHT = 0.95, 0.05


def log(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sodakit(*args: str, threads: int | None = None, check: bool = True) -> str:
    """Run a sodakit command in a subprocess (the real CLI), fail loudly, return its stdout.

    With check=False a failure returns "" and the command's stderr goes to the log all the same.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "sodakit", *args]
    log("$ sodakit " + " ".join(args))
    p = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=None, text=True)
    if p.returncode != 0:
        if check:
            raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
        return ""
    return p.stdout


class Timer:
    def __init__(self, path: Path):
        self.path = path
        self.record = json.loads(path.read_text()) if path.exists() else {"stages": {}}

    def stage(self, name: str, done: bool, fn) -> None:
        if done:
            log(f"{name}: done already, skipped")
            return
        t = time.perf_counter()
        fn()
        self.record["stages"][name] = round(time.perf_counter() - t + self.record["stages"].get(name, 0.0), 1)
        atomic_write_text(self.path, json.dumps(self.record, indent=1) + "\n")
        log(f"{name}: {self.record['stages'][name]:.0f} s")


def split_corpus(corpus: Path, data: Path, val_voice_stride: int) -> None:
    """Training = the corpus's training manifest and text; validation = its held-out paragraphs read by
    every `val_voice_stride`-th voice (a small set keeps the per-run evaluation cheap).

    Refuses a corpus in which a validation recording shares its id (hence its WAV path) with a training
    recording: corpora built before the `build_corpus` fix (recording ids now carry the paragraph's
    global index) rendered one over the other. Delete OUT/corpus and rerun to rebuild it.
    """

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (corpus / name).read_text().splitlines() if line.strip()]

    info = json.loads((corpus / "corpus.json").read_text())
    val_voices = set(info["voices"][::val_voice_stride])
    train = rows("manifest.jsonl")
    val = [r for r in rows("manifest_val.jsonl") if r["speaker"] in val_voices]
    clash = {r["audio"] for r in rows("manifest_val.jsonl")} & {r["audio"] for r in train}
    if clash:
        raise SystemExit(f"{corpus}: {len(clash)} validation recordings share a WAV file with training ones "
                         f"(e.g. {sorted(clash)[0]}): a corpus from the old builder. Delete {corpus} and rerun")
    data.mkdir(parents=True, exist_ok=True)
    atomic_write_text(data / "train.jsonl", "".join(json.dumps(r) + "\n" for r in train))
    atomic_write_text(data / "val.jsonl", "".join(json.dumps(r) + "\n" for r in val))
    shutil.copy(corpus / "text.txt", data / "train_text.txt")
    atomic_write_text(data / "split.json", json.dumps({
        "held_out_paragraphs": info["held_out_paragraphs"], "val_voices": sorted(val_voices),
        "voices": info["voices"], "train_segments": len(train), "val_segments": len(val),
        "train_seconds": round(sum(r["end"] - r["start"] for r in train), 1),
        "val_seconds": round(sum(r["end"] - r["start"] for r in val), 1), "text_paragraphs": info["paragraphs"],
    }, indent=1) + "\n")


def packed_vocab_size(path: Path) -> int:
    return int(json.loads((path / "metadata.json").read_text())["vocab"]["size"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "isoflop-mini")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "isoflop_mini.yaml")
    ap.add_argument("--voices", nargs="+", help="TTS voices (default: every installed English voice)")
    ap.add_argument("--val-paragraphs", type=int, default=2)
    ap.add_argument("--val-voice-stride", type=int, default=3, help="validation uses every k-th voice")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each sweep process")
    ap.add_argument("--workers", type=int, default=1,
                    help="sweep processes sharing the plan (e.g. one per core: 2 halves the sweep's wall time)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--until", choices=("pack", "plan", "run"),
                    help="stop after this stage (e.g. build the data now, sweep later)")
    ap.add_argument("--docs", type=Path, help="copy the plots and a summary JSON here (e.g. docs/isoflop)")
    ap.add_argument("overrides", nargs="*", help="extra SweepRules overrides for the plan (key=value)")
    args = ap.parse_args()

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    corpus, data, plan_dir, fit_dir = out / "corpus", out / "data", out / "plan", out / "fit"
    timer = Timer(out / "study.json")
    t_start = time.perf_counter()

    def build() -> None:
        from sodakit.audio.synth import available_voices
        from sodakit.demo.corpus import build_corpus

        voices = args.voices or available_voices("en")
        if not voices:
            raise SystemExit("no English TTS voice installed (apt-get install flite espeak-ng)")
        info = build_corpus(corpus, voices, voices_per_paragraph=len(voices),
                            holdout_paragraphs=args.val_paragraphs, workers=2, log=log)
        log(f"corpus: {info['recordings']} recordings, {info['speech_hours']} h")

    timer.stage("corpus", (corpus / "corpus.json").is_file(), build)
    timer.stage("split", (data / "split.json").is_file(),
                lambda: split_corpus(corpus, data, args.val_voice_stride))
    codec = data / "codec"
    timer.stage("codec", (codec / "sodakit_codec.json").is_file(),
                lambda: sodakit("codec", "fit", str(data / "train.jsonl"), str(codec),
                                f"num_codebooks={NUM_CODEBOOKS}", f"codebook_size={CODEBOOK_SIZE}"))

    def tokenize() -> None:
        for split in ("train", "val"):
            sodakit("tokenize", f"input={data / (split + '.jsonl')}", f"output={data / 'tokens' / split}",
                    f"codec={codec}", "workers=2", "device=cpu")

    timer.stage("tokenize", (data / "tokens" / "val" / "manifest.json").is_file(), tokenize)
    tok = data / "tokenizer"
    timer.stage("tokenizer", (tok / "tokenizer.json").is_file(),
                lambda: sodakit("tokenizer", "train", str(data / "train_text.txt"), "--output", str(tok),
                                "--vocab-size", str(TEXT_VOCAB), "--num-codebooks", str(NUM_CODEBOOKS),
                                "--codebook-size", str(CODEBOOK_SIZE)))
    packed = data / "packed"

    def pack() -> None:
        sodakit("pack", f"inputs=[{data / 'tokens' / 'train'}]", f"output={packed / 'speech'}", f"tokenizer={tok}")
        sodakit("pack", "kind=text", f"inputs=[{data / 'train_text.txt'}]", f"output={packed / 'text'}",
                f"tokenizer={tok}", f"vocab_from={packed / 'speech'}")
        sodakit("pack", f"inputs=[{data / 'tokens' / 'val'}]", f"output={packed / 'val'}", f"tokenizer={tok}")

    timer.stage("pack", (packed / "val" / "metadata.json").is_file(), pack)
    if args.until == "pack":
        return 0
    vocab_size = packed_vocab_size(packed / "speech")

    def plan() -> None:
        sodakit("isoflop", "plan", "--config", str(args.config), f"vocab_size={vocab_size}", *args.overrides,
                "--out", str(plan_dir))

    timer.stage("plan", (plan_dir / "plan.json").is_file(), plan)
    if args.until == "plan":
        return 0
    t = time.perf_counter()
    run_args = ["isoflop", "run", str(plan_dir), "--data", f"{packed / 'speech'}:{SPEECH_WEIGHT}",
                f"{packed / 'text'}:{TEXT_WEIGHT}", "--val", str(packed / "val"), "--threads", str(args.threads)]
    # Several sweep processes share the plan: each claims a run before training it (sodakit.scaling.run).
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda _: sodakit(*run_args, threads=args.threads), range(args.workers)))
    timer.record["stages"]["run (this invocation)"] = round(time.perf_counter() - t, 1)
    sweep_time = _sweep_wall_time(plan_dir / "results.csv")
    timer.record["stages"]["run (sum of run wall times)"] = sweep_time
    atomic_write_text(out / "study.json", json.dumps(timer.record, indent=1) + "\n")
    if args.until == "run":
        return 0

    # Primary: the audio-token NLL (SODA's "audio" variant). The 5% text part is a 4k-token corpus that
    # the runs memorise over many epochs (held-out text NLL 5..8.5 nats), so the all-token loss mixes text
    # over-fitting into the profiles; it is fitted too and reported next to it.
    fit_audio = run_fit(plan_dir / "results.csv", out / "fit_audio", args.bootstrap, "--loss-col", "loss_audio")
    fit = run_fit(plan_dir / "results.csv", fit_dir, args.bootstrap)
    print(sodakit("isoflop", "predict", "--fit", str(out / "fit_audio"), "--flops", "1e13", "1e15", "1e20"))
    timer.record["total_this_invocation_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_text(out / "study.json", json.dumps(timer.record, indent=1) + "\n")
    summary = summarize(fit, fit_audio, timer.record, json.loads((data / "split.json").read_text()), vocab_size,
                        plan_dir / "results.csv")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    plot_loss_vs_steps(plan_dir / "results.csv", out / "loss_vs_steps.png")
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "loss_vs_steps.png", args.docs / "loss_vs_steps.png")
        for prefix, fit_out, result in (("audio", out / "fit_audio", fit_audio), ("all_tokens", fit_dir, fit)):
            # The fitted-law plots only where their approach fitted: without interior minima (Approach 2)
            # or a law (Approach 3) they would show an unidentified fit as if it were a result.
            names = ["isoflop_profiles.png"]
            names += ["optimal_vs_compute.png"] if result.get("approach2") else []
            names += ["parametric_contours.png"] if result.get("approach3") else []
            for name in names:
                shutil.copy(fit_out / name, args.docs / f"{prefix}_{name}")
        atomic_write_text(args.docs / "mini_study_summary.json", json.dumps(summary, indent=1) + "\n")
        shutil.copy(plan_dir / "results.csv", args.docs / "mini_study_results.csv")
        for f in args.docs.iterdir():
            f.chmod(0o644)
        log(f"copied plots and summary to {args.docs}")
    return 0


def run_fit(results: Path, out: Path, bootstrap: int, *extra: str) -> dict:
    """`isoflop fit` with both approaches; if that fails (e.g. no budget has an interior minimum, so
    Approach 2 has nothing to regress), Approach 3 alone, with the failure noted in the warnings."""
    fit_args = ("isoflop", "fit", str(results), "--out", str(out), "--bootstrap", str(bootstrap), "--json", *extra)
    fit_json = sodakit(*fit_args, check=False)
    failed = not fit_json
    if failed:
        log("the fit with both approaches failed (see above); fitting Approach 3 alone")
        fit_json = sodakit(*fit_args, "--approach", "3")
    fit = json.loads(fit_json)
    fit.setdefault("warnings", [])
    if failed:
        fit["warnings"].insert(0, "Approach 2 failed on this sweep (error in the study log); Approach 3 only")
    return fit


def plot_loss_vs_steps(results: Path, path: Path) -> None:
    """Validation loss (all tokens and audio tokens) against optimizer steps, one marker per width:
    if every size falls on one curve, the sweep is step-limited and size does not matter yet."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results) as f:
        table = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    widths = sorted({int(r["width"]) for r in table})
    budgets = sorted({float(r["budget"]) for r in table})
    markers = "osD^v<>px*"
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, col, title in zip(axes, ("loss", "loss_audio"), ("all tokens", "audio tokens")):
        for r in table:
            w, b = int(r["width"]), float(r["budget"])
            ax.scatter(int(r["steps"]), float(r[col]), color=cmap(widths.index(w) / max(1, len(widths) - 1)),
                       marker=markers[budgets.index(b) % len(markers)], s=36)
        ax.set_xscale("log")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel(f"validation loss ({title})")
        ax.grid(True, which="both", alpha=0.3)
    for w in widths:
        axes[0].scatter([], [], color=cmap(widths.index(w) / max(1, len(widths) - 1)), label=f"d={w}")
    for b in budgets:
        axes[1].scatter([], [], color="gray", marker=markers[budgets.index(b) % len(markers)], label=f"C={b:.1e}")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7)
    fig.suptitle("Laptop IsoFLOP sweep: validation loss against optimizer steps (colour: width, marker: budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep_wall_time(results: Path) -> float:
    import csv

    with open(results) as f:
        return round(sum(float(r["wall_time_s"]) for r in csv.DictReader(f)), 1)


def summarize(fit: dict, fit_audio: dict, timing: dict, split: dict, vocab_size: int, results: Path) -> dict:
    """The numbers README quotes: exponents with intervals (Approach 2 and 3) next to SODA's."""
    import csv

    with open(results) as f:
        rows = list(csv.DictReader(f))
    return {
        "primary": "fit_audio_tokens",
        "fit_audio_tokens": _pick(fit_audio),
        "fit_all_tokens": _pick(fit),
        "sweep": {"runs": len(rows), "flops": sum(float(r["flops"]) for r in rows),
                  "wall_time_s": round(sum(float(r["wall_time_s"]) for r in rows), 1),
                  "steps_range": [min(int(r["steps"]) for r in rows), max(int(r["steps"]) for r in rows)]},
        "reference_soda": {"N_exponent": 0.367, "D_exponent": 0.579},
        "timing_s": timing,
        "data": {**split, "vocab_size": vocab_size, "codec": f"offline, {NUM_CODEBOOKS} x {CODEBOOK_SIZE}",
                 "mixture": {"speech": SPEECH_WEIGHT, "text": TEXT_WEIGHT}},
    }


def _pick(fit: dict) -> dict:
    """Exponents with intervals, per-budget minima, the parametric law and the warnings."""
    out: dict = {"flop_convention": fit.get("flop_convention"), "warnings": fit.get("warnings", [])}
    a2 = fit.get("approach2")
    if a2:
        out["approach2"] = {
            "N_exponent": a2["n_opt"]["exponent"], "N_exponent_ci": a2["n_opt"]["exponent_ci"],
            "D_exponent": a2["d_opt"]["exponent"], "D_exponent_ci": a2["d_opt"]["exponent_ci"],
            "budgets_used": a2["budgets_used"],
            "profiles": [{k: p.get(k) for k in ("budget", "status", "n_opt", "d_opt", "loss_opt", "curvature_t")}
                         for p in a2["profiles"]],
        }
    a3 = fit.get("approach3")
    if a3:
        out["approach3"] = {k: a3.get(k) for k in ("E", "A", "B", "alpha", "beta", "n_exponent", "d_exponent",
                                                   "ci", "rmse_log", "k", "n_bootstrap_ok")}
    return out


if __name__ == "__main__":
    sys.exit(main())
