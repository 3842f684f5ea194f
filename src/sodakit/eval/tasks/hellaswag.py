"""HellaSwag: 4-way multiple choice by continuation log-likelihood (lm-evaluation-harness protocol).

Each ending is scored as a continuation of its context: BOS {context} {" " + ending}, summing the
log-probs of the ending's tokens (context and ending tokenized separately, so every ending is
conditioned on exactly the same context tokens). `acc` picks the highest sum; `acc_norm` the highest
sum divided by the ending's length in characters (with its leading space), as lm-eval's acc_norm.
The text is plain (no text markers), like SODA's text-only training documents; `markers=True`
wraps context and ending in <|text_start|> ... <|text_end|> instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sodakit.eval.items import ChoiceItem, ItemError
from sodakit.eval.metrics import choice_outcome
from sodakit.eval.readers.hellaswag import read_hellaswag
from sodakit.eval.scoring import check_request, score_requests
from sodakit.eval.spans import continuation_request
from sodakit.eval.tasks.base import EvalContext, TaskError, TaskResult, TaskSpec, Timer, counts, register
from sodakit.eval.tasks.likelihood import _need, shared_data

HELP = "HellaSwag validation in the 6-lines-per-item text format (default: ../shared/data/hellaswag)"


def choice_requests(ctx: EvalContext, items: list[ChoiceItem], errors: list[ItemError], markers: bool = False):
    """(item, [request per ending]) for the items whose every ending can be scored."""
    texts: list[str] = []
    for it in items:
        texts.append(it.context)
        texts += [" " + e for e in it.endings]
    ids = ctx.tokenizer.encode_texts(texts, where="hellaswag")
    built, k = [], 0
    for it in items:
        ctx_ids = ids[k]
        ends = ids[k + 1 : k + 1 + len(it.endings)]
        k += 1 + len(it.endings)
        try:
            reqs = [continuation_request(ctx_ids, e, ctx.vocab, markers=markers) for e in ends]
        except ValueError as e:
            errors.append(ItemError(item=it.id, stage="encode", reason=str(e)))
            continue
        why = next((w for w in (check_request(r, ctx.lm) for r in reqs) if w), None)
        if why:
            errors.append(ItemError(item=it.id, stage="score", reason=why))
            continue
        built.append((it, reqs))
    return built


def run_hellaswag(ctx: EvalContext, path: Path | None, markers: bool = False) -> TaskResult:
    path = path or (shared_data() / "hellaswag" / "hellaswag_val_full.txt.bz2")
    read = read_hellaswag(_need(path, "hellaswag", HELP)).limited(ctx.limit)
    if markers:
        ctx.require_ids("hellaswag", [ctx.vocab.text_start_id, ctx.vocab.text_end_id], "the text markers")
    errors: list[ItemError] = []
    with Timer() as t:
        built = choice_requests(ctx, read.items, errors, markers)
        flat = [r for _, reqs in built for r in reqs]
        scores = score_requests(ctx.lm, flat, batch_size=ctx.batch_size)
    if not built:
        raise TaskError(f"task hellaswag: no item could be scored ({len(read.items)} read, {len(errors)} excluded)")
    acc, acc_norm, records, k = [], [], [], 0
    for it, reqs in built:
        s = scores[k : k + len(reqs)]
        k += len(reqs)
        sums = [x.sum_logprob for x in s]
        norm = [x.sum_logprob / len(" " + e) for x, e in zip(s, it.endings)]
        acc.append(choice_outcome(sums, it.gold))
        acc_norm.append(choice_outcome(norm, it.gold))
        if ctx.log_items:
            records.append({"id": it.id, "gold": it.gold, "sum_logprob": sums, "tokens": [x.num_tokens for x in s],
                            "norm_logprob": norm, "acc": acc[-1], "acc_norm": acc_norm[-1]})
    return TaskResult(
        task="hellaswag",
        metrics={"acc": float(np.mean(acc)), "acc_norm": float(np.mean(acc_norm))},
        counts=counts(len(read.items) + len(read.errors), len(read.errors), len(built), len(errors)),
        protocol={
            "template": ("BOS <|text_start|>{context} {ending}<|text_end|>" if markers else "BOS {context} {ending}"),
            "score": "sum of the ending's token log-probs; context and ' ' + ending tokenized separately",
            "acc_norm": "sum divided by len(' ' + ending) in characters (lm-evaluation-harness acc_norm)",
            "ties": "split evenly between the tied endings (a constant scorer gets 0.25)",
            "batch_size": ctx.batch_size, "dtype": ctx.dtype,
        },
        data=read.source.to_dict(), excluded=read.errors + errors, items=records, seconds=t.seconds,
    )


register(TaskSpec("hellaswag", "HellaSwag 4-way choice: acc and length-normalised acc", HELP,
                  lambda ctx, path: run_hellaswag(ctx, path),
                  default_data=lambda: shared_data() / "hellaswag" / "hellaswag_val_full.txt.bz2"))
