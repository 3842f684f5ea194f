"""Ingestion: the dataset forms users have, read into one list of `AudioItem`s (one per segment).

Forms (`open_source(path, kind="auto")`):
- `librispeech`: a tree of `<spk>-<chapter>.trans.txt` files (`<utt-id> <TRANSCRIPT>` per line) next to
  `<utt-id>.flac`/`.wav`; also the `trans.txt` variant (`<utt-id><TAB><TRANSCRIPT>`). The recording is
  the chapter (`<spk>-<chapter>`), the speaker `<spk>`. LibriSpeech gives no chapter timings, so the
  utterances are laid end to end in id order (start = sum of the previous durations).
- `manifest`: JSONL (`.jsonl`/`.json`, one object per line) or CSV/TSV with a header. Fields: `audio`
  (or `path`, `audio_filepath`, `file`), `text` (or `transcript`, `sentence`), optional `id`,
  `recording_id`, `start`, `end` (seconds; when given, that part of the file is the segment), `speaker`.
  Relative audio paths are relative to the manifest's folder.
- `hf`: a Hugging Face `datasets` dataset saved with `save_to_disk` (a Dataset or a DatasetDict), with an
  Audio column and a text column (names auto-detected or given), optional id/recording/start/end/speaker
  columns. Each row's audio is the segment itself; start/end only place it in its recording. Audio bytes
  are decoded by soundfile, not by `datasets` (no torchcodec needed).
- `folder`: audio files with same-named `.txt` transcripts (`a/b.wav` + `a/b.txt`), each its own recording.

Every reader returns the items sorted by (recording, start, id), so segments of one recording are
contiguous and in time order and the order never depends on the file system, plus a list of
`SourceError`s (layout problems: a transcript without audio, a row without a field, ...) that the
tokenizer writes to its errors file instead of aborting.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sodakit.audio.io import (
    AudioError,
    audio_info,
    check_not_truncated,
    check_waveform,
    declared_wav_frames,
    load_audio,
    resample,
    to_mono,
)
from sodakit.fileio import is_plain_file_name

AUDIO_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".aiff", ".aif", ".au")
_AUDIO_KEYS = ("audio", "path", "audio_filepath", "audio_path", "file", "wav")
_TEXT_KEYS = ("text", "transcript", "transcription", "sentence", "normalized_text", "raw_text")
_ID_KEYS = ("id", "segment_id", "utterance_id", "utt_id", "key")
_RECORDING_KEYS = ("recording_id", "recording", "chapter_id", "session_id", "episode_id")
_SPEAKER_KEYS = ("speaker", "speaker_id", "spk", "client_id")


@dataclass(frozen=True)
class AudioItem:
    """One segment to encode: where its audio is and what it says."""

    id: str
    recording_id: str
    path: str  # audio file, or the dataset directory of an `hf` item
    text: str = ""
    speaker: str | None = None
    start: float = 0.0  # seconds in the recording
    end: float | None = None  # None: to the end of the file
    clip: bool = False  # cut [start, end) out of the file (manifest rows with times)
    row: int | None = None  # row of an `hf` dataset (`path` is then the dataset directory)
    split: str | None = None  # split of an `hf` DatasetDict
    audio_column: str | None = None

    def load(self, sample_rate: int) -> np.ndarray:
        """Float32 mono samples at `sample_rate`; raises AudioError with a reason."""
        if self.row is not None:
            return _load_hf_audio(self, sample_rate)
        if self.clip:
            return load_audio(self.path, sample_rate, start=self.start, end=self.end)
        return load_audio(self.path, sample_rate)


@dataclass(frozen=True)
class SourceError:
    where: str  # file (and line/row) that is wrong
    reason: str  # "layout" or an AudioError reason
    detail: str


def sort_items(items: Iterable[AudioItem]) -> list[AudioItem]:
    items = list(items)
    seen: dict[str, int] = {}
    for it in items:
        seen[it.id] = seen.get(it.id, 0) + 1
    dups = sorted(k for k, v in seen.items() if v > 1)
    if dups:
        raise ValueError(f"segment ids must be unique; repeated: {dups[:5]}{' ...' if len(dups) > 5 else ''}")
    return sorted(items, key=lambda it: (it.recording_id, it.start, it.id))


def _first(d: dict, keys: tuple[str, ...], given: str | None = None):
    if given is not None:
        return d.get(given)
    for k in keys:
        if k in d and d[k] not in (None, ""):
            return d[k]
    return None


# --- LibriSpeech ------------------------------------------------------------------------------------------
_LS_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def read_librispeech(root: str | Path) -> tuple[list[AudioItem], list[SourceError]]:
    root = Path(root).resolve()
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    trans_files = sorted(root.rglob("*trans.txt"))
    if not trans_files:
        raise ValueError(f"{root}: no *.trans.txt / trans.txt files: not a LibriSpeech-layout folder")
    by_chapter: dict[str, list[tuple[str, Path, str]]] = {}
    for tf in trans_files:
        for lineno, line in enumerate(tf.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
            if len(parts) != 2 or not parts[1].strip():
                errors.append(SourceError(f"{tf}:{lineno}", "layout", "expected '<utterance-id> <TRANSCRIPT>'"))
                continue
            utt, text = parts[0].strip(), parts[1].strip()
            if not is_plain_file_name(utt):
                errors.append(SourceError(f"{tf}:{lineno}", "layout", f"utterance id {utt!r} is not a plain file name"))
                continue
            audio = next((tf.parent / f"{utt}{ext}" for ext in AUDIO_EXTENSIONS if (tf.parent / f"{utt}{ext}").is_file()), None)
            if audio is None:
                errors.append(SourceError(f"{tf}:{lineno}", "layout", f"no audio file {utt}.flac/.wav next to the transcript"))
                continue
            m = _LS_ID.match(utt)
            chapter = f"{m.group(1)}-{m.group(2)}" if m else utt
            by_chapter.setdefault(chapter, []).append((utt, audio, text))
    for chapter, utts in by_chapter.items():
        utts.sort(key=lambda u: (int(_LS_ID.match(u[0]).group(3)) if _LS_ID.match(u[0]) else 0, u[0]))
        t = 0.0
        for utt, audio, text in utts:
            try:
                sr, frames, _ = audio_info(audio)
                dur = frames / sr
            except AudioError as e:
                errors.append(SourceError(str(audio), e.reason, e.detail))
                continue
            m = _LS_ID.match(utt)
            items.append(AudioItem(id=utt, recording_id=chapter, path=str(audio), text=text,
                                   speaker=m.group(1) if m else None, start=round(t, 6), end=round(t + dur, 6)))
            t += dur
    return sort_items(items), errors


# --- manifests -------------------------------------------------------------------------------------------
def _manifest_rows(path: Path) -> Iterable[tuple[str, dict | None, str | None]]:
    """(where, row or None, parse error) for every data row."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{lineno}", None, f"not JSON ({e.msg})"
                continue
            yield f"{path}:{lineno}", row if isinstance(row, dict) else None, None if isinstance(row, dict) else "not an object"
    elif suffix in (".csv", ".tsv"):
        text = path.read_text(encoding="utf-8")
        delim = "\t" if suffix == ".tsv" else ","
        for i, row in enumerate(csv.DictReader(io.StringIO(text), delimiter=delim), start=2):
            yield f"{path}:{i}", dict(row), None
    else:
        raise ValueError(f"{path}: manifest must be .jsonl/.json (one object per line) or .csv/.tsv with a header")


