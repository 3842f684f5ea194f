"""Many offline voices for the demo's speech, and fast rendering of many sentences per voice.

A tiny model learns what a word sounds like only if it hears it from many voices. espeak-ng offers
~100 voice variants and renders about a thousand times faster than real time, so most of the corpus is
espeak-ng: English accents x variants x pitch x speaking rate. flite's unit-selection voices (slt, rms,
awb) are far slower (~40x real time) but much more natural, and the offline ASR judge (PocketSphinx)
understands them (measured on the demo's sentences: codec resynthesis WER 17-30% for flite voices,
70-80% for espeak-ng), so they read part of the corpus and the spoken prompts of the TTS evaluation.

espeak-ng reads a whole list of sentences in one call (SSML with a long break between sentences) and
the sentences are cut at those breaks; a call whose breaks cannot be found (a count mismatch) falls back
to one call per sentence. flite has no usable break, so it always reads sentence by sentence.
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sodakit.audio.synth import ESPEAK_DEFAULT_WPM, SynthesisError, parse_voice, synthesize

# Break inserted between sentences in one espeak-ng call, and the silence that marks it in the output.
BREAK_MS = 700
MIN_BREAK_SECONDS = 0.45
SILENCE_LEVEL = 1e-3  # |sample| below this is silence (espeak-ng writes exact zeros in breaks)
PAUSE_SECONDS = 0.3  # silence between sentences of a recording

ESPEAK_ACCENTS = ("en-us", "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029")
# espeak-ng variants that still sound like ordinary speakers (the list also holds robots and whispers).
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "adam", "Andy", "Annie", "aunty", "belinda", "benjamin", "david", "ed", "edward",
                   "john", "linda", "max", "Michael", "paul", "rob", "robert", "steph", "travis", "victor", "zac")
FLITE_VOICES = ("slt", "rms", "awb", "kal16")


@dataclass(frozen=True)
class DemoVoice:
    voice: str  # sodakit.audio.synth voice name, e.g. espeak:en-gb+f3 or flite:slt
    speed: float = 1.0
    pitch: int = 50  # espeak-ng -p (0..99, 50 = the voice's own)

    @property
    def label(self) -> str:
        return f"{self.voice}@{self.speed:.2f}/{self.pitch}"

    @property
    def engine(self) -> str:
        return self.voice.split(":", 1)[0]


def voice_pool(n: int, seed: int, flite_share: float = 0.3, flite_voices: tuple[str, ...] = FLITE_VOICES,
               accents: tuple[str, ...] = ESPEAK_ACCENTS, variants: tuple[str, ...] = ESPEAK_VARIANTS,
               pitches: tuple[int, ...] = tuple(range(30, 71, 5)),
               speeds: tuple[float, ...] = (1.0, 0.92, 1.08, 0.85, 1.15)) -> list[DemoVoice]:
    """n distinct voices: a `flite_share` of flite voices at a few rates, the rest espeak-ng accent x variant
    x pitch x rate (flite voices take the `speeds` in order). Only installed engines are used (all espeak-ng
    if flite is missing, and vice versa)."""
    rng = random.Random(seed)
    flite = [v for v in (f"flite:{x}" for x in flite_voices) if usable_voice(v)]
    espeak = [f"espeak:{a}+{v}" for a in dict.fromkeys(accents) for v in variants]
    espeak = [v for v in espeak if usable_voice(v)]
    if not flite and not espeak:
        raise SynthesisError("no offline voice: install espeak-ng and/or flite")
    n_flite = round(n * flite_share) if espeak else n
    if not flite:
        n_flite = 0
    out: list[DemoVoice] = []
    seen: set[str] = set()
    k = 0
    while len(out) < n_flite:
        v = DemoVoice(flite[k % len(flite)], speeds[(k // len(flite)) % len(speeds)])
        k += 1
        if v.label in seen:
            if k > 10 * n:
                break
            continue
        seen.add(v.label)
        out.append(v)
    if n - len(out) > len(espeak) * len(speeds) * len(pitches):
        raise SynthesisError(f"voice_pool: {n} voices asked for, but the espeak-ng choices give at most "
                             f"{len(espeak) * len(speeds) * len(pitches)}")
    while len(out) < n:
        name = rng.choice(espeak)
        v = DemoVoice(name, rng.choice(speeds), rng.choice(pitches))
        if v.label not in seen:
            seen.add(v.label)
            out.append(v)
    return out


def engine_rota(voices: list[DemoVoice], n: int, flite_share: float) -> list[DemoVoice]:
    """A voice for each of `n` recordings: flite takes a `flite_share` of them (all of them when there is
    no espeak-ng voice, none when there is no flite voice), and each engine cycles through its voices.

    A golden-ratio sequence spreads the flite turns evenly over the recordings, and a stride of 7 spreads
    one engine's consecutive turns over its voices (pools list similar voices next to each other). The
    corpus and the ASR clips both take their voices from here, so the test clips come in the training mix.
    """
    engines = {e: [v for v in voices if v.engine == e] for e in ("flite", "espeak")}
    if not engines["flite"] and not engines["espeak"]:
        raise ValueError("engine_rota: no flite or espeak-ng voice in the pool")
    count, out = {"flite": 0, "espeak": 0}, []
    for j in range(n):
        flite_turn = (j * 0.381966 + 0.19) % 1.0 < flite_share
        engine = "flite" if engines["flite"] and (flite_turn or not engines["espeak"]) else "espeak"
        group = engines[engine]
        out.append(group[(count[engine] * 7) % len(group)])
        count[engine] += 1
    return out


def usable_voice(voice: str) -> bool:
    try:
        parse_voice(voice)
        return True
    except SynthesisError:
        return False


# Leading/trailing audio quieter than this fraction of the peak is cut: flite pads its output with ~0.2 s
# of low noise (about -60 dB) that an absolute threshold keeps.
TRIM_LEVEL = 0.01


def _trim(wav: np.ndarray) -> np.ndarray:
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    idx = np.flatnonzero(np.abs(wav) > max(SILENCE_LEVEL, TRIM_LEVEL * peak))
    return wav[idx[0] : idx[-1] + 1] if idx.size else wav


def _espeak(ssml: str, voice: DemoVoice) -> tuple[np.ndarray, int]:
    """One espeak-ng call on SSML input: (samples, sample rate)."""
    import soundfile as sf

    name = voice.voice.split(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="sodakit-voices-") as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        src.write_text(ssml, encoding="utf-8")
        cmd = [shutil.which("espeak-ng") or "espeak-ng", "-m", "-v", name,
               "-s", str(round(ESPEAK_DEFAULT_WPM * voice.speed)), "-p", str(voice.pitch), "-f", str(src), "-w", str(out)]
        proc = subprocess.run(cmd, capture_output=True, timeout=600)
        if proc.returncode != 0 or not out.is_file():
            raise SynthesisError(f"espeak-ng failed for {voice.label}: {proc.stderr.decode(errors='replace')[-300:]}")
        wav, sr = sf.read(str(out), dtype="float32", always_2d=False)
    return wav, sr


def _espeak_batch(sentences: list[str], voice: DemoVoice, sample_rate: int) -> list[np.ndarray] | None:
    """One espeak-ng call for all sentences, cut at the breaks; None when the cut does not match."""
    from sodakit.audio.io import resample

    ssml = "<speak>" + f' <break time="{BREAK_MS}ms"/> '.join(_escape(s) for s in sentences) + "</speak>"
    wav, sr = _espeak(ssml, voice)
    silent = np.abs(wav) <= SILENCE_LEVEL
    hop = max(1, sr // 100)
    n = len(wav) // hop
    frames = silent[: n * hop].reshape(n, hop).all(axis=1)
    # Runs of silent 10 ms frames at least MIN_BREAK_SECONDS long, inside the audio.
    cuts, start = [], None
    for i, s in enumerate(np.append(frames, False)):
        if s and start is None:
            start = i
        elif not s and start is not None:
            if (i - start) * hop >= MIN_BREAK_SECONDS * sr and start > 0 and i < n:
                cuts.append(((start + i) // 2) * hop)
            start = None
    if len(cuts) != len(sentences) - 1:
        return None
    bounds = [0, *cuts, len(wav)]
    pieces = [_trim(wav[a:b]) for a, b in itertools.pairwise(bounds)]
    if any(p.size < sr // 10 for p in pieces):
        return None
    return [resample(p, sr, sample_rate) for p in pieces]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one(sentence: str, voice: DemoVoice, sample_rate: int) -> np.ndarray:
    if voice.engine == "espeak" and voice.pitch != 50:
        got = _espeak_batch([sentence], voice, sample_rate)
        if got:
            return got[0]
    return _trim(synthesize(sentence, voice.voice, sample_rate=sample_rate, speed=voice.speed))


def render_sentences(sentences: list[str], voice: DemoVoice, sample_rate: int = 16_000) -> list[np.ndarray]:
    """Each sentence spoken by `voice` (trimmed of leading/trailing silence), float32 at sample_rate."""
    if not sentences:
        return []
    if voice.engine == "espeak":
        got = _espeak_batch(sentences, voice, sample_rate)
        if got is not None:
            return got
    return [_one(s, voice, sample_rate) for s in sentences]


def join_recording(pieces: list[np.ndarray], sample_rate: int,
                   pauses: list[float] | None = None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Pieces -> one recording with `pauses[i]` seconds of silence after piece i (default PAUSE_SECONDS),
    and each piece's (start, end) seconds."""
    pauses = [PAUSE_SECONDS] * len(pieces) if pauses is None else pauses
    out, spans, t = [], [], 0.0
    for p, gap in zip(pieces, pauses):
        pause = np.zeros(int(gap * sample_rate), np.float32)
        spans.append((round(t, 4), round(t + len(p) / sample_rate, 4)))
        out += [p.astype(np.float32), pause]
        t += (len(p) + len(pause)) / sample_rate
    return np.concatenate(out), spans
