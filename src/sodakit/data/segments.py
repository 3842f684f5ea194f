"""Segment shards: the on-disk output of audio tokenization and an input of `sodakit pack`.

A segment-shard directory holds

- `segments-00000.parquet`, ...: one row per segment (utterance) with columns
  `id` (str), `recording_id` (str), `start`, `end` (float seconds in the recording), `speaker` (str or
  null), `text` (str), `num_frames` (int32) and `codes` (list<list<uint16>>, shape [K][num_frames]);
- `manifest.json`: the codec that produced the codes (name, config hash, sample/frame rate, codebook
  count and size, semantic codebooks) and the list of complete shards with their checksums.

Shards are written to a temporary name and renamed, so a file with the final name is always complete.

Readers take a `text_fix`: "none" (default) gives each transcript as stored; "emilia" applies the
whitespace rule of the SODA authors' fixed Emilia release, which removed one space right after
<|text_start|> and one right before <|text_end|> in every document: one leading and one trailing space of
each transcript go (" Hello there " -> "Hello there", "  two  " -> " two ").
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sodakit.fileio import atomic_write_text, sha256_file, writing

SEGMENTS_FORMAT = "sodakit.segments/1"
MANIFEST_NAME = "manifest.json"

SEGMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("recording_id", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("speaker", pa.string()),
        ("text", pa.string()),
        ("num_frames", pa.int32()),
        ("codes", pa.list_(pa.list_(pa.uint16()))),
    ]
)


TEXT_FIXES = ("none", "emilia")


def fix_text(text: str, text_fix: str = "none") -> str:
    """A transcript under a `text_fix` rule (module docstring)."""
    if text_fix == "none":
        return text
    if text_fix != "emilia":
        raise ValueError(f"text_fix must be one of {TEXT_FIXES}, got {text_fix!r}")
    if text.startswith(" "):
        text = text[1:]
    return text[:-1] if text.endswith(" ") else text


class SegmentFormatError(ValueError):
    """A segment shard or manifest that does not follow the format."""


@dataclass
class Segment:
    """One utterance: its codec codes [K, F] and transcript, located in its recording."""

    id: str
    recording_id: str
    start: float
    end: float
    text: str
    codes: np.ndarray  # [K, F] integer codes
    speaker: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[1])


@dataclass
class CodecInfo:
    """What a downstream stage needs to know about the codec that made the codes."""

    name: str
    config_hash: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    semantic_codebooks: list[int] = field(default_factory=lambda: [0])
    # Where to load the codec from to decode (a directory or hub id); informational.
    source: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> CodecInfo:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class ShardInfo:
    file: str
    num_segments: int
    num_frames: int
    sha256: str


@dataclass
class SegmentManifest:
    codec: CodecInfo
    shards: list[ShardInfo] = field(default_factory=list)
    format: str = SEGMENTS_FORMAT
    extra: dict = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        atomic_write_text(Path(directory) / MANIFEST_NAME, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> SegmentManifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise SegmentFormatError(f"{directory}: no {MANIFEST_NAME}; is this a `sodakit tokenize` output?")
        try:
            d = json.loads(path.read_text())
            if d.get("format") != SEGMENTS_FORMAT:
                raise SegmentFormatError(f"{path}: format {d.get('format')!r}, expected {SEGMENTS_FORMAT!r}")
            return cls(
                codec=CodecInfo.from_dict(d["codec"]),
                shards=[ShardInfo(**s) for s in d.get("shards", [])],
                format=d["format"],
                extra=d.get("extra", {}),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise SegmentFormatError(f"{path}: malformed manifest ({e})") from e


def segments_to_table(segments: Iterable[Segment]) -> pa.Table:
    rows = list(segments)
    codes = [np.asarray(s.codes) for s in rows]
    for s, c in zip(rows, codes):
        if c.ndim != 2:
            raise SegmentFormatError(f"segment {s.id}: codes must be [K, F], got shape {c.shape}")
        if c.size and (c.min() < 0 or c.max() > 65535):
            raise SegmentFormatError(f"segment {s.id}: codes do not fit uint16")
    return pa.table(
        {
            "id": [s.id for s in rows],
            "recording_id": [s.recording_id for s in rows],
            "start": [float(s.start) for s in rows],
            "end": [float(s.end) for s in rows],
            "speaker": [s.speaker for s in rows],
            "text": [s.text for s in rows],
            "num_frames": [int(c.shape[1]) for c in codes],
            "codes": [c.astype(np.uint16).tolist() for c in codes],
        },
        schema=SEGMENT_SCHEMA,
    )


def write_segment_shard(path: Path, segments: Iterable[Segment]) -> ShardInfo:
    """Write one shard atomically (temp file + rename) and return its manifest entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = segments_to_table(segments)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with writing(path):
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    frames = int(np.sum(table.column("num_frames").to_numpy())) if table.num_rows else 0
    return ShardInfo(file=path.name, num_segments=table.num_rows, num_frames=frames, sha256=sha256_file(path))


