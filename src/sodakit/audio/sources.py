"""Ingestion: the dataset forms users have, read into one list of `AudioItem`s (one per segment).

Forms (`open_source(path, kind="auto")`); `path` may be a local path, a URL (`s3://...`, see
sodakit.storage: listings and files are read from the store, audio files fetched one at a time) or, for
`hf`, a Hugging Face hub dataset id:
- `librispeech`: a tree of `<spk>-<chapter>.trans.txt` files (`<utt-id> <TRANSCRIPT>` per line) next to
  `<utt-id>.flac`/`.wav`; also the `trans.txt` variant (`<utt-id><TAB><TRANSCRIPT>`). The recording is
  the chapter (`<spk>-<chapter>`), the speaker `<spk>`. LibriSpeech gives no chapter timings, so the
  utterances are laid end to end in id order (start = sum of the previous durations).
- `manifest`: JSONL (`.jsonl`/`.json`, one object per line) or CSV/TSV with a header. Fields: `audio`
  (or `path`, `audio_filepath`, `file`), `text` (or `transcript`, `sentence`), optional `id`,
  `recording_id`, `start`, `end` (seconds; when given, that part of the file is the segment), `speaker`.
  Relative audio paths are relative to the manifest's folder.
- `hf`: a Hugging Face dataset as users have it: a folder saved with `save_to_disk`, the Parquet files of a
  hub snapshot (`hf download --repo-type dataset org/name`: `data/<split>-00000-of-00001.parquet`, ...) or
  one Parquet file, or the hub id itself (`org/name[@revision]`, through the Hugging Face cache;
  HF_HUB_OFFLINE honoured). An Audio column (or a `{bytes, path}` struct column: bytes embedded, or a path
  relative to the dataset's folder) and a text column (names auto-detected or given), optional
  id/recording/start/end/speaker columns. Each row's audio is the segment itself; start/end only place it
  in its recording. Audio bytes are decoded by soundfile, not by `datasets` (no torchcodec needed).
  A dataset with several splits needs `split=`; the error lists them (merging them would leak test
  audio into training). `streaming=True` reads rows as they come, for corpora that do not fit on disk
  (`iter_hf_stream`).
- `folder`: audio files with same-named `.txt` transcripts (`a/b.wav` + `a/b.txt`), each its own recording.

Every reader returns the items sorted by (recording, start, id), so segments of one recording are
contiguous and in time order and the order never depends on the file system, plus a list of
`SourceError`s (layout problems: a transcript without audio, a row without a field, ...) that the
tokenizer writes to its errors file instead of aborting.

Transcripts: with `require_text=True` (the default) an item without one is a `SourceError` with reason
`untranscribed`, and a source where no item has one is refused outright (a ValueError saying how to
tokenize audio only). With `require_text=False` such items are kept with `text=None`: usable for the
audio-only documents (`audio_only`, `semantic_only`), refused by `sodakit pack` for the formats that
hold text.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sodakit import storage
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
from sodakit.fileio import hub_offline, is_plain_file_name

AUDIO_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".aiff", ".aif", ".au")
_AUDIO_KEYS = ("audio", "path", "audio_filepath", "audio_path", "file", "wav")
_TEXT_KEYS = ("text", "transcript", "transcription", "sentence", "normalized_text", "raw_text")
_ID_KEYS = ("id", "segment_id", "utterance_id", "utt_id", "key")
_RECORDING_KEYS = ("recording_id", "recording", "chapter_id", "session_id", "episode_id")
_SPEAKER_KEYS = ("speaker", "speaker_id", "spk", "client_id")
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
UNTRANSCRIBED = "untranscribed"


@dataclass(frozen=True)
class AudioItem:
    """One segment to encode: where its audio is and what it says."""

    id: str
    recording_id: str
    path: str  # audio file (local path or URL), or the dataset of an `hf` item
    text: str | None = ""  # None: no transcript (kept with require_text=False)
    speaker: str | None = None
    start: float = 0.0  # seconds in the recording
    end: float | None = None  # None: to the end of the file
    clip: bool = False  # cut [start, end) out of the file (manifest rows with times)
    row: int | None = None  # row of an `hf` dataset (`path` is then the dataset)
    split: str | None = None  # split of an `hf` DatasetDict
    audio_column: str | None = None
    root: str | None = None  # `hf` items: the folder relative audio paths are relative to
    # A streamed `hf` row carries its audio value (bytes or a path) itself: a stream has no random access.
    value: dict | None = field(default=None, repr=False, compare=False)

    def load(self, sample_rate: int) -> np.ndarray:
        """Float32 mono samples at `sample_rate`; raises AudioError with a reason."""
        if self.value is not None:
            return decode_audio_value(self.value, self.where, sample_rate, self.root)
        if self.row is not None:
            return _load_hf_audio(self, sample_rate)
        if self.clip:
            return load_audio(self.path, sample_rate, start=self.start, end=self.end)
        return load_audio(self.path, sample_rate)

    @property
    def where(self) -> str:
        if self.row is None:
            return self.path
        return f"{self.path}[{self.split + ':' if self.split else ''}{self.row}]"

    def record(self) -> dict:
        """The item as a JSON-safe dict (for the job's listing fingerprint): no audio payload, and fields
        added since the first release only when set, so fingerprints of older jobs stay valid."""
        d = {k: getattr(self, k) for k in ("id", "recording_id", "path", "text", "speaker", "start", "end", "clip",
                                            "row", "split", "audio_column")}
        if self.root is not None:
            d["root"] = self.root
        return d


@dataclass(frozen=True)
class SourceError:
    where: str  # file (and line/row) that is wrong
    reason: str  # "layout", "untranscribed" or an AudioError reason
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


def _local_or_url(path: str | os.PathLike) -> str:
    """A location as readers use it: local paths absolute, URLs as given."""
    return os.fspath(path).rstrip("/") if storage.is_remote(path) else str(storage.local_path(path).resolve())


def _suffix(location: str) -> str:
    return Path(storage.basename(location)).suffix.lower()


# --- LibriSpeech ------------------------------------------------------------------------------------------
_LS_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def read_librispeech(root: str | Path) -> tuple[list[AudioItem], list[SourceError]]:
    root = _local_or_url(root)
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    files = storage.list_files(root)
    present = set(files)
    trans_files = [f for f in files if storage.basename(f).endswith("trans.txt")]
    if not trans_files:
        raise ValueError(f"{root}: no *.trans.txt / trans.txt files: not a LibriSpeech-layout folder")
    by_chapter: dict[str, list[tuple[str, str, str]]] = {}
    for tf in trans_files:
        folder = storage.parent(tf)
        for lineno, line in enumerate(storage.read_text(tf).splitlines(), start=1):
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
            audio = next((a for ext in AUDIO_EXTENSIONS if (a := storage.join(folder, f"{utt}{ext}")) in present), None)
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
            items.append(AudioItem(id=utt, recording_id=chapter, path=audio, text=text,
                                   speaker=m.group(1) if m else None, start=round(t, 6), end=round(t + dur, 6)))
            t += dur
    return sort_items(items), errors


# --- manifests -------------------------------------------------------------------------------------------
def _manifest_rows(path: str) -> Iterable[tuple[str, dict | None, str | None]]:
    """(where, row or None, parse error) for every data row."""
    suffix = _suffix(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        for lineno, line in enumerate(storage.read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{lineno}", None, f"not JSON ({e.msg})"
                continue
            yield f"{path}:{lineno}", row if isinstance(row, dict) else None, None if isinstance(row, dict) else "not an object"
    elif suffix in (".csv", ".tsv"):
        text = storage.read_text(path)
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


def _relative_to(folder: str, audio: str) -> str:
    """An audio path of a manifest or dataset row: URLs and absolute paths as given, others under `folder`."""
    if storage.is_remote(audio) or (not storage.is_remote(folder) and Path(audio).is_absolute()):
        return audio
    return storage.join(folder, audio)


def _untranscribed(where: str, detail: str) -> SourceError:
    return SourceError(where, UNTRANSCRIBED, detail)


def read_manifest(path: str | Path, audio_field: str | None = None, text_field: str | None = None,
                  require_text: bool = True) -> tuple[list[AudioItem], list[SourceError]]:
    path = _local_or_url(path)
    if not storage.isfile(path):
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
        if text is None and require_text:
            errors.append(_untranscribed(where, f"no transcript (one of {list(_TEXT_KEYS)})"))
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
        audio_path = _relative_to(storage.parent(path), str(audio))
        rec = _first(row, _RECORDING_KEYS)
        rec = str(rec) if rec is not None else Path(storage.basename(audio_path)).stem
        seg_id = _first(row, _ID_KEYS)
        seg_id = str(seg_id) if seg_id is not None else (f"{rec}_{start:.3f}" if start is not None else f"{rec}_{n:06d}")
        spk = _first(row, _SPEAKER_KEYS)
        items.append(AudioItem(id=seg_id, recording_id=rec, path=audio_path, text=None if text is None else str(text),
                               speaker=None if spk is None else str(spk), start=start or 0.0, end=end,
                               clip=start is not None or end is not None))
    return sort_items(items), errors


# --- folder of audio + .txt ------------------------------------------------------------------------------
def read_folder(root: str | Path, require_text: bool = True) -> tuple[list[AudioItem], list[SourceError]]:
    root = _local_or_url(root)
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    files = storage.list_files(root)
    present = set(files)
    audio_files = [f for f in files if _suffix(f) in AUDIO_EXTENSIONS]
    if not audio_files:
        raise ValueError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    for audio in audio_files:
        rel = audio[len(root):].lstrip("/").lstrip(os.sep)
        stem = rel[: -len(Path(rel).suffix)]
        txt = storage.join(root, *f"{stem}.txt".split("/"))
        text = storage.read_text(txt).strip() if txt in present else None
        if text is None and require_text:
            errors.append(_untranscribed(audio, f"no transcript {storage.basename(txt)} next to the audio"))
            continue
        items.append(AudioItem(id=stem, recording_id=stem, path=audio, text=text))
    return sort_items(items), errors


# --- Hugging Face datasets -------------------------------------------------------------------------------
def is_hf_dataset_dir(path: str | Path) -> bool:
    """A folder written by `datasets`' save_to_disk."""
    return any(storage.isfile(storage.join(path, m)) for m in _HF_DISK_MARKERS)


def _is_parquet_dataset(path: str) -> bool:
    if storage.isfile(path):
        return _suffix(path) == ".parquet"
    return storage.isdir(path) and any(_suffix(f) == ".parquet" for f in storage.list_files(path))


@dataclass
class HFSource:
    """A resolved Hugging Face dataset: one split, ready to read (a Dataset, or an IterableDataset)."""

    data: object
    spec: str  # what was asked for (a path, URL or hub id)
    reference: str  # what was read: a local path, a URL, or "org/name@<commit>"
    split: str | None
    root: str  # the folder relative audio paths are relative to


def _choose_split(dd, spec: str, split: str | None):
    """The one split asked for; a dataset of several splits without `split=` is an error listing them."""
    names = list(dd.keys())
    if split is None:
        if len(names) == 1:
            return dd[names[0]], names[0]
        raise ValueError(
            f"{spec} holds the splits {names}: choose one with split=... (e.g. split={names[0]}); "
            f"tokenizing them together would mix held-out audio into training data"
        )
    if split not in names:
        raise ValueError(f"{spec}: no split {split!r}; its splits are {names}")
    return dd[split], split


def _parquet_data_files(location: str) -> dict[str, list[str]]:
    """The Parquet files of a snapshot folder by split, following the hub's naming: a folder named after
    the split (`train/...`), or a file name starting with it (`data/train-00000-of-00002.parquet`)."""
    if storage.isfile(location):
        return {"train": [location]}
    by_split: dict[str, list[str]] = {}
    for f in storage.list_files(location, suffixes=[".parquet"]):
        rel = f[len(location):].strip("/").split("/")
        name = next((p for p in rel[:-1] if p in ("train", "validation", "valid", "dev", "test")), None)
        name = name or re.split(r"[-_.]", rel[-1], maxsplit=1)[0]
        by_split.setdefault(name, []).append(f)
    return by_split


def open_hf(spec: str | Path, split: str | None = None, streaming: bool = False) -> HFSource:
    """One split of a Hugging Face dataset in any of the forms in the module docstring."""
    import datasets

    spec = os.fspath(spec)
    reference = spec
    if storage.is_hub_ref(spec):
        repo, revision = storage.split_revision(spec)
        if streaming and not hub_offline():  # stream straight from the hub, nothing copied
            dd = datasets.load_dataset(repo, revision=revision, streaming=True)
            data, split = _choose_split(dd, spec, split)
            return HFSource(data, spec, spec, split, f"hf://datasets/{repo}")
        path, reference = storage.hub_snapshot(spec, repo_type="dataset", what="dataset")
        location = str(path)
    elif storage.is_remote(spec):
        location = spec.rstrip("/")
        if not storage.exists(location):
            raise ValueError(f"{spec}: no such file or directory")
        if not streaming or is_hf_dataset_dir(location):  # save_to_disk folders are Arrow files: copy them
            location = str(storage.local_copy(location))
    else:
        location = _local_or_url(spec)
        reference = location
        if not storage.exists(location):
            raise ValueError(f"{spec}: no such file or directory")
    root = location if storage.isdir(location) else storage.parent(location)
    if is_hf_dataset_dir(location):
        try:
            ds = datasets.load_from_disk(location)
        except Exception as e:
            raise ValueError(f"{spec}: not a dataset saved with `save_to_disk` ({e})") from e
        if isinstance(ds, datasets.DatasetDict):
            ds, split = _choose_split(ds, spec, split)
        elif split is not None:
            raise ValueError(f"{spec} is a single dataset without splits; remove split={split}")
        return HFSource(ds.to_iterable_dataset() if streaming else ds, spec, reference, split, root)
    if not _is_parquet_dataset(location):
        raise ValueError(f"{spec}: not a Hugging Face dataset (neither a save_to_disk folder nor Parquet files)")
    if storage.is_remote(location):  # streaming remote Parquet: name the splits from the file layout
        files = _parquet_data_files(location)
        dd = {name: None for name in files}
        _, split = _choose_split(dd, spec, split)
        data = datasets.load_dataset("parquet", data_files={split: files[split]}, split=split, streaming=True)
        return HFSource(data, spec, reference, split, root)
    try:
        if storage.isfile(location):
            dd = datasets.load_dataset("parquet", data_files={"train": location}, streaming=streaming)
        else:
            dd = datasets.load_dataset(location, streaming=streaming)
    except Exception as e:
        raise ValueError(f"{spec}: cannot read it as a Hugging Face dataset ({type(e).__name__}: {e})") from e
    data, split = _choose_split(dd, spec, split)
    return HFSource(data, spec, reference, split, root)


def _columns(features: dict, names: list[str], where: str, audio_column: str | None, text_column: str | None,
             require_text: bool) -> tuple[str, str | None]:
    import datasets

    def is_audio(f) -> bool:
        return isinstance(f, datasets.Audio) or (isinstance(f, dict) and ("bytes" in f or "array" in f))

    acol = audio_column or next((c for c, f in features.items() if is_audio(f)), None)
    acol = acol or next((c for c in _AUDIO_KEYS if c in names), None)
    tcol = text_column or next((c for c in _TEXT_KEYS if c in names), None)
    if acol is None or acol not in names:
        raise ValueError(f"{where}: no Audio column among {names}; pass audio_field=")
    if tcol is not None and tcol not in names:
        raise ValueError(f"{where}: no column {tcol!r} among {names}")
    if tcol is None and require_text:
        raise ValueError(
            f"{where}: no text column among {names} (tried {list(_TEXT_KEYS)}); pass text_field=, or, for "
            f"audio-only documents (formats=[audio_only] or [semantic_only]), tokenize with require_text=false"
        )
    return acol, tcol


def _undecoded(ds, column: str):
    """The dataset with its audio column left as bytes/paths (we decode with soundfile)."""
    import datasets

    feature = ds.features.get(column) if ds.features else None
    return ds.cast_column(column, datasets.Audio(decode=False)) if isinstance(feature, datasets.Audio) else ds


def decode_audio_value(value, where: str, sample_rate: int, root: str | None) -> np.ndarray:
    """A dataset row's audio (`{"bytes": ...}`, `{"path": ...}` relative to `root`, or `{"array",
    "sampling_rate"}`) as float32 mono at `sample_rate`."""
    import soundfile as sf

    try:
        if isinstance(value, dict) and value.get("bytes"):
            data = io.BytesIO(value["bytes"])
            wav, sr = sf.read(data, dtype="float32", always_2d=False)
            check_not_truncated(where, declared_wav_frames(data), len(wav), sr)
        elif isinstance(value, dict) and value.get("path"):
            return load_audio(_relative_to(root, value["path"]) if root else value["path"], sample_rate)
        elif isinstance(value, str) and value:
            return load_audio(_relative_to(root, value) if root else value, sample_rate)
        elif isinstance(value, dict) and value.get("array") is not None:
            wav, sr = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        else:
            raise AudioError(where, "layout", "the audio column holds neither bytes nor a path")
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(where, "unreadable", f"{type(e).__name__}: {e}") from e
    wav = check_waveform(wav, where)
    return check_waveform(resample(to_mono(wav), sr, sample_rate), where)


_HF_CACHE: dict[str, object] = {}


def _hf_split(path: str, split: str | None, audio_column: str):
    """The split, opened once per process, with its audio column left undecoded."""
    key = f"{path}\0{split}"
    if key not in _HF_CACHE:
        _HF_CACHE[key] = _undecoded(open_hf(path, split).data, audio_column)
    return _HF_CACHE[key]


def _load_hf_audio(item: AudioItem, sample_rate: int) -> np.ndarray:
    ds = _hf_split(item.path, item.split, item.audio_column)
    return decode_audio_value(ds[item.row][item.audio_column], item.where, sample_rate, item.root)


def _hf_item(row: dict, i: int, src: HFSource, acol: str, tcol: str | None, require_text: bool,
             path: str, value=None) -> AudioItem | SourceError:
    where = f"{path}[{src.split + ':' if src.split else ''}{i}]"
    text = row.get(tcol) if tcol else None
    if text is None and require_text:
        return _untranscribed(where, f"empty {tcol!r}")
    try:
        start = _float_or_none(row.get("start"), "start")
        end = _float_or_none(row.get("end"), "end")
    except ValueError as e:
        return SourceError(where, "layout", str(e))
    seg_id = _first(row, _ID_KEYS)
    seg_id = str(seg_id) if seg_id is not None else f"{src.split + '-' if src.split else ''}{i:08d}"
    rec = _first(row, _RECORDING_KEYS)
    spk = _first(row, _SPEAKER_KEYS)
    return AudioItem(id=seg_id, recording_id=str(rec) if rec is not None else seg_id, path=path,
                     text=None if text is None else str(text), speaker=None if spk is None else str(spk),
                     start=start or 0.0, end=end, clip=False, row=i, split=src.split, audio_column=acol,
                     root=src.root, value=value)


def read_hf_dataset(path: str | Path, audio_column: str | None = None, text_column: str | None = None,
                    split: str | None = None, require_text: bool = True) -> tuple[list[AudioItem], list[SourceError]]:
    """Every row of one split (random access: a save_to_disk folder, local Parquet, a hub snapshot)."""
    src = open_hf(path, split)
    part = src.data
    where = f"{src.spec} ({src.split or 'dataset'})"
    acol, tcol = _columns(part.features, part.column_names, where, audio_column, text_column, require_text)
    meta_cols = [c for c in part.column_names if c != acol]
    table = part.select_columns(meta_cols).to_dict()
    # Workers reopen the dataset by this name: the resolved local folder of a hub id or a URL.
    name = src.spec if storage.is_hub_ref(src.spec) or storage.is_remote(src.spec) else _local_or_url(src.spec)
    items: list[AudioItem] = []
    errors: list[SourceError] = []
    for i in range(part.num_rows):
        item = _hf_item({c: table[c][i] for c in meta_cols}, i, src, acol, tcol, require_text, name)
        (items if isinstance(item, AudioItem) else errors).append(item)
    return sort_items(items), errors


def iter_hf_stream(path: str | Path, audio_column: str | None = None, text_column: str | None = None,
                   split: str | None = None, require_text: bool = True,
                   skip: int = 0) -> tuple[HFSource, Iterator[AudioItem | SourceError]]:
    """Rows of one split in the dataset's own order, each carrying its audio (streaming=True: nothing is
    copied or converted up front), after the first `skip` rows."""
    src = open_hf(path, split, streaming=True)
    data = src.data
    features = dict(data.features or {})
    names = list(features) if features else list(next(iter(data.take(1)), {}).keys())
    acol, tcol = _columns(features, names, f"{src.spec} ({src.split or 'dataset'})", audio_column, text_column,
                          require_text)
    data = _undecoded(data, acol)
    if skip:
        data = data.skip(skip)

    def rows() -> Iterator[AudioItem | SourceError]:
        for i, row in enumerate(data, start=skip):
            value = row.pop(acol)
            yield _hf_item(row, i, src, acol, tcol, require_text, src.spec, value=value or {})

    return src, rows()


# --- dispatch --------------------------------------------------------------------------------------------
KINDS = ("auto", "librispeech", "manifest", "hf", "folder")


def detect_kind(path: str | Path) -> str:
    if storage.is_hub_ref(path):
        return "hf"
    path = os.fspath(path)
    if storage.isfile(path):
        return "hf" if _suffix(path) == ".parquet" else "manifest"
    if not storage.isdir(path):
        raise ValueError(f"{path}: no such file or directory")
    if is_hf_dataset_dir(path):
        return "hf"
    files = storage.list_files(path)
    if any(storage.basename(f).endswith("trans.txt") for f in files):
        return "librispeech"
    if any(_suffix(f) == ".parquet" for f in files):  # a hub snapshot (its rows may name audio files beside it)
        return "hf"
    return "folder"


def open_source(path: str | Path, kind: str = "auto", audio_field: str | None = None,
                text_field: str | None = None, split: str | None = None,
                require_text: bool = True) -> tuple[list[AudioItem], list[SourceError]]:
    """Items (sorted by recording, start, id) and layout errors of a dataset in any supported form."""
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r}; choose from {KINDS}")
    kind = detect_kind(path) if kind == "auto" else kind
    if split is not None and kind != "hf":
        raise ValueError(f"{path}: split={split} applies to Hugging Face datasets; this input is a {kind}")
    if kind == "librispeech":
        items, errors = read_librispeech(path)
    elif kind == "manifest":
        items, errors = read_manifest(path, audio_field, text_field, require_text)
    elif kind == "hf":
        items, errors = read_hf_dataset(path, audio_field, text_field, split, require_text)
    else:
        items, errors = read_folder(path, require_text)
    refuse_untranscribed(path, items, errors)
    return items, errors


def refuse_untranscribed(path, items: list[AudioItem], errors: list[SourceError]) -> None:
    """A source whose every item lacks a transcript is refused, saying how to tokenize audio only."""
    missing = sum(e.reason == UNTRANSCRIBED for e in errors)
    if missing and not items:
        raise ValueError(
            f"{path}: none of its {missing} audio item(s) has a transcript (e.g. {errors[0].where}: {errors[0].detail}); "
            f"for audio-only documents (sodakit pack formats=[audio_only] or [semantic_only]) tokenize with "
            f"require_text=false"
        )
