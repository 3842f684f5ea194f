"""load_audio / save_wav: rates, mono mixing, segments, and a clear error for every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sodakit.audio.io import AudioError, load_audio, read_audio, resample, save_wav


def _tone(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_resamples_and_mixes_to_mono(tmp_path):
    stereo = np.stack([_tone(16000, 1.0), np.zeros(16000, np.float32)], axis=1)
    sf.write(tmp_path / "s.flac", stereo, 16000)
    wav = load_audio(tmp_path / "s.flac", 24000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 24000) <= 1
    # Mono mix halves the tone; a real resampler keeps its amplitude (within the int16 quantisation).
    assert abs(np.abs(wav[1000:-1000]).max() - 0.25) < 0.01
    # The 440 Hz tone is still the dominant frequency after resampling.
    spec = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spec) * 24000 / len(wav) - 440) < 2


def test_segment_read(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(8000, 3.0), 8000)
    wav, sr = read_audio(tmp_path / "a.wav", start=1.0, end=2.5)
    assert sr == 8000 and len(wav) == 12000
    assert len(load_audio(tmp_path / "a.wav", 16000, start=2.0)) == 16000
    with pytest.raises(AudioError, match="past the end"):
        load_audio(tmp_path / "a.wav", 16000, start=5.0)
    with pytest.raises(AudioError, match="not after"):
        load_audio(tmp_path / "a.wav", 16000, start=2.0, end=1.0)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b"not audio at all" * 10), "unreadable"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "empty"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT"), "non-finite"),
        (lambda p: sf.write(p, np.array([0.1, np.inf, 0.2], np.float32), 16000, subtype="FLOAT"), "non-finite"),
    ],
)
def test_bad_files_raise_with_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        load_audio(path, 16000)
    assert err.value.reason == reason
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav", 16000)


def test_save_wav_atomic_and_round_trip(tmp_path):
    wav = _tone(16000, 0.5)
    out = save_wav(tmp_path / "d" / "o.wav", wav, 16000)
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["o.wav"]
    back = load_audio(out, 16000)
    assert np.max(np.abs(back - wav)) < 1e-3
    with pytest.raises(AudioError, match="non-finite"):
        save_wav(tmp_path / "n.wav", np.array([np.nan], np.float32), 16000)
    assert not (tmp_path / "n.wav").exists()


def test_resample_noop_and_length():
    x = _tone(16000, 1.0)
    assert resample(x, 16000, 16000) is not None and len(resample(x, 16000, 16000)) == 16000
    assert len(resample(x, 16000, 24000)) == 24000


def test_real_librispeech_clip(shared_data):
    wav = load_audio(shared_data / "librispeech-mini" / "2412-153948-0000.flac", 24000)
    assert wav.dtype == np.float32 and len(wav) > 24000 and np.abs(wav).max() > 0.05
