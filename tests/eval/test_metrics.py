import math

import pytest

from sodakit.eval.metrics import (
    TIE_VALUE,
    choice_accuracy,
    normalize_text,
    number_to_words,
    pair_accuracy,
    wer,
    wer_details,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HELLO, World!", "hello world"),
        ("DON'T  stop\tbelieving.", "dont stop believing"),
        ("don’t", "dont"),  # typographic apostrophe
        ("well-known end.Start", "well known end start"),
        ("  spaced   out  ", "spaced out"),
        ("Ｆｕｌｌ width", "full width"),  # NFKC
        ("50% off: $3", "50 off 3"),
        ("Café naïve", "café naïve"),  # letters with accents are kept
        ("...", ""),
    ],
)
def test_normalize_text_cases(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_numbers_to_words():
    assert normalize_text("Room 42, floor 3.", numbers="words") == "room forty two floor three"
    assert normalize_text("In 1999", numbers="words") == "in one thousand nine hundred ninety nine"
    assert number_to_words(0) == "zero"
    assert number_to_words(110) == "one hundred ten"
    assert number_to_words(2_000_017) == "two million seventeen"
    with pytest.raises(ValueError, match="numbers"):
        normalize_text("x", numbers="roman")


def test_wer_counts_and_normalisation():
    # The normalised hypothesis differs from the reference in 1 substitution, 1 deletion, 1 insertion.
    d = wer_details(["The cat sat on the mat.", "Hello there"], ["the bat sat on mat", "hello there friend"])
    assert (d.substitutions, d.deletions, d.insertions) == (1, 1, 1)
    assert d.ref_words == 8
    assert d.wer == pytest.approx(3 / 8)
    assert wer(["A B"], ["a, b!"]) == 0.0
    # Without normalisation, case and punctuation count as errors.
    assert wer(["A B"], ["a, b!"], normalize=False) == 1.0


def test_wer_empty_hypothesis_is_all_deletions_and_empty_reference_is_an_error():
    assert wer(["one two three"], [""]) == 1.0
    with pytest.raises(ValueError, match=r"empty reference transcript at item\(s\) \[1\]"):
        wer(["fine", "?!"], ["fine", "x"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])


def test_pair_accuracy_known_answers():
    pos = [1.0, 2.0, 3.0, 4.0]
    neg = [0.0, 1.0, 2.0, 3.0]
    assert pair_accuracy(pos, neg) == 1.0  # a scorer that prefers positives
    assert pair_accuracy(neg, pos) == 0.0
    const = [0.7] * 4
    assert pair_accuracy(const, const) == TIE_VALUE == 0.5  # a constant scorer: the documented tie value
    assert pair_accuracy([1.0, 0.0, 5.0], [0.0, 1.0, 5.0]) == pytest.approx(0.5)  # win, loss, tie
    with pytest.raises(ValueError, match="NaN score at item"):
        pair_accuracy([math.nan], [0.0])
    with pytest.raises(ValueError, match="no pairs"):
        pair_accuracy([], [])


def test_choice_accuracy_known_answers():
    golds = [0, 3, 2]
    perfect = [[1 if j == g else 0 for j in range(4)] for g in golds]
    assert choice_accuracy(perfect, golds) == 1.0
    assert choice_accuracy([[0.0] * 4] * 3, golds) == pytest.approx(0.25)  # constant scorer: 1/num_choices
    assert choice_accuracy([[1, 1, 0, 0]], [1]) == 0.5
    with pytest.raises(ValueError, match="gold index 4"):
        choice_accuracy([[0, 0, 0, 0]], [4])
