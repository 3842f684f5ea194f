"""Offline voices of the demo: voice pools, batched espeak-ng rendering, phoneme input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sodakit.demo.voices import DemoVoice, join_recording, render_sentences, voice_pool

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")


@needs_espeak
def test_voice_pool_is_distinct_and_reproducible():
    pool = voice_pool(60, seed=0, flite_share=0.2)
    assert len({v.label for v in pool}) == 60 and pool == voice_pool(60, seed=0, flite_share=0.2)
    flite = sum(v.engine == "flite" for v in pool)
    assert flite in (0, 12)  # 12 when flite is installed
    assert all(30 <= v.pitch <= 70 and 0.8 <= v.speed <= 1.2 for v in pool)


@needs_espeak
def test_batched_espeak_rendering_cuts_each_sentence_out():
    voice = DemoVoice("espeak:en-us+m3", 1.08, 40)
    texts = ["the dog sleeps.", "anna found three red boxes near the river.", "do the cats like the rain?"]
    batch = render_sentences(texts, voice)
    single = [render_sentences([t], voice)[0] for t in texts]
    assert len(batch) == 3
    for b, s in zip(batch, single):
        # about the same speech as when each sentence is read alone (the final lengthening differs a little)
        assert abs(len(b) - len(s)) < 0.15 * 16000 and np.abs(b[:200]).max() > 1e-3
    assert len(batch[1]) > 1.5 * len(batch[0])


def test_recordings_join_sentences_with_pauses():
    a, b = np.ones(8000, np.float32) * 0.1, np.ones(4000, np.float32) * 0.1
    wav, spans = join_recording([a, b], 16000)
    assert spans == [(0.0, 0.5), (0.8, 1.05)] and len(wav) == 8000 + 4000 + 2 * 4800
