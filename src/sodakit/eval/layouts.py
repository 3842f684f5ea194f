"""Writers of the real benchmark layouts (the inverse of `sodakit.eval.readers`).

`sodakit bench-data` writes its synthesised sets through these, so the look-alike sets are read by
exactly the reader code that reads the published data; tests build fixtures the same way.
Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
import yaml

from sodakit import storage
from sodakit.audio.io import save_wav
from sodakit.config import atomic_write_text
from sodakit.eval.readers.hf_parquet import readme_data_files

ZR_COLUMNS = {
    "lexical": ["id", "filename", "voice", "frequency", "word", "phones", "length", "correct"],
    "syntactic": ["id", "filename", "voice", "type", "subtype", "correct", "transcription"],
}


def wav_bytes(wav: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wav, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class SpokenPair:
    """One (id, voice) pair of a spoken minimal-pair set."""

    id: str
    voice: str
    pos_wav: np.ndarray
    neg_wav: np.ndarray
    pos_text: str
    neg_text: str
    meta: dict = field(default_factory=dict)  # frequency / phones / type / subtype ...


def write_zr2021(root: Path, kind: str, pairs: Sequence[SpokenPair], sample_rate: int, split: str = "dev") -> Path:
    """`{root}/{kind}/{split}/gold.csv` + one wav per row (file names are opaque, as in the release)."""
    if kind not in ZR_COLUMNS:
        raise ValueError(f"kind must be lexical or syntactic, got {kind!r}")
    folder = Path(root) / kind / split
    rows = []
    for n, p in enumerate(pairs):
        for correct, wav, text in ((1, p.pos_wav, p.pos_text), (0, p.neg_wav, p.neg_text)):
            name = f"{kind[:3]}{n:06d}{'w' if correct else 'n'}{p.voice}"
            save_wav(folder / f"{name}.wav", wav, sample_rate)
            row = {"id": p.id, "filename": name, "voice": p.voice, "correct": correct}
            if kind == "lexical":
                row |= {"word": text, "frequency": p.meta.get("frequency", ""),
                        "phones": (p.meta.get("pos_phones") if correct else p.meta.get("neg_phones")) or "",
                        "length": p.meta.get("length", "")}
            else:
                row |= {"transcription": text, "type": p.meta.get("type", ""), "subtype": p.meta.get("subtype", "")}
            rows.append(row)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ZR_COLUMNS[kind])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(folder / "gold.csv", buf.getvalue())
    return folder


def write_hf_pairs(root: Path, pairs: Sequence[SpokenPair], sample_rate: int, config: str | None = None,
                   pos_col: str = "positive", neg_col: str = "negative", split: str = "train") -> Path:
    """A dataset repo as on the hub: Parquet with {bytes, path} audio structs + README data_files."""
    root = Path(root)
    sub = f"{config}/" if config else "data/"
    rel = f"{sub}{split}-00000-of-00001.parquet"
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cols = {
        "id": pa.array([int(p.id) if str(p.id).isdigit() else p.id for p in pairs]),
        pos_col: pa.array([{"bytes": wav_bytes(p.pos_wav, sample_rate), "path": f"{p.id}_pos.wav"} for p in pairs], audio),
        neg_col: pa.array([{"bytes": wav_bytes(p.neg_wav, sample_rate), "path": f"{p.id}_neg.wav"} for p in pairs], audio),
        "voice": pa.array([p.voice for p in pairs]),
        "positive_transcription": pa.array([p.pos_text for p in pairs]),
        "negative_transcription": pa.array([p.neg_text for p in pairs]),
    }
    for key in sorted({k for p in pairs for k in p.meta if k in ("type", "subtype", "task")}):
        cols[key] = pa.array([str(p.meta.get(key, "")) for p in pairs])
    with storage.staged_file(root / rel, suffix=".parquet") as tmp:
        pq.write_table(pa.table(cols), tmp, row_group_size=64)
    readme = root / "README.md"
    configs = _readme_configs(readme)
    configs[config or "default"] = {split: f"{sub}{split}-*"}
    front = {"configs": [{"config_name": c, "data_files": [{"split": s, "path": p} for s, p in d.items()]}
                         for c, d in sorted(configs.items())]}
    atomic_write_text(readme, "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\nLook-alike set written by sodakit.\n")
    return root


def _readme_configs(readme: Path) -> dict:
    if not readme.is_file():
        return {}
    return {c: {s: g[0] for s, g in d.items()} for c, d in readme_data_files(readme.parent).items()}


def write_salmon_folder(root: Path, part: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int,
                        metadata: list[dict] | None = None) -> Path:
    """`{root}/{part}/sample_{i}_0.wav` (positive) and `sample_{i}_1.wav` (negative), + metadata.json."""
    folder = Path(root) / part
    for i, (pos, neg) in enumerate(pairs):
        save_wav(folder / f"sample_{i}_0.wav", pos, sample_rate)
        save_wav(folder / f"sample_{i}_1.wav", neg, sample_rate)
    atomic_write_text(folder / "metadata.json", json.dumps(metadata or [{"index": i} for i in range(len(pairs))]))
    return folder


def write_librispeech(root: Path, utterances: Sequence[tuple[str, str, np.ndarray]], sample_rate: int) -> Path:
    """Release layout: `{root}/{spk}/{chapter}/{spk}-{chapter}-{n}.flac` + `{spk}-{chapter}.trans.txt`.
    `utterances` are (utt id "spk-chapter-nnnn", transcript, waveform)."""
    by_chapter: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for uid, text, wav in utterances:
        spk, chapter, _ = uid.split("-")
        folder = Path(root) / spk / chapter
        folder.mkdir(parents=True, exist_ok=True)
        with storage.staged_file(folder / f"{uid}.flac", suffix=".flac") as tmp:
            sf.write(tmp, np.asarray(wav, dtype=np.float32), sample_rate, format="FLAC")
        by_chapter.setdefault((spk, chapter), []).append((uid, text))
    for (spk, chapter), lines in by_chapter.items():
        atomic_write_text(Path(root) / spk / chapter / f"{spk}-{chapter}.trans.txt",
                          "".join(f"{u} {t}\n" for u, t in sorted(lines)))
    return Path(root)


def write_seedtts(root: Path, items: Sequence[tuple[str, str, np.ndarray, str]], sample_rate: int) -> Path:
    """`{root}/meta.lst` (utt|prompt_text|prompt-wavs/utt.wav|target_text) + `{root}/prompt-wavs/`."""
    lines = []
    for utt, prompt_text, wav, target_text in items:
        rel = f"prompt-wavs/{utt}.wav"
        save_wav(Path(root) / rel, wav, sample_rate)
        lines.append(f"{utt}|{prompt_text}|{rel}|{target_text}\n")
    atomic_write_text(Path(root) / "meta.lst", "".join(lines))
    return Path(root)
