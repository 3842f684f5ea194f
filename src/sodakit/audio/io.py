"""Reading and writing audio: float32 mono at the rate the caller asks for, with clear errors.

Everything that touches an audio file goes through `load_audio`, so a bad file fails the same way
everywhere: an `AudioError` naming the file and one of a few reasons (`unreadable`, `empty`,
`non-finite`, `layout`, `truncated`, `duration`), which `sodakit tokenize` writes to its errors file
instead of aborting.

Audio that is shorter than it claims is an error, never a silently shorter segment with the full
transcript: a file whose header promises more audio than it holds (a WAV cut off mid-copy: libsndfile
quietly reports only what is there, so the RIFF header is read here; a FLAC whose frames end early) is
`truncated`, and a requested `end` more than `DURATION_TOLERANCE_S` past the end of the file is
`duration`. Within the tolerance the segment ends at the file's real end.

Decoding is libsndfile (`soundfile`: WAV, FLAC, OGG/Vorbis/Opus, MP3, ...); formats it does not know
(m4a/AAC, webm, ...) fall back to the `ffmpeg` binary when it is installed. Resampling is `soxr`
(a real band-limited resampler), after mixing to mono.

A path may be a URL (`s3://...`, see sodakit.storage): the file is fetched into a temporary local file,
decoded the same way, and errors name the URL.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from sodakit import storage
from sodakit.fileio import temp_file, writing

# soxr quality: "HQ" is transparent for speech and ~2x faster than "VHQ".
RESAMPLE_QUALITY = "HQ"
# How far a requested end (or a dataset's start/end) may exceed the real audio: rounding of times in
# manifests, not a missing word. Beyond it the segment is refused (reason `duration`).
DURATION_TOLERANCE_S = 0.1


class AudioError(ValueError):
    """An audio file that cannot be used. `reason` is one of REASONS; the message names the file."""

    REASONS = ("unreadable", "empty", "non-finite", "layout", "truncated", "duration")

    def __init__(self, path: str | os.PathLike | None, reason: str, detail: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        self.detail = detail
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason}: {detail}")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono [N] or multi-channel [N, C] float array with soxr; a no-op at equal rates."""
    wav = np.asarray(wav, dtype=np.float32)
    if int(orig_sr) == int(target_sr) or wav.shape[0] == 0:
        return wav
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    return soxr.resample(wav, int(orig_sr), int(target_sr), quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


def to_mono(wav: np.ndarray) -> np.ndarray:
    """Average the channels of an [N, C] array (soundfile's layout); [N] passes through."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        return wav
    if wav.ndim != 2:
        raise ValueError(f"expected audio of shape [N] or [N, C], got {wav.shape}")
    return wav.mean(axis=1, dtype=np.float32)


def check_waveform(wav: np.ndarray, path: str | os.PathLike | None = None) -> np.ndarray:
    """Raise AudioError for an empty or non-finite waveform; return it as float32 otherwise."""
    wav = np.asarray(wav)
    if wav.size == 0:
        raise AudioError(path, "empty", "no samples")
    if not np.issubdtype(wav.dtype, np.floating):
        raise AudioError(path, "layout", f"expected floating-point samples, got {wav.dtype}")
    wav = wav.astype(np.float32, copy=False)
    if not np.isfinite(wav).all():
        bad = int(np.size(wav) - np.count_nonzero(np.isfinite(wav)))
        raise AudioError(path, "non-finite", f"{bad} NaN/Inf samples")
    return wav


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, num_frames, channels) without decoding the samples (soundfile formats only; a URL
    is read by ranges: the header only)."""
    try:
        if storage.is_remote(path):
            with storage.open_file(path, "rb") as f:
                info = sf.info(f)
        else:
            info = sf.info(str(Path(path)))
    except Exception as e:
        raise AudioError(path, "unreadable", f"{type(e).__name__}: {e}") from e
    return int(info.samplerate), int(info.frames), int(info.channels)


@contextmanager
def _fetched(url: str) -> Iterator[Path]:
    """A remote audio file as a temporary local file (same suffix, for ffmpeg's format guess)."""
    fd, tmp = temp_file(storage.cache_dir("staging"), prefix="audio-", suffix=Path(storage.basename(url)).suffix)
    os.close(fd)
    try:
        try:
            storage.download(url, tmp)
        except FileNotFoundError as e:
            raise AudioError(url, "unreadable", "no such file") from e
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def declared_wav_frames(source: str | os.PathLike | io.BufferedIOBase) -> int | None:
    """Frames a RIFF/WAVE header promises (data chunk size / block align), or None for anything else:
    not a plain WAV, or a size left open (0 or 0xFFFFFFFF, as streaming writers leave it)."""
    f = open(source, "rb") if isinstance(source, str | os.PathLike) else source
    try:
        f.seek(0)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size)
                if len(fmt) < 16:
                    return None
                block_align = struct.unpack("<H", fmt[12:14])[0]
                f.seek(size & 1, 1)
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)  # chunks are padded to an even size
    finally:
        if f is not source:
            f.close()
        else:
            f.seek(0)


def check_not_truncated(where: str | os.PathLike | None, declared: int | None, decoded: int, sr: int) -> None:
    """AudioError `truncated` when fewer frames decode than the header declares (more than 1 ms short)."""
    if declared is not None and declared - decoded > sr // 1000:
        raise AudioError(
            where, "truncated",
            f"the header declares {declared / sr:.3f}s but only {decoded / sr:.3f}s of audio is in the file "
            f"(cut off while being written or copied?)",
        )