def _float_or_none(v, name: str) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}={v!r} is not a number") from e
    if not np.isfinite(f) or f < 0:
        raise ValueError(f"{name}={v!r} must be a finite number >= 0")
    return f


def read_manifest(path: str | Path, audio_field: str | None = None, text_field: str | None = None) -> tuple[list[AudioItem], list[SourceError]]:
    path = Path(path).resolve()
    if not path.is_file():
        raise ValueError(f"{path}: manifest not found")
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    for n, (where, row, err) in enumerate(_manifest_rows(path)):
        if row is None:
            errors.append(SourceError(where, "layout", err or "bad row"))
            continue
        audio = _first(row, _AUDIO_KEYS, audio_field)
        text = _first(row, _TEXT_KEYS, text_field)
        if not audio:
            errors.append(SourceError(where, "layout", f"no audio path (one of {list(_AUDIO_KEYS)})"))
            continue
        if text is None:
            errors.append(SourceError(where, "layout", f"no transcript (one of {list(_TEXT_KEYS)})"))
            continue
        try:
            start = _float_or_none(row.get("start"), "start")
            end = _float_or_none(row.get("end"), "end")
        except ValueError as e:
            errors.append(SourceError(where, "layout", str(e)))
            continue
        if start is not None and end is not None and end <= start:
            errors.append(SourceError(where, "layout", f"end={end} is not after start={start}"))
            continue
        audio_path = Path(str(audio))
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        rec = _first(row, _RECORDING_KEYS)
        rec = str(rec) if rec is not None else audio_path.stem
        seg_id = _first(row, _ID_KEYS)
        seg_id = str(seg_id) if seg_id is not None else (f"{rec}_{start:.3f}" if start is not None else f"{rec}_{n:06d}")
        spk = _first(row, _SPEAKER_KEYS)
        items.append(AudioItem(id=seg_id, recording_id=rec, path=str(audio_path), text=str(text),
                               speaker=None if spk is None else str(spk), start=start or 0.0, end=end,
                               clip=start is not None or end is not None))
    return sort_items(items), errors


# --- folder of audio + .txt ------------------------------------------------------------------------------
def read_folder(root: str | Path) -> tuple[list[AudioItem], list[SourceError]]:
    root = Path(root).resolve()
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    audio_files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not audio_files:
        raise ValueError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    for audio in audio_files:
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            errors.append(SourceError(str(audio), "layout", f"no transcript {txt.name} next to the audio"))
            continue
        rel = audio.relative_to(root).with_suffix("").as_posix()
        items.append(AudioItem(id=rel, recording_id=rel, path=str(audio), text=txt.read_text(encoding="utf-8").strip()))
    return sort_items(items), errors


