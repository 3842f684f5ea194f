"""Metrics: text normalisation for WER, corpus / per-utterance WER (jiwer), pairwise / multiple-choice
accuracy.

Three WER normalisers, each applied to the reference and the hypothesis alike:

- `normalize_soda_asr` (`soda-asr-norm`): the SODA authors' ASR rule. A fixed set of ASCII punctuation
  and typographic quotes is *deleted* (not replaced by a space: "well-known" -> "wellknown",
  "DON'T" -> "dont"), whitespace runs collapse, the ends are stripped, then lowercase. Every other
  character stays: "&", "/", "%", digits, em dashes, accented letters.
- `normalize_seedtts` (`seedtts-en-norm`): seed-tts-eval's English rule for TTS. Every ASCII punctuation
  character and every CJK/full-width punctuation mark (the `zhon.hanzi.punctuation` set) is deleted
  except the ASCII apostrophe, which is kept ("don't" stays "don't"); then lowercase.
- `normalize_text` (`sodakit-norm-1`), sodakit's own rule:

1. Unicode NFKC (full-width forms, ligatures -> plain characters);
2. lowercase;
3. apostrophes (' and the typographic ’ ‘) are deleted, so "DON'T" and "dont" agree;
4. every other punctuation or symbol character (Unicode categories P* and S*) becomes a space, so
   "well-known" -> "well known" and "end.Start" -> "end start";
5. optionally (`numbers="words"`) runs of digits become English words ("42" -> "forty two"); the
   default keeps digits, because the published protocol only lowercases and strips punctuation;
6. whitespace runs collapse to one space; leading/trailing space is removed.

Everything recorded in results carries the normaliser's name and options, so a number can be traced
back to the exact rule set that produced it.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import jiwer
import numpy as np
import sacrebleu

NORMALIZATION_VERSION = "sodakit-norm-1"
_APOSTROPHES = {"'", "\u2019", "\u2018", "\u02bc"}
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def number_to_words(n: int) -> str:
    """Non-negative integer -> English words ("1999" -> "one thousand nine hundred ninety nine").

    Digit runs longer than 15 digits are read digit by digit (they are ids, not quantities).
    """
    if n < 0:
        raise ValueError(f"number_to_words expects n >= 0, got {n}")
    if n >= 10**15:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return number_to_words(head) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


# The characters the SODA authors' ASR normaliser deletes: . , ! ? ; : " ' - ( ) [ ] { } and the
# typographic single and double quotes.
_SODA_ASR_DELETE = str.maketrans("", "", ".,!?;:\"'-()[]{}\u2018\u2019\u201c\u201d")


def normalize_soda_asr(text: str) -> str:
    """The SODA authors' ASR WER normalisation (module docstring)."""
    return _SPACES.sub(" ", text.translate(_SODA_ASR_DELETE)).strip().lower()


def _seedtts_delete_table() -> dict[int, None]:
    from zhon.hanzi import punctuation as cjk_punctuation

    return str.maketrans("", "", "".join(c for c in string.punctuation + cjk_punctuation if c != "'"))


_SEEDTTS_DELETE = _seedtts_delete_table()


def normalize_seedtts(text: str) -> str:
    """seed-tts-eval's English WER normalisation (module docstring); jiwer then splits on whitespace."""
    return text.translate(_SEEDTTS_DELETE).lower()


