"""Offline voices of the demo: voice pools, batched espeak-ng rendering, phoneme input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sodakit.demo.voices import DemoVoice, join_recording, render_phonemes, render_sentences, voice_pool

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


@needs_espeak
def test_phoneme_input_and_recordings():
    voice = DemoVoice("espeak:en-us", 1.0, 50)
    word = render_phonemes("[[r'ab@t]]", voice)
    assert 0.2 * 16000 < len(word) < 1.0 * 16000
    wav, spans = join_recording([word, word], 16000)
    assert spans[0][0] == 0.0 and spans[1][0] > spans[0][1] and abs(len(wav) / 16000 - spans[1][1] - 0.3) < 0.01
    with pytest.raises(Exception, match="espeak-ng voice"):
        render_phonemes("[[k'at]]", DemoVoice("flite:slt"))
