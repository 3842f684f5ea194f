"""What counts as "silence" in generated audio codes, for the silence stop (a known failure mode, docs/soda.md#evaluation-protocol).

Flattened audio LMs can fail to close an audio span and keep emitting silence. The decoding loop stops a row
after N trailing silent frames; a detector says how many of the last frames are silent. Three detectors:

- `EnergySilence` (needs the codec): decode the tail with left context and call a frame silent when its
  RMS is below `threshold_db` dBFS. The reference definition; costs one codec decode per check.
- `CodeSetSilence`: a frame is silent when its semantic code is in a set of "silence codes", learnt by
  `calibrate_silence_codes` from what the codec emits for digital silence and low-level noise, plus the
  codes of real audio frames whose input energy is below the threshold (pauses), keeping only codes that
  are silent in at least `min_purity` of their occurrences. Costs nothing at decoding time.
- `RepeatSilence`: no codec needed; a tail of frames whose semantic codes take at most `max_distinct`
  values is a stuck loop (held silence, a hum). Speech changes its semantic code every few frames at
  12.5 Hz, so a 2 s tail with <= 2 distinct codes is not speech.

`measure_detectors` scores detectors against the energy labels of real audio; `benchmarks/bench_generate.py
--silence CODEC` prints it. Measured on LibriSpeech-mini (two files for calibration, two held out, each
followed by 2 s of digital silence and 2 s of -60 dBFS noise) through the offline codec fitted on 4 min
of synthetic speech: `codes` precision 0.97 / recall 0.63, longest run called silent inside speech 3
frames, at least 28 frames found inside each silence; `repeat` (<= 2 codes) precision 1.0 / recall 0.40,
0 frames inside speech, >= 21 inside silence; `repeat` (1 code) 1.0 / 0.24, 0 and 17; `energy` 0.99 /
0.56, 5 and 25. Every detector separates pauses (<= 0.4 s) from real silence (>= 1.36 s), so a stop after
6-16 frames (0.5-1.3 s) fires in silence and not in speech. Recall below 1 comes from frames next to
speech, which the codec smears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Speech RMS is typically -35..-15 dBFS; pauses in read speech sit below -50 dBFS. -45 dBFS separates them.
DEFAULT_THRESHOLD_DB = -45.0
# Codes silent in >= 90% of their occurrences count as silence codes (a code shared by speech is excluded).
DEFAULT_MIN_PURITY = 0.9
# A code seen fewer times than this in the calibration audio is not trusted either way.
DEFAULT_MIN_COUNT = 2


class SilenceDetector(Protocol):
    name: str

    def describe(self) -> dict: ...

    def trailing_silence(self, frames: np.ndarray, limit: int) -> int:
        """Number of trailing silent frames (at most `limit`) of codes [F, K] of one audio span."""
        ...


def frame_rms_db(wav: np.ndarray, samples_per_frame: int) -> np.ndarray:
    """RMS in dBFS of each whole or partial frame of a waveform (digital silence -> -120 dB)."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    n = -(-wav.size // samples_per_frame) if wav.size else 0
    padded = np.zeros(n * samples_per_frame)
    padded[: wav.size] = wav
    frames = padded.reshape(n, samples_per_frame)
    counts = np.full(n, samples_per_frame, dtype=np.float64)
    if n and wav.size % samples_per_frame:
        counts[-1] = wav.size % samples_per_frame
    rms = np.sqrt((frames**2).sum(axis=1) / counts)
    return 20.0 * np.log10(np.maximum(rms, 1e-6))


def _trailing_true(flags: np.ndarray, limit: int) -> int:
    tail = np.asarray(flags, dtype=bool)[::-1][:limit]
    stop = np.flatnonzero(~tail)
    return int(stop[0]) if stop.size else int(tail.size)