def _check_end(path: Path, end: float | None, total: int, sr: int) -> None:
    if end is not None and end * sr > total + DURATION_TOLERANCE_S * sr:
        raise AudioError(path, "duration", f"end={end}s is past the end of the file ({total / sr:.3f}s)")


def read_audio(
    path: str | os.PathLike, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode a file (or the [start, end) seconds of it) at its own rate: ([N] or [N, C] float32, rate).

    A file shorter than its header says (`truncated`) or an `end` past the file's end by more than
    DURATION_TOLERANCE_S (`duration`) is an AudioError; within the tolerance the read stops at the end.
    """
    if storage.is_remote(path):
        with _fetched(os.fspath(path)) as local:
            try:
                return read_audio(local, start, end)
            except AudioError as e:
                raise AudioError(path, e.reason, e.detail) from e
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "unreadable", "no such file")
    if start is not None and start < 0:
        raise AudioError(path, "layout", f"start={start} is negative")
    if start is not None and end is not None and end <= start:
        raise AudioError(path, "layout", f"end={end} is not after start={start}")
    header_frames = None  # what the container promises, when soundfile can open it
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            header_frames = int(f.frames)
            if f.format in ("WAV", "WAVEX"):  # libsndfile shrinks `frames` to what a cut-off WAV holds; the header does not
                check_not_truncated(path, declared_wav_frames(path), header_frames, sr)
            _check_end(path, end, header_frames, sr)
            first = 0 if start is None else round(start * sr)
            last = f.frames if end is None else min(f.frames, round(end * sr))
            if start is not None and first >= f.frames:
                raise AudioError(path, "layout", f"start={start}s is past the end ({f.frames / sr:.3f}s)")
            f.seek(first)
            wav = f.read(max(0, last - first), dtype="float32", always_2d=False)
    except AudioError:
        raise
    except Exception as e:
        wav, sr = _read_with_ffmpeg(path, e)
        # A decoder that gave up mid-file (e.g. a FLAC that "lost sync") and ffmpeg decoding what it could.
        check_not_truncated(path, header_frames, len(wav), sr)
        _check_end(path, end, len(wav), sr)
        first = 0 if start is None else round(start * sr)
        last = len(wav) if end is None else min(len(wav), round(end * sr))
        wav = wav[first:last]
    return wav, sr


def load_audio(
    path: str | os.PathLike, sample_rate: int, start: float | None = None, end: float | None = None
) -> np.ndarray:
    """Float32 mono samples of `path` (optionally its [start, end) seconds) at `sample_rate`.

    Raises AudioError (reason `unreadable`, `empty`, `non-finite` or `layout`) naming the file.
    """
    wav, sr = read_audio(path, start, end)
    if wav.ndim == 2 and wav.shape[1] == 0:
        raise AudioError(path, "layout", "zero channels")
    wav = check_waveform(wav, path)
    return check_waveform(resample(to_mono(wav), sr, sample_rate), path)


def _read_with_ffmpeg(path: Path, cause: Exception) -> tuple[np.ndarray, int]:
    """Decode formats libsndfile lacks through ffmpeg (raw float32 on stdout), keeping channels."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(path, "unreadable", f"{type(cause).__name__}: {cause} (and ffmpeg is not installed)")
    try:
        probe = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True, timeout=60
        )
        sr, channels = _parse_ffmpeg_stream(probe.stderr)
        if sr is None:
            raise AudioError(path, "unreadable", f"{cause}; ffmpeg finds no audio stream")
        out = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
             "-f", "f32le", "-acodec", "pcm_f32le", "-"],
            capture_output=True, timeout=600,
        )
    except subprocess.TimeoutExpired as e:
        raise AudioError(path, "unreadable", "ffmpeg timed out") from e
    if out.returncode != 0:
        msg = out.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(path, "unreadable", f"{cause}; ffmpeg: {msg[-1] if msg else 'failed'}")
    wav = np.frombuffer(out.stdout, dtype="<f4").astype(np.float32)
    if channels > 1:
        wav = wav[: len(wav) // channels * channels].reshape(-1, channels)
    return wav, sr


def _parse_ffmpeg_stream(stderr: str) -> tuple[int | None, int]:
    """Sample rate and channel count of the first audio stream in `ffmpeg -i` output."""
    for line in stderr.splitlines():
        if "Audio:" not in line:
            continue
        parts = [p.strip() for p in line.split("Audio:", 1)[1].split(",")]
        sr = next((int(p.split()[0]) for p in parts if p.endswith("Hz")), None)
        layout = parts[2] if len(parts) > 2 else "mono"
        channels = {"mono": 1, "stereo": 2}.get(layout.split("(")[0].strip(), 0)
        if not channels:
            digits = "".join(ch for ch in layout if ch.isdigit())
            channels = int(digits) if digits else 1
        return sr, channels
    return None, 1


def save_wav(path: str | os.PathLike, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a mono (or [N, C]) waveform atomically (temp file + rename). Samples are clipped to [-1, 1]."""
    path = Path(path)
    wav = np.asarray(wav, dtype=np.float32)
    if not np.isfinite(wav).all():
        raise AudioError(path, "non-finite", "refusing to write NaN/Inf samples")
    with writing(path), storage.staged_file(path, suffix=".tmp.wav") as tmp:
        sf.write(tmp, np.clip(wav, -1.0, 1.0), int(sample_rate), subtype=subtype, format="WAV")
    return path