# --- Hugging Face datasets saved on disk -----------------------------------------------------------------
def is_hf_dataset_dir(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _open_hf(path: str):
    import datasets

    return datasets.load_from_disk(path)


_HF_CACHE: dict[str, object] = {}


def _hf_split(path: str, split: str | None, audio_column: str):
    """The split with its audio column left undecoded (we decode the bytes with soundfile)."""
    import datasets

    key = f"{path}\0{split}"
    if key not in _HF_CACHE:
        ds = _open_hf(path)
        if split is not None:
            ds = ds[split]
        _HF_CACHE[key] = ds.cast_column(audio_column, datasets.Audio(decode=False))
    return _HF_CACHE[key]


def _load_hf_audio(item: AudioItem, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    where = f"{item.path}[{item.split + ':' if item.split else ''}{item.row}]"
    ds = _hf_split(item.path, item.split, item.audio_column)
    value = ds[item.row][item.audio_column]
    try:
        if isinstance(value, dict) and value.get("bytes"):
            data = io.BytesIO(value["bytes"])
            wav, sr = sf.read(data, dtype="float32", always_2d=False)
            check_not_truncated(where, declared_wav_frames(data), len(wav), sr)
        elif isinstance(value, dict) and value.get("path"):
            return load_audio(value["path"], sample_rate)
        elif isinstance(value, dict) and "array" in value:
            wav, sr = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        else:
            raise AudioError(where, "layout", f"audio column {item.audio_column!r} holds neither bytes nor a path")
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(where, "unreadable", f"{type(e).__name__}: {e}") from e
    wav = check_waveform(wav, where)
    return check_waveform(resample(to_mono(wav), sr, sample_rate), where)


def read_hf_dataset(path: str | Path, audio_column: str | None = None, text_column: str | None = None) -> tuple[list[AudioItem], list[SourceError]]:
    import datasets

    path = Path(path).resolve()
    try:
        ds = _open_hf(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a dataset saved with `save_to_disk` ({e})") from e
    splits = list(ds.keys()) if isinstance(ds, datasets.DatasetDict) else [None]
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    for split in splits:
        part = ds[split] if split is not None else ds
        cols = part.column_names
        acol = audio_column or next((c for c, f in part.features.items() if isinstance(f, datasets.Audio)), None)
        acol = acol or next((c for c in _AUDIO_KEYS if c in cols), None)
        tcol = text_column or next((c for c in _TEXT_KEYS if c in cols), None)
        if acol is None or acol not in cols:
            raise ValueError(f"{path} ({split or 'dataset'}): no Audio column among {cols}; pass audio_column=")
        if tcol is None or tcol not in cols:
            raise ValueError(f"{path} ({split or 'dataset'}): no text column among {cols} (tried {list(_TEXT_KEYS)}); pass text_column=")
        meta_cols = [c for c in cols if c != acol]
        table = part.select_columns(meta_cols).to_dict()
        for i in range(part.num_rows):
            row = {c: table[c][i] for c in meta_cols}
            where = f"{path}[{split + ':' if split else ''}{i}]"
            text = row.get(tcol)
            if text is None:
                errors.append(SourceError(where, "layout", f"empty {tcol!r}"))
                continue
            try:
                start = _float_or_none(row.get("start"), "start")
                end = _float_or_none(row.get("end"), "end")
            except ValueError as e:
                errors.append(SourceError(where, "layout", str(e)))
                continue
            seg_id = _first(row, _ID_KEYS)
            seg_id = str(seg_id) if seg_id is not None else f"{split + '-' if split else ''}{i:08d}"
            rec = _first(row, _RECORDING_KEYS)
            spk = _first(row, _SPEAKER_KEYS)
            items.append(AudioItem(id=seg_id, recording_id=str(rec) if rec is not None else seg_id, path=str(path),
                                   text=str(text), speaker=None if spk is None else str(spk), start=start or 0.0,
                                   end=end, clip=False, row=i, split=split,
                                   audio_column=acol))
    return sort_items(items), errors


# --- dispatch --------------------------------------------------------------------------------------------
KINDS = ("auto", "librispeech", "manifest", "hf", "folder")


def detect_kind(path: str | Path) -> str:
    path = Path(path)
    if path.is_file():
        return "manifest"
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    if is_hf_dataset_dir(path):
        return "hf"
    if next(path.rglob("*trans.txt"), None) is not None:
        return "librispeech"
    return "folder"


def open_source(path: str | Path, kind: str = "auto", audio_field: str | None = None,
                text_field: str | None = None) -> tuple[list[AudioItem], list[SourceError]]:
    """Items (sorted by recording, start, id) and layout errors of a dataset in any supported form."""
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r}; choose from {KINDS}")
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "librispeech":
        return read_librispeech(path)
    if kind == "manifest":
        return read_manifest(path, audio_field, text_field)
    if kind == "hf":
        return read_hf_dataset(path, audio_field, text_field)
    return read_folder(path)
