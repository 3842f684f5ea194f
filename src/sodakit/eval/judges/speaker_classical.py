"""Classical speaker embedding: MFCC statistics over voiced frames, compared by cosine similarity.

Offline stand-in for the paper's WavLM-large speaker-verification judge. Recipe (fixed, recorded in
results as `describe()`):

1. resample to 16 kHz, pre-emphasis 0.97;
2. 25 ms Hamming windows every 10 ms, 512-point power spectrum, 40 triangular mel filters
   (HTK mel scale, 20 Hz .. 7.6 kHz), log, DCT-II (orthonormal) -> cepstra c1..c19 (c0, the energy, is
   dropped: loudness is not identity);
3. keep frames whose log energy is within 40 dB of the loudest frame (a crude voice-activity gate);
4. embedding = [mean(c), std(c), mean(delta c)], each cepstral coefficient scaled by a fixed liftering
   weight so that the low, large-variance coefficients do not dominate the cosine;
5. the long-term mean of each coefficient is mostly channel + speaker; without a background population
   there is no normalisation beyond that.

It separates clearly different voices (e.g. two TTS voices, male vs female) but is far weaker than a
neural speaker model: its similarities are NOT comparable to the published SIM numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy.fft import dct

from sodakit.eval.judges._audio import resample
from sodakit.eval.judges.speaker_common import cosine_rows

SAMPLE_RATE = 16_000
WIN, HOP, NFFT = 400, 160, 512  # 25 ms / 10 ms at 16 kHz
NUM_MELS, NUM_CEPS = 40, 20
FMIN, FMAX = 20.0, 7600.0
VAD_DB = 40.0
LIFTER = 22  # the classic HTK sinusoidal lifter


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """[NUM_MELS, NFFT//2+1] triangular filters on the HTK mel scale."""
    mels = np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), NUM_MELS + 2)
    bins = _mel_to_hz(mels) * NFFT / SAMPLE_RATE
    freqs = np.arange(NFFT // 2 + 1)
    fb = np.zeros((NUM_MELS, freqs.size))
    for m in range(NUM_MELS):
        lo, mid, hi = bins[m], bins[m + 1], bins[m + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
    return fb


def mfcc(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16 kHz mono -> (cepstra [frames, NUM_CEPS], log energy [frames])."""
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1]).astype(np.float64)
    if x.size < WIN:
        x = np.pad(x, (0, WIN - x.size))
    n = 1 + (x.size - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hamming(WIN)[None, :]
    power = np.abs(np.fft.rfft(frames, NFFT, axis=1)) ** 2 / NFFT
    energy = np.log(power.sum(axis=1) + 1e-10)
    logmel = np.log(power @ mel_filterbank().T + 1e-10)
    ceps = dct(logmel, type=2, norm="ortho", axis=1)[:, :NUM_CEPS]
    return ceps, energy


def _deltas(c: np.ndarray) -> np.ndarray:
    """Regression deltas over +-2 frames (edges repeated)."""
    p = np.pad(c, ((2, 2), (0, 0)), mode="edge")
    return (p[3:-1] - p[1:-3] + 2 * (p[4:] - p[:-4])) / 10.0


class ClassicalSpeakerEmbedding:
    name = "classical-mfcc-stats"
    comparable_to_paper = False

    def describe(self) -> dict:
        return {
            "judge": self.name,
            "kind": "speaker",
            "features": f"MFCC c1..c{NUM_CEPS - 1} ({NUM_MELS} mel filters {FMIN:g}-{FMAX:g} Hz, 25/10 ms, lifter {LIFTER})",
            "frames": f"log energy within {VAD_DB:g} dB of the loudest frame",
            "embedding": "[mean, std, mean delta] of liftered cepstra",
            "similarity": "cosine",
            "sample_rate": SAMPLE_RATE,
            "comparable_to_paper": False,
            "note": "offline stand-in for WavLM-large speaker verification; SIM not comparable to published numbers",
        }

    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        lift = 1.0 + (LIFTER / 2.0) * np.sin(np.pi * np.arange(1, NUM_CEPS) / LIFTER)
        rows = []
        for i, wav in enumerate(waveforms):
            x = resample(wav, sample_rate, SAMPLE_RATE, where=f"waveform {i}")
            if x.size < WIN:
                raise ValueError(f"waveform {i}: {x.size} samples at 16 kHz is too short for a speaker embedding")
            ceps, energy = mfcc(x)
            voiced = energy >= energy.max() - VAD_DB / 10.0 * np.log(10.0)
            c = ceps[:, 1:] * lift / lift.max()
            d = _deltas(c)
            c, d = c[voiced], d[voiced]
            rows.append(np.concatenate([c.mean(axis=0), c.std(axis=0), d.mean(axis=0)]).astype(np.float32))
        return np.stack(rows) if rows else np.zeros((0, 3 * (NUM_CEPS - 1)), np.float32)

    def similarity(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], sample_rate: int) -> list[float]:
        if len(a) != len(b):
            raise ValueError(f"similarity: {len(a)} clips vs {len(b)} clips")
        return cosine_rows(self.embed(a, sample_rate), self.embed(b, sample_rate))
