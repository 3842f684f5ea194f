"""BLiMP-style minimal pairs from templates, for machines without the BLiMP release.

Each phenomenon is a small grammar that builds a grammatical sentence and a minimally different
ungrammatical one (one word changed), in the spirit of BLiMP (Warstadt et al. 2020), from which the
phenomenon names are borrowed. The pairs are written in BLiMP's JSONL layout so they go through the
same reader (`sodakit.eval.readers.blimp`) and tasks (tBLIMP, and sBLIMP once spoken) as the real data.
They are a smoke-test stand-in, not a replacement: numbers on them are not comparable to BLiMP's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from sodakit.config import atomic_write_text

NOUNS = [  # (singular, plural)
    ("dog", "dogs"), ("teacher", "teachers"), ("child", "children"), ("doctor", "doctors"), ("bird", "birds"),
    ("farmer", "farmers"), ("student", "students"), ("painter", "painters"), ("cat", "cats"), ("driver", "drivers"),
]
PLACES = ["the house", "the river", "the old bridge", "the market", "the school", "the station", "the garden"]
VERBS = [  # (3rd singular, plural/base)
    ("runs", "run"), ("sings", "sing"), ("sleeps", "sleep"), ("waits", "wait"), ("laughs", "laugh"),
    ("works", "work"), ("walks", "walk"), ("reads", "read"),
]
OBJECTS = [("book", "books"), ("apple", "apples"), ("chair", "chairs"), ("letter", "letters"), ("picture", "pictures")]
IRREGULAR = [("eaten", "ate", "the apple"), ("written", "wrote", "a letter"), ("taken", "took", "the bus"),
             ("seen", "saw", "the movie"), ("given", "gave", "a present"), ("broken", "broke", "the window"),
             ("driven", "drove", "the car"), ("spoken", "spoke", "to the teacher")]
PEOPLE_F = ["The girl", "My sister", "The woman", "Her mother", "The queen"]
PEOPLE_M = ["The boy", "My brother", "The man", "His father", "The king"]
INTRANSITIVE = ["arrived", "slept", "laughed", "fell", "waited"]
TRANSITIVE = ["found", "opened", "painted", "cleaned", "carried"]


def _agreement(rng: random.Random) -> tuple[str, str]:
    (sg, pl), (v3, vb) = rng.choice(NOUNS), rng.choice(VERBS)
    place = rng.choice(PLACES)
    if rng.random() < 0.5:
        return f"The {sg} near {place} {v3}.", f"The {sg} near {place} {vb}."
    return f"The {pl} near {place} {vb}.", f"The {pl} near {place} {v3}."


def _determiner_noun(rng: random.Random) -> tuple[str, str]:
    sg, pl = rng.choice(OBJECTS)
    verb = rng.choice(["found", "liked", "bought", "moved"])
    who = rng.choice(["She", "He", "The teacher", "My friend"])
    if rng.random() < 0.5:
        return f"{who} {verb} this {sg}.", f"{who} {verb} these {sg}."
    return f"{who} {verb} these {pl}.", f"{who} {verb} this {pl}."


def _anaphor_gender(rng: random.Random) -> tuple[str, str]:
    verb = rng.choice(["saw", "hurt", "praised", "described", "helped"])
    if rng.random() < 0.5:
        who = rng.choice(PEOPLE_F)
        return f"{who} {verb} herself.", f"{who} {verb} himself."
    who = rng.choice(PEOPLE_M)
    return f"{who} {verb} himself.", f"{who} {verb} herself."


def _irregular_participle(rng: random.Random) -> tuple[str, str]:
    part, past, obj = rng.choice(IRREGULAR)
    who = rng.choice(PEOPLE_F + PEOPLE_M)
    return f"{who} has {part} {obj}.", f"{who} has {past} {obj}."


def _npi_licensor(rng: random.Random) -> tuple[str, str]:
    verb = rng.choice(["seen", "visited", "heard", "painted"])
    thing = rng.choice(["the castle", "that song", "the island", "a fox"])
    return f"Nobody has ever {verb} {thing}.", f"Somebody has ever {verb} {thing}."


def _intransitive(rng: random.Random) -> tuple[str, str]:
    who = rng.choice(PEOPLE_F + PEOPLE_M)
    verb = rng.choice(INTRANSITIVE)
    obj = rng.choice(["the door", "the car", "a letter", "the book"])
    return f"{who} {rng.choice(TRANSITIVE)} {obj}.", f"{who} {verb} {obj}."


PHENOMENA: dict[str, tuple[str, Callable[[random.Random], tuple[str, str]]]] = {
    "regular_plural_subject_verb_agreement": ("subject_verb_agreement", _agreement),
    "determiner_noun_agreement": ("determiner_noun_agreement", _determiner_noun),
    "anaphor_gender_agreement": ("anaphor_agreement", _anaphor_gender),
    "irregular_past_participle_verbs": ("irregular_forms", _irregular_participle),
    "npi_present": ("npi_licensing", _npi_licensor),
    "intransitive": ("argument_structure", _intransitive),
}


def generate_pairs(n_per_phenomenon: int, seed: int = 0) -> dict[str, list[dict]]:
    """Distinct (good, bad) pairs per phenomenon, as BLiMP JSONL records."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {}
    for uid, (term, make) in PHENOMENA.items():
        seen: set[tuple[str, str]] = set()
        for _ in range(50 * n_per_phenomenon):
            if len(seen) >= n_per_phenomenon:
                break
            seen.add(make(rng))
        out[uid] = [
            {"sentence_good": good, "sentence_bad": bad, "field": "template", "linguistics_term": term,
             "UID": uid, "pairID": str(i), "source": "sodakit.eval.minimal_pairs"}
            for i, (good, bad) in enumerate(sorted(seen))
        ]
    return out


def write_blimp_jsonl(directory: str | Path, n_per_phenomenon: int = 20, seed: int = 0) -> Path:
    """Write template pairs as `<UID>.jsonl` files (BLiMP's layout); returns the directory."""
    directory = Path(directory)
    for uid, records in generate_pairs(n_per_phenomenon, seed).items():
        atomic_write_text(directory / f"{uid}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return directory