def normalize_text(text: str, numbers: Literal["keep", "words"] = "keep") -> str:
    """Normalise a transcript for WER (rules in the module docstring)."""
    if numbers not in ("keep", "words"):
        raise ValueError(f"numbers must be 'keep' or 'words', got {numbers!r}")
    text = unicodedata.normalize("NFKC", text).lower()
    out = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] in "PS" else ch)
    text = "".join(out)
    if numbers == "words":
        text = _DIGITS.sub(lambda m: " " + number_to_words(int(m.group())) + " ", text)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class WERResult:
    """Corpus-level WER: (substitutions + deletions + insertions) / reference words."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    num_utterances: int

    def to_dict(self) -> dict:
        return asdict(self)


def wer_details(
    refs: Sequence[str],
    hyps: Sequence[str],
    normalize: bool = True,
    numbers: Literal["keep", "words"] = "keep",
    normalizer: Callable[[str], str] | None = None,
) -> WERResult:
    """Corpus WER with its error counts, after `normalizer` (default: `normalize_text` with `numbers`).
    References that are empty (after normalisation) are errors naming their index: a WER over them is
    undefined. Empty hypotheses are fine (all deletions)."""
    if len(refs) != len(hyps):
        raise ValueError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("wer: no utterances")
    if normalize:
        norm = normalizer or (lambda t: normalize_text(t, numbers=numbers))
        refs = [norm(r) for r in refs]
        hyps = [norm(h) for h in hyps]
    empty = [i for i, r in enumerate(refs) if not r.strip()]
    if empty:
        raise ValueError(f"wer: empty reference transcript at item(s) {empty[:10]} (after normalisation)")
    # jiwer splits on whitespace; an empty hypothesis must be passed as "" (all deletions).
    out = jiwer.process_words(list(refs), [h if h.strip() else "" for h in hyps])
    ref_words = out.hits + out.substitutions + out.deletions
    errors = out.substitutions + out.deletions + out.insertions
    return WERResult(
        wer=errors / ref_words,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions,
        hits=out.hits,
        ref_words=ref_words,
        num_utterances=len(refs),
    )


def utterance_wers(refs: Sequence[str], hyps: Sequence[str], normalizer: Callable[[str], str]) -> list[float]:
    """WER of each (reference, hypothesis) pair on its own, after `normalizer` on both sides: what
    seed-tts-eval averages (its TTS WER is the mean of these, not a corpus WER)."""
    if len(refs) != len(hyps):
        raise ValueError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    out = []
    for i, (r, h) in enumerate(zip(refs, hyps)):
        r, h = normalizer(r), normalizer(h)
        if not r.strip():
            raise ValueError(f"wer: empty reference transcript at item {i} (after normalisation)")
        out.append(float(jiwer.process_words(r, h if h.strip() else "").wer))
    return out


def wer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER (a fraction, not a percentage) after `normalize_text` on both sides."""
    return wer_details(refs, hyps, normalize=normalize).wer


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (tokenize 13a) after `normalize_text` on both sides: ASR output has no case or
    punctuation, so the references lose theirs too."""
    return float(sacrebleu.corpus_bleu([normalize_text(h) for h in hyps], [[normalize_text(r) for r in refs]]).score)


def _check_scores(name: str, scores: Sequence[float]) -> list[float]:
    vals = [float(s) for s in scores]
    bad = [i for i, v in enumerate(vals) if math.isnan(v)]
    if bad:
        raise ValueError(f"{name}: NaN score at item(s) {bad[:10]}")
    return vals


# sodakit's tie rule: a scorer that cannot tell the pair apart is at chance (0.5), never at 0 or 1.
TIE_VALUE = 0.5
# The SODA authors' rule: a pair counts only when the positive scores strictly higher; a tie is wrong.
TIE_WRONG = 0.0


def pair_outcomes(pos_scores: Sequence[float], neg_scores: Sequence[float], tie: float = TIE_VALUE) -> list[float]:
    """Per pair: 1 if the positive scores higher, 0 if lower, `tie` on an exact tie."""
    pos = _check_scores("pair_accuracy positives", pos_scores)
    neg = _check_scores("pair_accuracy negatives", neg_scores)
    if len(pos) != len(neg):
        raise ValueError(f"pair_accuracy: {len(pos)} positive scores but {len(neg)} negative scores")
    return [1.0 if p > n else (0.0 if p < n else tie) for p, n in zip(pos, neg)]


def pair_accuracy(pos_scores: Sequence[float], neg_scores: Sequence[float], tie: float = TIE_VALUE) -> float:
    """Share of pairs where the positive scores higher; a tie counts `tie` (default half)."""
    outcomes = pair_outcomes(pos_scores, neg_scores, tie)
    if not outcomes:
        raise ValueError("pair_accuracy: no pairs")
    return sum(outcomes) / len(outcomes)


def choice_outcome(scores: Sequence[float], gold: int) -> float:
    """One multiple-choice item: 1 if the gold choice is the unique maximum; with a tie for the
    maximum, 1/(number tied) if gold is among them (the expected accuracy of a random tie-break)."""
    vals = _check_scores("choice scores", scores)
    if not 0 <= gold < len(vals):
        raise ValueError(f"gold index {gold} outside 0..{len(vals) - 1}")
    best = max(vals)
    tied = [i for i, v in enumerate(vals) if v == best]
    return 1.0 / len(tied) if gold in tied else 0.0


def choice_argmax(scores: Sequence[float]) -> int:
    """Index of the highest score; on a tie the first of the tied choices (what `numpy.argmax` returns,
    and so what lm-evaluation-harness predicts)."""
    vals = _check_scores("choice scores", scores)
    if not vals:
        raise ValueError("choice_argmax: no choices")
    return max(range(len(vals)), key=lambda i: (vals[i], -i))


def choice_argmax_outcome(scores: Sequence[float], gold: int) -> float:
    """One multiple-choice item: 1 if `choice_argmax` is the gold choice, else 0 (a tie for the maximum
    counts for the first tied choice only)."""
    if not 0 <= gold < len(scores):
        raise ValueError(f"gold index {gold} outside 0..{len(scores) - 1}")
    return 1.0 if choice_argmax(scores) == gold else 0.0


def choice_accuracy(score_rows: Sequence[Sequence[float]], golds: Sequence[int]) -> float:
    """Multiple-choice accuracy with ties split evenly (a constant scorer gets 1/num_choices)."""
    if len(score_rows) != len(golds):
        raise ValueError(f"choice_accuracy: {len(score_rows)} items but {len(golds)} gold labels")
    if not golds:
        raise ValueError("choice_accuracy: no items")
    return sum(choice_outcome(s, g) for s, g in zip(score_rows, golds)) / len(golds)


# Bootstrap resamples for the 95% intervals reported next to accuracies and WERs. Seeded: the same
# outcomes always give the same interval.
BOOTSTRAP_SAMPLES = 2000


def bootstrap_ratio_ci(numerators: Sequence[float], denominators: Sequence[float], level: float = 0.95,
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of sum(numerators) / sum(denominators), resampling items.

    With unit denominators this is the interval of a mean (an accuracy over pair groups); with word
    counts it is the interval of a corpus WER over utterances."""
    num, den = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1 or num.size == 0:
        raise ValueError(f"bootstrap: need equally long non-empty sequences, got {num.shape} and {den.shape}")
    idx = np.random.default_rng(seed).integers(0, num.size, size=(samples, num.size))
    ratios = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_ci95(values: Sequence[float], groups: Sequence[str] | None = None) -> list[float]:
    """95% interval of a mean; with `groups`, of the mean over groups of each group's mean (resampling groups)."""
    if groups is not None:
        by: dict[str, list[float]] = {}
        for v, g in zip(values, groups):
            by.setdefault(g, []).append(float(v))
        values = [sum(v) / len(v) for v in by.values()]
    return list(bootstrap_ratio_ci(values, [1.0] * len(values)))


def wer_ci95(refs: Sequence[str], hyps: Sequence[str], normalizer: Callable[[str], str] | None = None) -> list[float]:
    """95% interval of the corpus WER of `wer_details`, resampling utterances."""
    per = [wer_details([r], [h], normalizer=normalizer) for r, h in zip(refs, hyps)]
    errors = [p.substitutions + p.deletions + p.insertions for p in per]
    return list(bootstrap_ratio_ci(errors, [p.ref_words for p in per]))
