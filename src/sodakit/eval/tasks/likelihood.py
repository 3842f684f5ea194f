"""The likelihood tasks of docs/soda.md#evaluation-protocol as declarations: reader + template + aggregation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sodakit.eval.data_dir import BLIMP_FILE, data_hint, default_data
from sodakit.eval.items import PairItem, ReadResult
from sodakit.eval.readers.blimp import read_blimp
from sodakit.eval.readers.hf_parquet import read_hf_pairs
from sodakit.eval.readers.salmon import SALMON_PARTS, read_salmon
from sodakit.eval.readers.zerospeech import LayoutError, read_zr2021
from sodakit.eval.tasks.base import EvalContext, TaskError, TaskResult, TaskSpec, counts, register
from sodakit.eval.tasks.pairs import run_speech_pairs, run_text_pairs


def _need(path: Path | None, task: str, help_text: str) -> Path:
    if path is None:
        raise TaskError(f"task {task} needs data: pass --data {task}=PATH ({help_text})")
    if not Path(path).exists():
        raise TaskError(f"task {task}: data path {path} does not exist")
    return Path(path)


def read_zr_or_hf(path: Path, kind: str) -> ReadResult:
    """ZeroSpeech 2021 layout when a gold.csv is there, else the Hugging Face Parquet layout."""
    try:
        return read_zr2021(path, kind)
    except LayoutError as zr_error:
        try:
            return read_hf_pairs(path, config=None, split="train", layout=f"hf-{'sWUGGY' if kind == 'lexical' else 'sBLIMP'}")
        except LayoutError as hf_error:
            raise TaskError(f"{path}: neither layout fits.\n  ZeroSpeech 2021: {zr_error}\n  Hugging Face: {hf_error}") from None


SWUGGY_HELP = "ZeroSpeech 2021 root/lexical/dev (gold.csv + wavs) or a local copy of the speed/sWUGGY dataset"
SBLIMP_HELP = "ZeroSpeech 2021 root/syntactic/dev (gold.csv + wavs) or a local copy of the speed/sBLIMP dataset"
SALMON_HELP = "the SALMon release folder ({part}/sample_<i>_<k>.wav) or a local copy of slprl/SALMon (Parquet)"
BLIMP_HELP = (f"BLiMP JSONL files or blimp_data_jsonl.tar.xz ({data_hint(BLIMP_FILE)}), or an sBLIMP copy "
              "(ZeroSpeech syntactic/dev or speed/sBLIMP) whose transcriptions are the text, as the SODA authors score")


def _swuggy(ctx: EvalContext, path: Path | None) -> TaskResult:
    read = read_zr_or_hf(_need(path, "swuggy", SWUGGY_HELP), "lexical")
    return run_speech_pairs("swuggy", ctx, read, breakdown_keys=("voice",))


def _sblimp(ctx: EvalContext, path: Path | None) -> TaskResult:
    read = read_zr_or_hf(_need(path, "sblimp", SBLIMP_HELP), "syntactic")
    return run_speech_pairs("sblimp", ctx, read, breakdown_keys=("type", "voice"))


def _meta_texts(it: PairItem) -> tuple[str, str]:
    m = it.meta
    for a, b in (("pos_text", "neg_text"), ("positive_transcription", "negative_transcription"),
                 ("positive_word", "negative_word"), ("word", "non_word")):
        if a in m and b in m:
            return m[a] or "", m[b] or ""
    return "", ""


def _twuggy(ctx: EvalContext, path: Path | None) -> TaskResult:
    read = read_zr_or_hf(_need(path, "twuggy", SWUGGY_HELP), "lexical")
    return run_text_pairs("twuggy", ctx, read, _meta_texts)


def _tblimp(ctx: EvalContext, path: Path | None) -> TaskResult:
    path = _need(path or default_data(BLIMP_FILE), "tblimp", BLIMP_HELP)
    try:
        read = read_blimp(path)
    except LayoutError as blimp_error:
        try:
            read = read_zr_or_hf(path, "syntactic")
        except TaskError as sblimp_error:
            raise TaskError(f"{path}: neither BLiMP JSONL ({blimp_error}) nor an sBLIMP copy:\n{sblimp_error}") from None
        # The SODA authors' tBLIMP: the sBLIMP transcriptions, lowercased.
        return run_text_pairs("tblimp", ctx, read, _meta_texts, breakdown_keys=("type",),
                              lowercase=ctx.cfg.rules.lowercase_sblimp_text)
    return run_text_pairs("tblimp", ctx, read, lambda it: (it.pos, it.neg), breakdown_keys=("phenomenon", "field"))


def _salmon(ctx: EvalContext, path: Path | None) -> TaskResult:
    """All 8 parts; per-part accuracy, micro (pooled pairs) and macro (mean of parts) averages."""
    root = _need(path, "salmon", SALMON_HELP)
    parts: dict[str, TaskResult] = {}
    failed: dict[str, str] = {}
    for part in SALMON_PARTS:
        try:
            parts[part] = run_speech_pairs(f"salmon/{part}", ctx, read_salmon(root, part))
        except (TaskError, LayoutError) as e:
            failed[part] = str(e)
    if not parts:
        raise TaskError("task salmon: no part could be scored:\n  " + "\n  ".join(f"{k}: {v}" for k, v in failed.items()))
    n = {k: r.counts["scored"] for k, r in parts.items()}
    acc = {k: r.metrics["accuracy_all_pairs"] for k, r in parts.items()}  # the protocol's tie rule
    half = {k: r.metrics["accuracy_ties_half"] for k, r in parts.items()}
    macro = float(np.mean(list(acc.values())))
    micro = float(sum(acc[k] * n[k] for k in acc) / sum(n.values()))
    metrics = {
        # soda: the authors' "overall score" over all items; sodakit: the mean of the parts
        "accuracy": micro if ctx.cfg.rules.salmon_headline == "micro" else macro,
        "macro_accuracy": macro,
        "micro_accuracy": micro,
        "macro_accuracy_ties_half": float(np.mean(list(half.values()))),
        "micro_accuracy_ties_half": float(sum(half[k] * n[k] for k in half) / sum(n.values())),
        **{f"{k}": v for k, v in acc.items()},
        "parts_scored": len(parts),
        "parts_expected": len(SALMON_PARTS),
    }
    first = next(iter(parts.values()))
    total = {k: sum(r.counts[k] for r in parts.values()) for k in ("items_read", "read_errors", "scored", "excluded_after_read")}
    res = TaskResult(
        task="salmon", metrics=metrics,
        counts=counts(total["items_read"], total["read_errors"], total["scored"], total["excluded_after_read"]),
        protocol={**first.protocol, "parts": SALMON_PARTS,
                  "headline": f"accuracy = the {ctx.cfg.rules.salmon_headline} average",
                  "macro": "mean of the per-part accuracies over the parts scored",
                  "micro": "accuracy over all pairs of the parts scored"},
        data={k: r.data for k, r in parts.items()},
        excluded=[e for r in parts.values() for e in r.excluded],
        items=[{**rec, "part": k} for k, r in parts.items() for rec in r.items],
        breakdown={"part": {k: {"accuracy": acc[k], "n": n[k]} for k in acc}},
        seconds=sum(r.seconds for r in parts.values()),
    )
    if failed:
        res.notes.append(f"{len(failed)} of {len(SALMON_PARTS)} parts missing, macro/micro cover the others: "
                         + "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in failed.items()))
        res.metrics["parts_missing"] = sorted(failed)
    return res


register(TaskSpec("swuggy", "spoken lexical decision: word vs pseudo-word (speech score)", SWUGGY_HELP, _swuggy,
                  needs_codec=True))
register(TaskSpec("sblimp", "spoken grammaticality: grammatical vs not (speech score)", SBLIMP_HELP, _sblimp,
                  needs_codec=True))
register(TaskSpec("salmon", "SALMon: 8 acoustic consistency/alignment parts, micro + macro", SALMON_HELP, _salmon,
                  needs_codec=True))
register(TaskSpec("twuggy", "sWUGGY pairs as text (text score)", SWUGGY_HELP, _twuggy))
register(TaskSpec("tblimp", "BLiMP pairs as text (text score)", BLIMP_HELP, _tblimp,
                  default_data=lambda: default_data(BLIMP_FILE)))
