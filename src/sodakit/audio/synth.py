"""Offline text-to-speech through the Debian `flite` and `espeak-ng` binaries.

Used to build speech corpora and benchmark sets on machines that cannot download any (the demo, the
codec benchmark, the look-alike eval sets). Voices are named `engine:voice`:

- `flite:slt`, `flite:rms`, `flite:awb`, `flite:kal16`, `flite:kal`, ... (whatever `flite -lv` lists;
  `awb_time` is a limited-domain talking clock that can only say times, so it is not offered);
- `espeak:en-us`, `espeak:en-gb`, `espeak:fr`, ... (every language of `espeak-ng --voices`, MBROLA
  voices only when the `mbrola` binary is installed), with an optional variant: `espeak:en-us+f3`,
  `espeak:en+klatt2`, ... (`espeak_variants()`).

Both engines are deterministic: the same text, voice and options give bit-identical samples.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from sodakit.audio.io import resample
from sodakit.errors import UserError

# flite voices that cannot read arbitrary text.
FLITE_LIMITED_DOMAIN = frozenset({"awb_time"})
# espeak-ng's default speaking rate in words per minute (`-s`); `speed` scales it.
ESPEAK_DEFAULT_WPM = 175
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(\+[A-Za-z0-9_.\-]+)?$")


class SynthesisError(UserError, RuntimeError):
    """A TTS engine that is missing, an unknown voice, or an engine that failed."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SynthesisError(
            f"`{name}` is not installed; on Debian/Ubuntu: sudo apt-get install {name} (or run `make setup` as root)"
        )
    return path


@functools.cache
def flite_voices() -> tuple[str, ...]:
    """Voices of the installed flite that can read arbitrary text (empty if flite is missing)."""
    if shutil.which("flite") is None:
        return ()
    out = subprocess.run([_binary("flite"), "-lv"], capture_output=True, text=True, timeout=30).stdout
    names = out.split(":", 1)[1].split() if ":" in out else out.split()
    return tuple(n for n in names if n not in FLITE_LIMITED_DOMAIN)


def _espeak_table(kind: str | None) -> list[tuple[str, str, list[str]]]:
    """(language, file, other languages) rows of `espeak-ng --voices[=kind]`, sliced by column offsets."""
    args = [_binary("espeak-ng"), "--voices" if kind is None else f"--voices={kind}"]
    lines = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.splitlines()
    if not lines:
        return []
    header = lines[0]
    lang_at, file_at, other_at = header.index("Language"), header.index("File"), header.index("Other")
    age_at = header.index("Age/Gender")
    rows = []
    for line in lines[1:]:
        others = re.findall(r"\(([^\s)]+)", line[other_at:])
        rows.append((line[lang_at:age_at].strip(), line[file_at:other_at].strip(), others))
    return rows


@functools.cache
def espeak_languages() -> tuple[str, ...]:
    """Language voices of the installed espeak-ng (MBROLA ones only when mbrola is installed)."""
    if shutil.which("espeak-ng") is None:
        return ()
    has_mbrola = shutil.which("mbrola") is not None
    langs = {lang for lang, file, _ in _espeak_table(None) if lang and (has_mbrola or not file.startswith("mb/"))}
    return tuple(sorted(langs))


@functools.cache
def _espeak_accepted() -> frozenset[str]:
    """Listed languages plus the aliases espeak-ng also accepts ("en" for en-gb, ...)."""
    has_mbrola = shutil.which("mbrola") is not None
    names = set(espeak_languages())
    for _, file, others in _espeak_table(None):
        if has_mbrola or not file.startswith("mb/"):
            names.update(others)
    return frozenset(names)


@functools.cache
def espeak_variants() -> tuple[str, ...]:
    """Variant names usable as `espeak:<language>+<variant>` (f1..f5, m1..m8, klatt, ...)."""
    if shutil.which("espeak-ng") is None:
        return ()
    names = {file.split("/", 1)[1] for _, file, _ in _espeak_table("variant") if file.startswith("!v/")}
    return tuple(sorted(n for n in names if _VOICE_NAME.match(n)))