@dataclass
class RepeatSilence:
    """Trailing frames whose semantic codes take at most `max_distinct` distinct values."""

    max_distinct: int = 2
    semantic_codebook: int = 0
    name: str = "repeat"

    def describe(self) -> dict:
        return {"detector": self.name, "max_distinct": self.max_distinct, "semantic_codebook": self.semantic_codebook}

    def trailing_silence(self, frames: np.ndarray, limit: int) -> int:
        codes = np.asarray(frames)[:, self.semantic_codebook][::-1][:limit]
        seen: set[int] = set()
        for i, c in enumerate(codes.tolist()):
            seen.add(c)
            if len(seen) > self.max_distinct:
                return i
        return len(codes)

    def silent_flags(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame flag for measurement: frame t is in a run of >= 2 frames sharing <= max_distinct codes
        over a window of 8 frames ending at t (a cheap per-frame view of the same rule)."""
        codes = np.asarray(frames)[:, self.semantic_codebook]
        out = np.zeros(len(codes), dtype=bool)
        for t in range(len(codes)):
            window = codes[max(0, t - 7) : t + 1]
            out[t] = len(window) >= 8 and len(set(window.tolist())) <= self.max_distinct
        return out


@dataclass
class CodeSetSilence:
    """A frame is silent when its semantic code is one of `codes`."""

    codes: frozenset[int]
    semantic_codebook: int = 0
    calibration: dict = field(default_factory=dict)
    name: str = "codes"

    def describe(self) -> dict:
        return {
            "detector": self.name,
            "semantic_codebook": self.semantic_codebook,
            "num_codes": len(self.codes),
            "codes": sorted(self.codes),
            "calibration": self.calibration,
        }

    def silent_flags(self, frames: np.ndarray) -> np.ndarray:
        codes = np.asarray(frames)[:, self.semantic_codebook]
        return np.isin(codes, np.fromiter(self.codes, dtype=np.int64, count=len(self.codes)))

    def trailing_silence(self, frames: np.ndarray, limit: int) -> int:
        return _trailing_true(self.silent_flags(np.asarray(frames)[-limit:]), limit)


class EnergySilence:
    """Decode the last frames (with `context_frames` of left context) and threshold their RMS."""

    name = "energy"

    def __init__(self, codec, threshold_db: float = DEFAULT_THRESHOLD_DB, context_frames: int = 12) -> None:
        self.codec = codec
        self.threshold_db = float(threshold_db)
        self.context_frames = int(context_frames)

    def describe(self) -> dict:
        return {"detector": self.name, "threshold_db": self.threshold_db, "context_frames": self.context_frames}

    def silent_flags(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        wav = self.codec.decode(frames.T[None].astype(np.int64))[0]
        return frame_rms_db(wav, self.codec.samples_per_frame)[: len(frames)] < self.threshold_db

    def trailing_silence(self, frames: np.ndarray, limit: int) -> int:
        frames = np.asarray(frames)
        window = frames[-(limit + self.context_frames) :]
        flags = self.silent_flags(window)[-limit:]
        return _trailing_true(flags, limit)


def synthetic_silence(sample_rate: int, seconds: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """Digital silence and white noise at -70 and -60 dBFS RMS: audio that is silence by any definition."""
    n = int(seconds * sample_rate)
    rng = np.random.default_rng(seed)
    out = [np.zeros(n, dtype=np.float32)]
    for db in (-70.0, -60.0):
        out.append((rng.standard_normal(n) * 10 ** (db / 20)).astype(np.float32))
    return out


def calibrate_silence_codes(
    codec,
    waveforms: Sequence[np.ndarray] = (),
    sample_rate: int | None = None,
    threshold_db: float = DEFAULT_THRESHOLD_DB,
    min_purity: float = DEFAULT_MIN_PURITY,
    min_count: int = DEFAULT_MIN_COUNT,
) -> CodeSetSilence:
    """Learn the semantic codes of silence for `codec` from synthetic silence plus optional real audio.

    Each frame of the real audio is labelled silent when its input RMS is below `threshold_db`; a code
    becomes a silence code when >= min_purity of its frames (synthetic ones included) are silent and it
    occurs at least `min_count` times.
    """
    sem = int(codec.semantic_codebooks[0]) if getattr(codec, "semantic_codebooks", None) else 0
    sr = codec.sample_rate if sample_rate is None else int(sample_rate)
    synth = synthetic_silence(codec.sample_rate)
    real = list(waveforms)
    codes = codec.encode_audio(synth, codec.sample_rate)
    if real:
        codes += codec.encode_audio(real, sr)
    silent_count: dict[int, int] = {}
    total_count: dict[int, int] = {}
    for i, c in enumerate(codes):
        sem_codes = np.asarray(c)[sem]
        if i < len(synth):
            labels = np.ones(len(sem_codes), dtype=bool)
        else:
            from sodakit.audio.io import resample, to_mono

            wav = resample(to_mono(np.asarray(real[i - len(synth)], dtype=np.float32)), sr, codec.sample_rate)
            labels = frame_rms_db(wav, codec.samples_per_frame)[: len(sem_codes)] < threshold_db
        for code, lab in zip(sem_codes.tolist(), labels.tolist()):
            total_count[code] = total_count.get(code, 0) + 1
            silent_count[code] = silent_count.get(code, 0) + int(lab)
    chosen = frozenset(
        c for c, n in total_count.items() if n >= min_count and silent_count.get(c, 0) / n >= min_purity
    )
    return CodeSetSilence(
        codes=chosen,
        semantic_codebook=sem,
        calibration={
            "threshold_db": threshold_db,
            "min_purity": min_purity,
            "min_count": min_count,
            "synthetic_items": len(synth),
            "real_items": len(real),
            "codec": getattr(codec, "name", "?"),
            "codec_hash": getattr(codec, "config_hash", None),
        },
    )


def measure_detectors(
    codec,
    detectors: Sequence,
    waveforms: Sequence[np.ndarray],
    sample_rate: int,
    speech_seconds: Sequence[float] | None = None,
    threshold_db: float = DEFAULT_THRESHOLD_DB,
) -> list[dict]:
    """Score detectors against the input-energy labels of `waveforms` (each: speech, then known silence
    from `speech_seconds[i]` on). Per detector: per-frame precision/recall of "silent"; the longest run
    it calls silent inside the speech part (a silence stop needs more frames than that, or it cuts
    speech); and, over the files, the smallest of each file's longest silent run inside its known
    silence (a stop needs at most that many frames to fire in every file)."""
    from sodakit.audio.io import resample, to_mono

    codes = codec.encode_audio(list(waveforms), sample_rate)
    rows = []
    for det in detectors:
        tp = fp = fn = 0
        in_speech, at_end = 0, None
        for i, (wav, c) in enumerate(zip(waveforms, codes)):
            frames = np.asarray(c).T  # [F, K]
            w = resample(to_mono(np.asarray(wav, dtype=np.float32)), sample_rate, codec.sample_rate)
            truth = frame_rms_db(w, codec.samples_per_frame)[: len(frames)] < threshold_db
            pred = det.silent_flags(frames)
            tp += int((pred & truth).sum())
            fp += int((pred & ~truth).sum())
            fn += int((~pred & truth).sum())
            cut = len(frames) if speech_seconds is None else min(len(frames), int(speech_seconds[i] * codec.frame_rate))
            run = 0
            for p in pred[:cut].tolist():
                run = run + 1 if p else 0
                in_speech = max(in_speech, run)
            if speech_seconds is not None:
                best = run = 0
                for p in pred[cut:].tolist():
                    run = run + 1 if p else 0
                    best = max(best, run)
                at_end = best if at_end is None else min(at_end, best)
        rows.append(
            {
                "detector": det.describe(),
                "precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"),
                "silent_frames_true": tp + fn,
                "frames": sum(len(np.asarray(c).T) for c in codes),
                "longest_silent_run_in_speech": in_speech,
                "longest_silent_run_in_silence": at_end,
            }
        )
    return rows
