"""scripts/crossmodal_probe.py: transcript tokens bucketed by length and place, audio-first tokens counted
only when their audio is in the window they were predicted in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sodakit.tokens.vocab import Vocab

V = Vocab(text_vocab_size=64, bos_id=1, eos_id=2, num_codebooks=2, codebook_size=16)
TS, TE, AS, AE = V.text_start_id, V.text_end_id, V.audio_start_id, V.audio_end_id
A = V.audio_offset  # an audio code


@pytest.fixture(scope="module")
def probe():
    path = Path(__file__).resolve().parents[2] / "scripts" / "crossmodal_probe.py"
    spec = importlib.util.spec_from_file_location("crossmodal_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Scorer:
    """log p = -id / 100, minus 0.5 once an audio-start marker is in the row's context."""

    max_positions = None
    vocab_size = V.size

    def token_logprobs(self, ids):
        seen_audio = torch.cumsum((ids == AS).long(), dim=1)[:, :-1] > 0
        return -ids[:, 1:].double() / 100.0 - 0.5 * seen_audio.double()


# one recording of two segments: a one-token transcript (5) and a five-token one (5 6 7 8 9)
AUDIO_FIRST = np.array([V.bos_id, AS, A, A, A, A, AE, TS, 5, TE, AS, *[A] * 6, AE, TS, 5, 6, 7, 8, 9, TE, V.eos_id])
TEXT_FIRST = np.array([V.bos_id, TS, 5, TE, AS, A, A, A, A, AE, TS, 5, 6, 7, 8, 9, TE, AS, *[A] * 6, AE, V.eos_id])
DOCS = [("text_first", TEXT_FIRST), ("audio_first", AUDIO_FIRST)]


def test_transcript_places(probe):
    assert probe.transcript_places(AUDIO_FIRST, V, True) == [(8, 1, 0, 1)] + [(19 + k, 5, k, 10) for k in range(5)]
    assert probe.transcript_places(TEXT_FIRST, V, False) == [(2, 1, 0, -1)] + [(11 + k, 5, k, -1) for k in range(5)]


def test_whole_documents_in_one_window(probe):
    acc = probe.text_nll_by_place(_Scorer(), DOCS, V, width=64)
    # text-first: the first transcript sees no audio (0.05), the second follows the first segment's audio
    assert acc[("text_first", "1")] == pytest.approx([0.05, 1])
    assert acc[("audio_first", "1")] == pytest.approx([0.55, 1])
    assert acc[("text_first", "4+")] == pytest.approx([0.35 + 2.5, 5])
    assert acc[("audio_first", "4+")] == pytest.approx([0.35 + 2.5, 5])
    assert acc[("audio_first", "3rd")] == pytest.approx([0.57, 1])
    rows = {r["bucket"]: r for r in probe.gain_table(acc)}
    assert rows["1"]["gain"] == pytest.approx(-0.5) and rows["4+"]["gain"] == pytest.approx(0.0)
    assert list(rows) == ["1", "4+", "1st", "2nd", "3rd", "4th", "5th"]  # no 2-3 token transcript, no 6th place


def test_a_transcript_whose_audio_the_window_cut_off_is_left_out(probe):
    # windows of 16 tokens: positions 1..15, then 16..30 (token 15 is the second window's context only);
    # the second audio-first transcript (19..23) is predicted in the second window, its audio starts at 10
    acc = probe.text_nll_by_place(_Scorer(), DOCS, V, width=16)
    assert ("audio_first", "4+") not in acc
    assert acc[("audio_first", "1")] == pytest.approx([0.55, 1])
    assert acc[("text_first", "4+")] == pytest.approx([0.35 + 2.5, 5])
    assert [r["bucket"] for r in probe.gain_table(acc)] == ["1"]