def available_voices(language: str | None = None, variants: bool = False) -> list[str]:
    """Every usable voice name, flite first.

    `language` keeps voices whose language starts with it (flite voices are English, "en").
    `variants=True` adds `espeak:<language>+<variant>` for every variant of every kept espeak language.
    """

    def keep(lang: str) -> bool:
        return language is None or lang.lower().startswith(language.lower())

    names = [f"flite:{v}" for v in flite_voices() if keep("en")]
    langs = [lang for lang in espeak_languages() if keep(lang)]
    names += [f"espeak:{lang}" for lang in langs]
    if variants:
        names += [f"espeak:{lang}+{var}" for lang in langs for var in espeak_variants()]
    return names


def parse_voice(voice: str) -> tuple[str, str]:
    """Split `engine:name` and check it; raises SynthesisError listing the choices."""
    engine, sep, name = voice.partition(":")
    if not sep or engine not in ("flite", "espeak") or not name or not _VOICE_NAME.match(name):
        raise SynthesisError(
            f"voice {voice!r}: expected 'flite:<voice>' or 'espeak:<language>[+<variant>]', "
            f"e.g. 'flite:slt', 'espeak:en-us+f3'"
        )
    if engine == "flite":
        if name not in flite_voices():
            raise SynthesisError(f"voice {voice!r}: flite offers {list(flite_voices())} (`flite -lv`)")
    else:
        lang, _, variant = name.partition("+")
        if lang not in _espeak_accepted():
            raise SynthesisError(f"voice {voice!r}: espeak-ng has no language {lang!r} (`espeak-ng --voices`)")
        if variant and variant not in espeak_variants():
            raise SynthesisError(
                f"voice {voice!r}: espeak-ng has no variant {variant!r}; choose from {list(espeak_variants())}"
            )
    return engine, name


def synthesize(text: str, voice: str = "flite:slt", sample_rate: int = 16000, speed: float = 1.0) -> np.ndarray:
    """Speak `text` with `voice`; float32 mono samples at `sample_rate` (resampled with soxr).

    `speed` > 1 speaks faster (espeak words per minute / flite duration stretch). Deterministic.
    """
    if not text or not text.strip():
        raise SynthesisError("synthesize: empty text")
    if not 0.25 <= speed <= 4.0:
        raise SynthesisError(f"synthesize: speed={speed} outside [0.25, 4]")
    engine, name = parse_voice(voice)
    with tempfile.TemporaryDirectory(prefix="sodakit-tts-") as tmp:
        text_path, wav_path = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        # Text goes through a file so that leading dashes or quotes are never read as options.
        text_path.write_text(text.strip() + "\n", encoding="utf-8")
        if engine == "flite":
            cmd = [_binary("flite"), "-voice", name, "-f", str(text_path), "-o", str(wav_path)]
            if speed != 1.0:
                cmd += ["--setf", f"duration_stretch={1.0 / speed:.4f}"]
        else:
            cmd = [_binary("espeak-ng"), "-v", name, "-s", str(round(ESPEAK_DEFAULT_WPM * speed)),
                   "-f", str(text_path), "-w", str(wav_path)]
        proc = subprocess.run(cmd, capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C.UTF-8"})
        if proc.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
            err = proc.stderr.decode(errors="replace").strip()
            raise SynthesisError(f"{engine} failed for voice {voice!r} (exit {proc.returncode}): {err[-500:]}")
        wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=False)
    if wav.ndim == 2:
        wav = wav.mean(axis=1, dtype=np.float32)
    if wav.size == 0:
        raise SynthesisError(f"{engine} produced no audio for voice {voice!r} and text {text[:60]!r}")
    return resample(wav, sr, sample_rate)
