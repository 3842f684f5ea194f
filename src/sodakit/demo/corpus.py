"""An offline corpus of shipped English paragraphs read aloud by several TTS voices, plus text: the data
of the laptop IsoFLOP study (scripts/isoflop_mini_study.py). The demo speaks its own language instead
(`sodakit.demo.language_corpus`).

Each (paragraph, voice) pair is one recording: its sentences are synthesised one by one and joined with
short pauses into one WAV, and a JSONL manifest lists every sentence as a segment of that recording with
its start/end time -- the same manifest form users bring for their own data. The first paragraphs are
held out (validation data and generation prompts); the others also form the text-only corpus.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from sodakit.config import atomic_write_text

PAUSE_SECONDS = 0.35  # between sentences of a recording: a natural reading pause


def shipped_paragraphs() -> list[list[str]]:
    """The shipped paragraphs (resources/text/paragraphs.txt), each split into sentences."""
    text = resources.files("sodakit").joinpath("resources/text/paragraphs.txt").read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return [re.split(r"(?<=[.!?])\s+", " ".join(p.split())) for p in paragraphs]


@dataclass
class Recording:
    recording_id: str
    voice: str
    sentences: list[str]


def plan_recordings(paragraphs: list[list[str]], voices: list[str], voices_per_paragraph: int,
                    first_index: int = 0) -> list[Recording]:
    """Paragraph i is read by voices i, i+1, ... (round robin), so every voice reads every kind of text.

    Recording ids carry the paragraph's index in the shipped file (`first_index` + position), so ids of
    different parts never collide."""
    out = []
    for n, sentences in enumerate(paragraphs):
        i = first_index + n
        for j in range(min(voices_per_paragraph, len(voices))):
            voice = voices[(i + j) % len(voices)]
            out.append(Recording(f"p{i:03d}-{voice.replace(':', '_').replace('+', '_')}", voice, sentences))
    return out


def _render(args: tuple[Recording, str, int]) -> list[dict]:
    from sodakit.audio.io import save_wav
    from sodakit.audio.synth import synthesize

    rec, audio_dir, sample_rate = args
    pieces, rows, t = [], [], 0.0
    pause = np.zeros(int(PAUSE_SECONDS * sample_rate), dtype=np.float32)
    for k, sentence in enumerate(rec.sentences):
        wav = synthesize(sentence, rec.voice, sample_rate=sample_rate)
        idx = np.flatnonzero(np.abs(wav) > 1e-3)  # trim the engines' own leading/trailing silence
        wav = wav[idx[0] : idx[-1] + 1] if idx.size else wav
        start = t
        t += len(wav) / sample_rate
        rows.append({"recording_id": rec.recording_id, "start": round(start, 4), "end": round(t, 4), "text": sentence,
                     "speaker": rec.voice, "id": f"{rec.recording_id}-{k:02d}"})
        pieces += [wav, pause]
        t += PAUSE_SECONDS
    path = Path(audio_dir) / f"{rec.recording_id}.wav"
    save_wav(path, np.concatenate(pieces), sample_rate)
    for r in rows:
        r["audio"] = str(path)
    return rows


def build_corpus(out_dir: str | Path, voices: list[str], voices_per_paragraph: int = 2, holdout_paragraphs: int = 3,
                 sample_rate: int = 16_000, workers: int = 2, max_paragraphs: int = 0, log=print) -> dict:
    """Synthesise the corpus into out_dir: manifest.jsonl (training speech), manifest_val.jsonl (held-out
    paragraphs: validation and generation prompts), text.txt (text-only corpus, training paragraphs only),
    text_val.txt and corpus.json (statistics)."""
    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    paragraphs = shipped_paragraphs()
    if max_paragraphs:
        paragraphs = paragraphs[:max_paragraphs]
    if not 0 < holdout_paragraphs < len(paragraphs):
        raise ValueError(f"holdout_paragraphs must be in 1..{len(paragraphs) - 1}")
    held_out, train_pars = paragraphs[:holdout_paragraphs], paragraphs[holdout_paragraphs:]
    parts = {"train": plan_recordings(train_pars, voices, voices_per_paragraph, first_index=holdout_paragraphs),
             "val": plan_recordings(held_out, voices, voices_per_paragraph, first_index=0)}
    jobs = [(r, str(audio_dir), sample_rate) for recs in parts.values() for r in recs]
    rendered: list[list[dict]] = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, recording_rows in enumerate(pool.map(_render, jobs), 1):
            rendered.append(recording_rows)
            if i % 20 == 0 or i == len(jobs):
                log(f"[corpus] synthesised {i}/{len(jobs)} recordings")
    n_train = len(parts["train"])
    rows = {"train": [r for rec in rendered[:n_train] for r in rec], "val": [r for rec in rendered[n_train:] for r in rec]}
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows["train"]))
    atomic_write_text(out / "manifest_val.jsonl", "".join(json.dumps(r) + "\n" for r in rows["val"]))
    atomic_write_text(out / "text.txt", "".join(" ".join(p) + "\n" for p in train_pars))
    atomic_write_text(out / "text_val.txt", "".join(" ".join(p) + "\n" for p in held_out))

    def hours(rs: list[dict]) -> float:
        return round(sum(r["end"] - r["start"] for r in rs) / 3600, 4)

    info = {"recordings": n_train, "segments": len(rows["train"]), "speech_hours": hours(rows["train"]),
            "val_recordings": len(parts["val"]), "val_segments": len(rows["val"]), "val_speech_hours": hours(rows["val"]),
            "voices": voices, "voices_per_paragraph": voices_per_paragraph, "paragraphs": len(train_pars),
            "held_out_paragraphs": holdout_paragraphs, "sample_rate": sample_rate,
            "text_words": sum(len(" ".join(p).split()) for p in train_pars)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2))
    return info
