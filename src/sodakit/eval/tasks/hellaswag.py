"""HellaSwag: 4-way multiple choice by continuation log-likelihood, scored as lm-evaluation-harness
0.4 scores its `hellaswag` task (0-shot `acc` and `acc_norm`).

Each ending is scored as a continuation of its context: BOS {context}{" " + ending}, summing the
log-probs of the tokens of " " + ending (the separating space belongs to the continuation; context
and continuation are tokenized separately, so every ending is conditioned on exactly the same context
tokens). Per item, with `ending` the choice text without that space:

- `acc`: the ending with the highest sum;
- `acc_norm`: the highest sum / len(ending), the ending's length in characters (Python `len`);
- `acc_bytes`: the highest sum / len(ending.encode("utf-8")), its length in UTF-8 bytes.

On a tie the first tied ending is the prediction (numpy.argmax, as lm-eval). `acc_ties_split` and
`acc_norm_ties_split` give a tied item 1/(number tied) when gold is among the tied endings instead,
the expected accuracy of a random tie-break (a constant scorer gets 0.25 there).

The dataset's records (JSONL / Parquet) give lm-eval's exact context and choices; the 6-lines text
layout carries the dataset's `ctx`, which differs from lm-eval's context where `ctx_b` is non-empty
(see `sodakit.eval.readers.hellaswag`). The text is plain (no text markers), like SODA's text-only
training documents; `markers=True` wraps context and ending in <|text_start|> ... <|text_end|> instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sodakit.eval.data_dir import HELLASWAG_FILE, data_hint, default_data
from sodakit.eval.items import ChoiceItem, ItemError
from sodakit.eval.metrics import choice_argmax_outcome, choice_outcome
from sodakit.eval.readers.hellaswag import read_hellaswag_auto
from sodakit.eval.scoring import check_request, score_requests
from sodakit.eval.spans import continuation_request
from sodakit.eval.tasks.base import EvalContext, TaskError, TaskResult, TaskSpec, Timer, counts, register
from sodakit.eval.tasks.likelihood import _need

HELP = ("HellaSwag validation: the dataset's hellaswag_val.jsonl or Rowan/hellaswag Parquet (lm-eval's exact context), "
        f"or the 6-lines-per-item text file ({data_hint(HELLASWAG_FILE)}; lm-eval-like context)")

# What the context is, per layout read, and whether it is lm-eval's exactly (recorded in the protocol).
LM_EVAL_CONTEXT = ("lm-evaluation-harness's: clean(activity_label + ': ' + ctx_a + ' ' + ctx_b.capitalize()), endings "
                   "clean(ending); clean = strip, ' [title]' -> '. ', drop '[...]' markers, '  ' -> ' '")
CONTEXT_RULES = {
    "hellaswag-jsonl": (LM_EVAL_CONTEXT, True),
    "hellaswag-parquet": (LM_EVAL_CONTEXT, True),
    "hellaswag-text": ("the text file's 'activity_label: ctx', the dataset's ctx as given (ctx_b not capitalised): "
                       "lm-eval-like, not lm-eval-exact", False),
}


def choice_metrics(sums: list[float], endings: list[str], gold: int) -> dict[str, float]:
    """One item's outcomes from its endings' summed log-likelihoods (definitions in the module docstring)."""
    by_chars = [s / len(e) for s, e in zip(sums, endings, strict=True)]
    by_bytes = [s / len(e.encode("utf-8")) for s, e in zip(sums, endings, strict=True)]
    return {
        "acc": choice_argmax_outcome(sums, gold),
        "acc_norm": choice_argmax_outcome(by_chars, gold),
        "acc_bytes": choice_argmax_outcome(by_bytes, gold),
        "acc_ties_split": choice_outcome(sums, gold),
        "acc_norm_ties_split": choice_outcome(by_chars, gold),
    }



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
    path = path or default_data(HELLASWAG_FILE)
    read = read_hellaswag_auto(_need(path, "hellaswag", HELP)).limited(ctx.cfg.limit)
    if markers:
        ctx.require_ids("hellaswag", [ctx.vocab.text_start_id, ctx.vocab.text_end_id], "the text markers")
    errors: list[ItemError] = []
    with Timer() as t:
        built = choice_requests(ctx, read.items, errors, markers)
        flat = [r for _, reqs in built for r in reqs]
        with ctx.progress("hellaswag", len(flat), unit="seq") as bar:
            scores = score_requests(ctx.lm, flat, batch_size=ctx.cfg.batch_size, progress=bar.update)
    if not built:
        raise TaskError(f"task hellaswag: no item could be scored ({len(read.items)} read, {len(errors)} excluded)")
    outcomes: list[dict[str, float]] = []
    records, k = [], 0
    for it, reqs in built:
        s = scores[k : k + len(reqs)]
        k += len(reqs)
        sums = [x.sum_logprob for x in s]
        outcomes.append(choice_metrics(sums, it.endings, it.gold))
        if ctx.cfg.log_items:
            records.append({"id": it.id, "gold": it.gold, "sum_logprob": sums, "tokens": [x.num_tokens for x in s],
                            "chars": [len(e) for e in it.endings],
                            "bytes": [len(e.encode("utf-8")) for e in it.endings], **outcomes[-1]})
    context_rule, lm_eval_exact = CONTEXT_RULES[read.source.layout]
    return TaskResult(
        task="hellaswag",
        metrics={name: float(np.mean([o[name] for o in outcomes])) for name in outcomes[0]},
        counts=counts(len(read.items) + len(read.errors), len(read.errors), len(built), len(errors)),
        protocol={
            "template": ("BOS <|text_start|>{context} {ending}<|text_end|>" if markers else "BOS {context} {ending}"),
            "context": context_rule,
            "context_is_lm_eval_exact": lm_eval_exact,
            "score": "sum of the log-probs of the tokens of ' ' + ending; context and ' ' + ending tokenized separately",
            "acc": "argmax of the sums",
            "acc_norm": "argmax of sum / len(ending), the ending without the leading space, in characters "
                        "(lm-evaluation-harness 0.4 acc_norm)",
            "acc_bytes": "argmax of sum / len(ending.encode('utf-8')), without the leading space "
                         "(lm-evaluation-harness 0.4 acc_bytes)",
            "ties": "the first tied ending is the prediction (numpy.argmax, as lm-evaluation-harness); "
                    "*_ties_split give a tied item 1/(number tied) when gold is among them",
            "batch_size": ctx.cfg.batch_size, "dtype": ctx.cfg.dtype,
        },
        data=read.source.to_dict(), excluded=read.errors + errors, items=records, seconds=t.seconds,
    )


register(TaskSpec("hellaswag", "HellaSwag 4-way choice: acc and length-normalised acc", HELP,
                  lambda ctx, path: run_hellaswag(ctx, path),
                  default_data=lambda: default_data(HELLASWAG_FILE)))
