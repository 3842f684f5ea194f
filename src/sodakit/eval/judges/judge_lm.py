"""A word bigram language model for the PocketSphinx judge, in ARPA format, estimated from text.

    sodakit eval judge-lm TEXT [TEXT ...] --out LM.arpa      then: sodakit eval ... asr_judge=pocketsphinx:LM.arpa

PocketSphinx's bundled LM is general English; on a narrow domain (the demo's own English, a test set
with its own vocabulary) it misreads clean speech that a modern judge such as Whisper would get right
(docs/demo.md measures it). A judge whose errors come from its LM rather than from the audio hides what a
TTS model got right, so `pocketsphinx:LM.arpa` decodes with an LM of the domain's text instead.

The estimate is interpolated absolute discounting, written in ARPA's backoff form:

    p(w | h) = max(c(h w) - D, 0) / c(h) + lambda(h) p1(w),   lambda(h) = D n(h) / c(h)

where n(h) is the number of distinct words seen after h and p1 an add-one unigram over the vocabulary
(every word of the text, and </s>). For a bigram seen in the text the file lists p(w | h); for any other
word the decoder backs off to lambda(h) p1(w), which is exactly the interpolated estimate, so every
history's distribution sums to one. Only the text given is read: build the LM from training text, never
from the references it will judge.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from sodakit.fileio import atomic_write_text

DISCOUNT = 0.75  # the usual absolute discount: most of a rare bigram's count is kept, the rest backs off
BOS, EOS = "<s>", "</s>"
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n+")


def lm_words(sentence: str) -> list[str]:
    """A sentence as the judge's words: lowercase, punctuation dropped (apostrophes kept, as in "don't")."""
    return _WORD.findall(sentence.lower())


def bigram_arpa(sentences: Iterable[str], discount: float = DISCOUNT) -> str:
    """The ARPA text of a word bigram LM estimated from `sentences` (one sentence each)."""
    if not 0.0 < discount < 1.0:
        raise ValueError(f"bigram_arpa: discount must be in (0, 1), got {discount}")
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    for sentence in sentences:
        words = lm_words(sentence)
        if not words:
            continue
        tokens = [BOS, *words, EOS]
        unigrams.update(tokens[1:])
        bigrams.update(itertools.pairwise(tokens))
    if not unigrams:
        raise ValueError("bigram_arpa: no words in the text (an LM needs at least one sentence)")
    vocab = sorted(unigrams)
    total = sum(unigrams.values())
    p1 = {w: (unigrams[w] + 1) / (total + len(vocab)) for w in vocab}
    history: Counter[str] = Counter()
    followers: Counter[str] = Counter()
    for (h, _), c in bigrams.items():
        history[h] += c
        followers[h] += 1

    def backoff(h: str) -> float:
        return discount * followers[h] / history[h]

    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}", f"ngram 2={len(bigrams)}", "", "\\1-grams:",
             f"-99.0000 {BOS} {math.log10(backoff(BOS)):.6f}"]  # <s> is never predicted, only a history
    for w in vocab:
        lines.append(f"{math.log10(p1[w]):.6f} {w}" + (f" {math.log10(backoff(w)):.6f}" if w in history else ""))
    lines += ["", "\\2-grams:"]
    for (h, w), c in sorted(bigrams.items()):
        p = (c - discount) / history[h] + backoff(h) * p1[w]
        lines.append(f"{math.log10(p):.6f} {h} {w}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def arpa_vocabulary(path: str | Path) -> list[str]:
    """The words of an ARPA file's unigram section (without <s>, </s>, <unk>)."""
    words: list[str] = []
    section = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                section = line == "\\1-grams:"
                continue
            if section and line:
                fields = line.split()
                if len(fields) < 2:
                    raise ValueError(f"{path}: malformed unigram line {line!r} (expected: logprob word [backoff])")
                if fields[1] not in (BOS, EOS, "<unk>"):
                    words.append(fields[1])
    if not words:
        raise ValueError(f"{path}: no \\1-grams: section with words (not an ARPA language model?)")
    return words


def write_judge_lm(sentences: Iterable[str], path: str | Path, discount: float = DISCOUNT) -> Path:
    """Estimate the bigram LM of `sentences` and write it to `path` (temp file, then rename)."""
    path = Path(path)
    atomic_write_text(path, bigram_arpa(sentences, discount))
    return path


def text_sentences(text: str) -> list[str]:
    """Sentences of a text: split at line breaks and after . ? ! followed by white space."""
    return [t for t in _SENTENCE_END.split(text) if t.strip()]


def main(argv: list[str]) -> int:
    """`sodakit eval judge-lm`: the judge's bigram LM of text files (sentences split at lines and . ? !)."""
    ap = argparse.ArgumentParser(prog="sodakit eval judge-lm",
                                 description="Write the PocketSphinx judge's word bigram LM (ARPA) of text files: "
                                             "use it as asr_judge=pocketsphinx:LM.arpa. Build it from training "
                                             "text, never from the references it will judge.")
    ap.add_argument("texts", nargs="+", help="UTF-8 text files")
    ap.add_argument("--out", required=True, help="the ARPA file to write")
    ap.add_argument("--discount", type=float, default=DISCOUNT, help=f"absolute discount (default {DISCOUNT})")
    args = ap.parse_args(argv)
    sentences: list[str] = []
    try:
        for name in args.texts:
            try:
                sentences += text_sentences(Path(name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"{name}: cannot read it as UTF-8 text ({e})") from e
        write_judge_lm(sentences, args.out, args.discount)
    except ValueError as e:
        print(f"sodakit eval judge-lm: {e}", file=sys.stderr)
        return 2
    words = {w for sentence in sentences for w in lm_words(sentence)}
    print(f"{args.out}: word bigram of {len(sentences)} sentences ({len(words)} words)")
    return 0
