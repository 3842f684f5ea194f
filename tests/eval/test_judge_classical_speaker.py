"""The classical MFCC-statistics speaker judge separates clearly different TTS voices."""

import numpy as np
import pytest

from sodakit.audio.synth import SynthesisError, synthesize
from sodakit.eval.judges import make_speaker_judge

TEXTS = ["The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore every summer."]


def test_same_voice_more_similar_than_other_voices():
    try:
        voices = {v: [synthesize(t, v, 16_000) for t in TEXTS] for v in ("flite:slt", "flite:rms", "espeak:en-us")}
    except SynthesisError as e:
        pytest.skip(f"TTS voices unavailable: {e}")
    judge = make_speaker_judge("classical")
    assert judge.describe()["comparable_to_paper"] is False
    for v, (first, _) in voices.items():
        same = judge.similarity([first], [voices[v][1]], 16_000)[0]
        for u, (_, second) in voices.items():
            if u != v:
                assert same > judge.similarity([first], [second], 16_000)[0], (v, u)


def test_identical_clip_similarity_one_and_resampling():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16_000) * 0.1).astype(np.float32)
    judge = make_speaker_judge("classical")
    assert judge.similarity([x], [x], 16_000)[0] == pytest.approx(1.0)
    assert judge.embed([x, x], 16_000).shape == (2, 57)
    with pytest.raises(ValueError, match=r"waveform 0: .*too short"):
        judge.embed([x[:100]], 16_000)
    with pytest.raises(ValueError, match="unknown speaker judge"):
        make_speaker_judge("ecapa")
