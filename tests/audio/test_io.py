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


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_file_cut_off_mid_write_is_truncated_not_shorter(tmp_path, fmt):
    """A 10.5 s file cut to a third: libsndfile would quietly return ~3.5 s (WAV) or fail over to ffmpeg,
    which decodes what it can (FLAC); the transcript still describes 10.5 s, so it is an error."""
    full = tmp_path / f"full.{fmt}"
    sf.write(full, 0.1 * np.random.default_rng(0).standard_normal(168000).astype(np.float32), 16000)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    with pytest.raises(AudioError) as err:
        load_audio(cut, 16000)
    assert err.value.reason == "truncated" and "the header declares 10.500s" in str(err.value) and str(cut) in str(err.value)
    if fmt == "wav":  # the header is checked before any read: a cut WAV is refused whatever part is asked for
        with pytest.raises(AudioError, match="truncated"):
            read_audio(cut, start=0.5, end=1.0)
    assert len(load_audio(full, 16000)) == 168000


def test_open_ended_wav_headers_are_not_truncation(tmp_path):
    """Streaming writers leave the data size at 0xFFFFFFFF (or 0): nothing is promised, nothing is missing."""
    path = tmp_path / "stream.wav"
    sf.write(path, _tone(16000, 1.0), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    from sodakit.audio.io import declared_wav_frames

    assert declared_wav_frames(path) is None
    assert len(load_audio(path, 16000)) == 16000


def test_an_end_past_the_file_is_refused_beyond_the_tolerance(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(8000, 10.5), 8000)
    with pytest.raises(AudioError) as err:
        read_audio(tmp_path / "a.wav", start=2.0, end=60.0)
    assert err.value.reason == "duration" and "end=60.0s is past the end of the file (10.500s)" in str(err.value)
    wav, _ = read_audio(tmp_path / "a.wav", start=10.0, end=10.55)  # rounding of times: the file's real end
    assert len(wav) == 4000


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