def read_segment_shard(path: Path, text_fix: str = "none") -> Iterator[Segment]:
    """Segments of one shard, in file order, with codes as uint16 [K, F] arrays (text per `text_fix`)."""
    path = Path(path)
    fix_text("", text_fix)  # an unknown rule fails before any reading
    try:
        table = pq.read_table(path)
    except Exception as e:
        raise SegmentFormatError(f"{path}: cannot read Parquet ({e})") from e
    missing = [n for n in SEGMENT_SCHEMA.names if n not in table.column_names]
    if missing:
        raise SegmentFormatError(f"{path}: missing columns {missing}; expected {SEGMENT_SCHEMA.names}")
    cols = {n: table.column(n).to_pylist() for n in SEGMENT_SCHEMA.names if n != "codes"}
    codes_col = table.column("codes").combine_chunks()
    outer_offsets = codes_col.offsets.to_numpy()
    inner = codes_col.values
    inner_offsets = inner.offsets.to_numpy()
    values = inner.values.to_numpy(zero_copy_only=False)
    for i in range(table.num_rows):
        k0, k1 = outer_offsets[i], outer_offsets[i + 1]
        frames = cols["num_frames"][i]
        start, stop = inner_offsets[k0], inner_offsets[k1]
        if stop - start != (k1 - k0) * frames:
            raise SegmentFormatError(
                f"{path}: row {i} ({cols['id'][i]}): codes are not [K, num_frames={frames}] (ragged or wrong count)"
            )
        codes = values[start:stop].reshape(k1 - k0, frames)
        yield Segment(
            id=cols["id"][i],
            recording_id=cols["recording_id"][i],
            start=cols["start"][i],
            end=cols["end"][i],
            text=fix_text(cols["text"][i] or "", text_fix),
            codes=codes,
            speaker=cols["speaker"][i],
        )


def read_segments_dir(directory: Path, verify: bool = True, text_fix: str = "none") -> tuple[SegmentManifest, Iterator[Segment]]:
    """The manifest and every segment of a segment-shard directory, shard by shard."""
    fix_text("", text_fix)
    directory = Path(directory)
    manifest = SegmentManifest.load(directory)

    def gen() -> Iterator[Segment]:
        for shard in manifest.shards:
            path = directory / shard.file
            if not path.is_file():
                raise SegmentFormatError(f"{path}: listed in the manifest but missing")
            if verify and sha256_file(path) != shard.sha256:
                raise SegmentFormatError(f"{path}: checksum differs from the manifest (file changed or corrupt)")
            yield from read_segment_shard(path, text_fix)

    return manifest, gen()


def group_recordings(segments: Iterable[Segment]) -> list[list[Segment]]:
    """Segments grouped by recording, each group in time order; groups in first-seen order."""
    groups: dict[str, list[Segment]] = {}
    for s in segments:
        groups.setdefault(s.recording_id, []).append(s)
    return [sorted(g, key=lambda s: (s.start, s.end, s.id)) for g in groups.values()]
