"""Offline TTS through flite / espeak-ng: voice listing, determinism, rates, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sodakit.audio import synth

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@needs_flite
@needs_espeak
def test_voice_listing():
    voices = synth.available_voices("en")
    assert "flite:slt" in voices and "espeak:en-us" in voices
    assert "flite:awb_time" not in voices  # limited-domain clock voice
    assert all(v.startswith(("flite:", "espeak:")) for v in voices)
    with_variants = synth.available_voices("en-us", variants=True)
    assert "espeak:en-us+f3" in with_variants and not any(v.startswith("flite:") for v in with_variants)


@needs_flite
def test_flite_deterministic_and_resampled():
    a = synth.synthesize("The quick brown fox.", "flite:slt", sample_rate=24000)
    b = synth.synthesize("The quick brown fox.", "flite:slt", sample_rate=24000)
    c = synth.synthesize("The quick brown fox.", "flite:slt", sample_rate=16000)
    assert a.dtype == np.float32 and a.ndim == 1 and np.array_equal(a, b)
    assert abs(len(a) / 24000 - len(c) / 16000) < 1e-3 and np.abs(a).max() > 0.05
    fast = synth.synthesize("The quick brown fox.", "flite:slt", sample_rate=16000, speed=2.0)
    assert len(fast) < 0.75 * len(c)


@needs_espeak
def test_espeak_variant_and_option_like_text():
    a = synth.synthesize("-v hello there", "espeak:en-us+f3")  # text is never read as options
    b = synth.synthesize("-v hello there", "espeak:en-us+m3")
    assert len(a) > 4000 and not np.array_equal(a[: min(len(a), len(b))], b[: min(len(a), len(b))])


@pytest.mark.parametrize("voice", ["slt", "flite:nope", "espeak:xx-yy", "espeak:en-us+nope", "other:x"])
def test_bad_voice_names(voice):
    with pytest.raises(synth.SynthesisError, match="voice"):
        synth.synthesize("hello", voice)


def test_empty_text():
    with pytest.raises(synth.SynthesisError, match="empty"):
        synth.synthesize("  ", "flite:slt")
