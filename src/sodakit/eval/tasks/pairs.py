"""Zero-shot minimal-pair tasks: the positive member of each pair should score higher.

Spoken pairs (sWUGGY, sBLIMP, SALMon) use the speech score of docs/soda.md#evaluation-protocol --
BOS <|audio_start|>{audio}<|audio_end|>, mean log-prob over the (selected codebooks of the) audio
tokens; text pairs (tWUGGY, tBLIMP) use BOS <|text_start|>{text}<|text_end|>, mean log-prob of the
text tokens. Accuracy = share of pairs where the positive scores higher; how a tie counts and how pairs
are averaged depend on the protocol (sodakit.eval.protocols): `soda` counts a tie as wrong and averages
over all pairs, `sodakit` counts a tie half and averages the voices of a pair id first. Both readings are
always reported under their own names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sodakit.eval.items import AudioRef, ItemError, PairItem, ReadResult
from sodakit.eval.metrics import TIE_VALUE, TIE_WRONG, mean_ci95, pair_outcomes
from sodakit.eval.scoring import ScoreRequest, SpanScore, check_request, score_requests
from sodakit.eval.spans import speech_request, text_request
from sodakit.eval.tasks.base import (
    EvalContext,
    TaskError,
    TaskResult,
    Timer,
    breakdown_by,
    counts,
    grouped_mean,
)
from sodakit.progress import Progress

# Pairs whose audio is loaded and encoded at once: bounds memory on multi-GB sets (sBLIMP).
ENCODE_CHUNK = 128


def encode_clips(ctx: EvalContext, clips: Sequence[tuple[str, AudioRef]],
                 errors: list[ItemError]) -> list[np.ndarray | None]:
    """The codes of each (item id, audio) clip, encoded as one batch; None where the clip cannot be read or
    encoded, with the reason in `errors` (a clip that breaks the batch is isolated, the others still count)."""
    codec = ctx.codec
    waves: list[np.ndarray] = []
    loaded: list[int] = []
    for k, (item, ref) in enumerate(clips):
        try:
            w = ref.load(codec.sample_rate)
            if w.size == 0:
                raise ValueError("empty audio (0 samples)")
        except Exception as e:
            errors.append(ItemError(item=item, file=ref.where, stage="read", reason=f"{type(e).__name__}: {e}"))
            continue
        waves.append(w)
        loaded.append(k)
    out: list[np.ndarray | None] = [None] * len(clips)
    if not waves:
        return out
    try:
        codes = codec.encode_audio(waves, codec.sample_rate)
    except Exception:
        codes = []
        for k, w in zip(loaded, waves):
            try:
                codes.append(codec.encode_audio([w], codec.sample_rate)[0])
            except Exception as e:
                item, ref = clips[k]
                errors.append(ItemError(item=item, stage="encode", reason=f"{type(e).__name__}: {e}", file=ref.where))
                codes.append(None)
    for k, c in zip(loaded, codes):
        out[k] = c
    return out


def _encode_chunk(ctx: EvalContext, items: list[PairItem], errors: list[ItemError]) -> dict[str, tuple]:
    """item id -> (pos codes, neg codes) for the items whose two clips load and encode (one excluded entry
    per broken pair: the first reason)."""
    found: list[ItemError] = []
    codes = encode_clips(ctx, [(it.id, side) for it in items for side in (it.pos, it.neg)], found)
    broken = set()
    for e in found:
        if e.item not in broken:
            errors.append(e)
            broken.add(e.item)
    return {it.id: (codes[2 * j], codes[2 * j + 1]) for j, it in enumerate(items) if it.id not in broken}


def build_speech_requests(ctx: EvalContext, items: Sequence[PairItem], errors: list[ItemError],
                          bar: Progress | None = None):
    """(item, pos request, neg request) for every pair whose audio loads, encodes and fits the model
    (`bar` counts the pairs as they are encoded)."""
    built = []
    for start in range(0, len(items), ENCODE_CHUNK):
        chunk = list(items[start : start + ENCODE_CHUNK])
        codes = _encode_chunk(ctx, chunk, errors)
        for it in chunk:
            if it.id not in codes:
                continue
            try:
                reqs = [speech_request(c, ctx.vocab, ctx.cfg.audio) for c in codes[it.id]]
            except Exception as e:
                errors.append(ItemError(item=it.id, stage="encode", reason=f"{type(e).__name__}: {e}"))
                continue
            built.append((it, *reqs))
        if bar is not None:
            bar.update(len(chunk))
    return built


def encode_texts_or_none(ctx: EvalContext, texts: list[str], where: str) -> list[list[int] | None]:
    """The token ids of each text in one batch; None for a text that cannot be tokenized (the PUA policy),
    so the others still count."""
    try:
        return ctx.tokenizer.encode_texts(texts, where=where)
    except Exception:
        ids: list[list[int] | None] = []
        for t in texts:
            try:
                ids.append(ctx.tokenizer.encode_texts([t], where=where)[0])
            except Exception:
                ids.append(None)
        return ids


def build_text_requests(ctx: EvalContext, items: Sequence[PairItem], errors: list[ItemError],
                        text_of: Callable[[PairItem], tuple[str, str]], lowercase: bool = False):
    """Requests for text pairs; the text is stripped or kept as given per the protocol, and lowercased
    when asked (the SODA authors lowercase sBLIMP transcriptions)."""
    strip = ctx.cfg.rules.strip_pair_text
    built = []
    texts: list[str] = []
    keep: list[PairItem] = []
    for it in items:
        pair = [t or "" for t in text_of(it)]
        pair = [t.strip() if strip else t for t in pair]
        pair = [t.lower() if lowercase else t for t in pair]
        if not all(t.strip() for t in pair):
            errors.append(ItemError(item=it.id, stage="read", reason="empty text for the positive or the negative"))
            continue
        texts += pair
        keep.append(it)
    ids = encode_texts_or_none(ctx, texts, "pair text")
    for j, it in enumerate(keep):
        p, n = ids[2 * j], ids[2 * j + 1]
        if p is None or n is None:
            errors.append(ItemError(item=it.id, stage="encode", reason="text cannot be tokenized (see the PUA policy)"))
            continue
        try:
            built.append((it, text_request(p, ctx.vocab), text_request(n, ctx.vocab)))
        except ValueError as e:
            errors.append(ItemError(item=it.id, stage="encode", reason=str(e)))
    return built


def score_pairs(ctx: EvalContext, built, errors: list[ItemError],
                task: str = "pairs") -> list[tuple[PairItem, SpanScore, SpanScore]]:
    ok = []
    for it, p, n in built:
        why = check_request(p, ctx.lm) or check_request(n, ctx.lm)
        if why:
            errors.append(ItemError(item=it.id, stage="score", reason=why))
        else:
            ok.append((it, p, n))
    reqs: list[ScoreRequest] = [r for _, p, n in ok for r in (p, n)]
    with ctx.progress(task, len(reqs), unit="seq") as bar:
        scores = score_requests(ctx.lm, reqs, batch_size=ctx.cfg.batch_size, progress=bar.update)
    return [(it, scores[2 * j], scores[2 * j + 1]) for j, (it, _, _) in enumerate(ok)]


def pair_result(task: str, ctx: EvalContext, read: ReadResult, scored, errors: list[ItemError], protocol: dict,
                breakdown_keys: Sequence[str] = (), seconds: float = 0.0) -> TaskResult:
    if not scored:
        reasons = "; ".join(str(e) for e in (read.errors + errors)[:3])
        raise TaskError(f"task {task}: no pair could be scored ({len(read.items)} read, {len(read.errors)} read "
                        f"errors, {len(errors)} excluded){': ' + reasons if reasons else ''}")
    rules = ctx.cfg.rules
    pos_mean = [p.mean_logprob for _, p, _ in scored]
    neg_mean = [n.mean_logprob for _, _, n in scored]
    strict = pair_outcomes(pos_mean, neg_mean, TIE_WRONG)
    half = pair_outcomes(pos_mean, neg_mean, TIE_VALUE)
    outcomes = pair_outcomes(pos_mean, neg_mean, rules.tie_value)
    groups = [it.group or it.id for it, _, _ in scored]
    sums = pair_outcomes([p.sum_logprob for _, p, _ in scored], [n.sum_logprob for _, _, n in scored], rules.tie_value)
    grouped_half = grouped_mean(half, groups)
    by_groups = rules.pair_average == "groups"
    metrics = {
        "accuracy": grouped_half if by_groups else float(np.mean(outcomes)),
        # 95% percentile-bootstrap interval of `accuracy` (resampling pair groups, or pairs)
        "accuracy_ci95": mean_ci95(half, groups) if by_groups else mean_ci95(outcomes),
        "pairs": len(outcomes),
        "groups": len(set(groups)),
        # the protocol's tie rule over all pairs (no grouping)
        "accuracy_all_pairs": float(np.mean(outcomes)),
        "accuracy_strict": float(np.mean(strict)),
        "accuracy_ties_half": float(np.mean(half)),
        "accuracy_grouped_ties_half": grouped_half,
        "accuracy_sum_logprob": float(np.mean(sums)),
        "ties": int(sum(p == n for p, n in zip(pos_mean, neg_mean))),
    }
    breakdown = {k: breakdown_by(outcomes, [it.meta.get(k) for it, _, _ in scored]) for k in breakdown_keys}
    records = []
    if ctx.cfg.log_items:
        for (it, p, n), o in zip(scored, outcomes):
            records.append({"id": it.id, "group": it.group, "outcome": o,
                            "pos": {"mean": p.mean_logprob, "sum": p.sum_logprob, "tokens": p.num_tokens},
                            "neg": {"mean": n.mean_logprob, "sum": n.sum_logprob, "tokens": n.num_tokens},
                            "meta": it.meta})
    tie = "a tie counts as wrong" if rules.tie_value == TIE_WRONG else "a tie counts 0.5"
    protocol = {
        **protocol,
        "protocol": rules.name,
        "accuracy": f"share of pairs where the positive's score is strictly higher; {tie}",
        "aggregation": ("accuracy = mean over pair groups (e.g. ZeroSpeech ids over voices) of the mean outcome"
                        if rules.pair_average == "groups" else "accuracy = plain mean over all pairs")
                       + "; accuracy_all_pairs = the same tie rule, plain mean over pairs; accuracy_strict / "
                         "accuracy_ties_half = plain mean with ties wrong / half; accuracy_grouped_ties_half = "
                         "ties half, voices of a pair id averaged first",
        "batch_size": ctx.cfg.batch_size,
        "dtype": ctx.cfg.dtype,
    }
    return TaskResult(task=task, metrics=metrics,
                      counts=counts(len(read.items) + len(read.errors), len(read.errors), len(scored), len(errors)),
                      protocol=protocol, data=read.source.to_dict(), excluded=read.errors + errors, items=records,
                      breakdown={k: v for k, v in breakdown.items() if v}, seconds=seconds)


def run_speech_pairs(task: str, ctx: EvalContext, read: ReadResult, breakdown_keys: Sequence[str] = ()) -> TaskResult:
    ctx.require_codec(task)
    ctx.require_ids(task, [ctx.vocab.audio_start_id, ctx.vocab.audio_end_id, ctx.vocab.size - 1],
                    "the speech template and audio codes")
    read = read.limited(ctx.cfg.limit)
    errors: list[ItemError] = []
    with Timer() as t:
        with ctx.progress(f"{task} (encode)", len(read.items), unit="pair") as bar:
            built = build_speech_requests(ctx, read.items, errors, bar)
        scored = score_pairs(ctx, built, errors, task)
    codec = ctx.codec
    protocol = {
        "template": "BOS <|audio_start|>{audio}<|audio_end|>",
        "score": "mean log-prob over the scored audio tokens (markers not scored)",
        "audio": {**ctx.cfg.audio.describe(ctx.vocab), "codec": {"name": codec.name, "config_hash": codec.config_hash,
                                                              "sample_rate": codec.sample_rate}},
    }
    return pair_result(task, ctx, read, scored, errors, protocol, breakdown_keys, t.seconds)


def run_text_pairs(task: str, ctx: EvalContext, read: ReadResult, text_of: Callable[[PairItem], tuple[str, str]],
                   breakdown_keys: Sequence[str] = (), lowercase: bool = False) -> TaskResult:
    ctx.require_ids(task, [ctx.vocab.text_start_id, ctx.vocab.text_end_id], "the text markers")
    read = read.limited(ctx.cfg.limit)
    errors: list[ItemError] = []
    with Timer() as t:
        built = build_text_requests(ctx, read.items, errors, text_of, lowercase)
        scored = score_pairs(ctx, built, errors, task)
    text_rule = ("stripped of surrounding whitespace" if ctx.cfg.rules.strip_pair_text else "as given (not stripped)")
    protocol = {
        "template": "BOS <|text_start|>{text}<|text_end|>",
        "score": "mean log-prob over the text tokens (markers not scored)",
        "text": text_rule + ("; lowercased (sBLIMP transcriptions)" if lowercase else "") + "; no other normalisation",
    }
    return pair_result(task, ctx, read, scored, errors, protocol, breakdown_keys, t.seconds)
