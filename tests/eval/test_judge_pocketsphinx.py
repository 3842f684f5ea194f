"""The offline ASR judge on real speech (LibriSpeech) and on resampled input."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from sodakit.audio.synth import synthesize
from sodakit.eval.judges import PocketSphinxASR, make_asr_judge
from sodakit.eval.metrics import wer


def test_pocketsphinx_transcribes_real_librispeech(shared_data):
    d = shared_data / "librispeech-mini"
    refs = dict(line.split("\t") for line in (d / "trans.txt").read_text().splitlines())
    wav, sr = sf.read(d / "1089-134686-0001.wav")
    judge = PocketSphinxASR()
    hyp16 = judge.transcribe([wav], sr)[0]
    # A 2010s GMM-HMM is far from Whisper, but real speech must come out mostly right.
    assert wer([refs["1089-134686-0001"]], [hyp16]) < 0.4
    # The same audio at 24 kHz (the codec rate) goes through soxr and must decode about as well.
    import soxr

    wav24 = soxr.resample(wav, sr, 24_000)
    hyp24 = judge.transcribe([wav24], 24_000)[0]
    assert wer([refs["1089-134686-0001"]], [hyp24]) < 0.4


def test_pocketsphinx_silence_and_bad_input():
    judge = make_asr_judge("pocketsphinx")
    assert judge.comparable_to_paper is False
    assert judge.describe()["comparable_to_paper"] is False
    out = judge.transcribe([np.zeros(16_000, dtype=np.float32), np.zeros(0, dtype=np.float32), np.zeros(100)], 16_000)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    with pytest.raises(ValueError, match="waveform 0: waveform holds NaN"):
        judge.transcribe([np.full(100, np.nan)], 16_000)
    with pytest.raises(ValueError, match="unknown ASR judge"):
        make_asr_judge("nope")


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
def test_a_transcript_does_not_depend_on_what_was_decoded_before():
    # The front end adapts its cepstral mean and noise estimate as it goes: without a reset per utterance
    # three seconds of noise before this sentence changed its transcript ("yeah all dogs" -> "the old dogs").
    speech = synthesize("the old dogs sleep near the river.", "flite:slt", 16_000)
    noise = (0.5 * np.random.default_rng(0).standard_normal(3 * 16_000)).astype(np.float32)
    alone = PocketSphinxASR().transcribe([speech], 16_000)[0]
    judge = PocketSphinxASR()
    after_noise = judge.transcribe([noise, speech], 16_000)[1]
    assert after_noise == alone
    assert judge.transcribe([speech], 16_000)[0] == alone  # and the same judge again, after both
