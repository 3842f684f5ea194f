"""The SODA authors' yodas2-mm subshard JSON: recordings with transcripts and Mimi codes -> segments.

A subshard file (`{shard}/{subshard}.json`, e.g. `en000/00000000.json`) is a JSON array with one object
per YouTube recording:

    {"audio_id": "Y65x5_9PNO8",
     "text":  {"Y65x5_9PNO8-00000-00000112-00000452": "transcript", ...},
     "codes": {"Y65x5_9PNO8-00000-00000112-00000452": [[c, c, ...], ...], ...}}

A chunk id is `{audio_id}-{index:05d}-{start:08d}-{end:08d}` with times in centiseconds (the audio id
may itself contain hyphens). `codes[chunk]` is [codebooks][frames], every codebook the encoder produced
(Mimi gives 32; SODA keeps the first 8). Chunks come in the order of `text` (time order), and the
authors' document builder skips a chunk without codes or with empty codes, and a recording without
`codes`; these readers do the same and report each skip with its reason.

`import_yodas2_mm` writes the segments as a `sodakit tokenize`-style segment directory, so `sodakit pack`
builds SODA's documents from them and `sodakit eval` can score them (`val_nll`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sodakit.data.segments import (
    CodecInfo,
    Segment,
    SegmentFormatError,
    SegmentManifest,
    write_segment_shard,
)
from sodakit.fileio import atomic_write_text

_CHUNK_ID = re.compile(r"^(?P<audio>.+)-(?P<index>\d+)-(?P<start>\d+)-(?P<end>\d+)$")


@dataclass(frozen=True)
class Skipped:
    where: str  # file and chunk (or recording) id
    reason: str


def parse_chunk_id(chunk_id: str) -> tuple[str, int, float, float]:
    """(audio id, index, start s, end s) of a yodas2 chunk id; ValueError when it does not parse."""
    m = _CHUNK_ID.match(chunk_id)
    if not m:
        raise ValueError(f"chunk id {chunk_id!r} is not '<audio_id>-<index>-<start_cs>-<end_cs>'")
    return m["audio"], int(m["index"]), int(m["start"]) / 100.0, int(m["end"]) / 100.0


def read_yodas2_mm(path: str | Path, num_codebooks: int | None = 8) -> tuple[list[Segment], list[Skipped]]:
    """Segments of one subshard file (first `num_codebooks` codebooks; None keeps all), in file order."""
    path = Path(path)
    try:
        docs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SegmentFormatError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(docs, list):
        raise SegmentFormatError(f"{path}: expected a JSON array of {{audio_id, text, codes}} objects")
    segments: list[Segment] = []
    skipped: list[Skipped] = []
    for n, doc in enumerate(docs):
        if not isinstance(doc, dict) or not isinstance(doc.get("audio_id"), str) or not isinstance(doc.get("text"), dict):
            raise SegmentFormatError(f"{path}[{n}]: expected an object with 'audio_id' (string) and 'text' (object)")
        rec = doc["audio_id"]
        codes = doc.get("codes")
        if not isinstance(codes, dict):
            skipped.append(Skipped(f"{path}:{rec}", "recording has no codes"))
            continue
        for chunk_id, text in doc["text"].items():
            where = f"{path}:{chunk_id}"
            chunk = codes.get(chunk_id)
            if not chunk:
                skipped.append(Skipped(where, "chunk has no codes" if chunk is None else "chunk has empty codes"))
                continue
            try:
                _, _, start, end = parse_chunk_id(chunk_id)
                arr = np.asarray(chunk)
                if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
                    raise ValueError(f"codes must be [codebooks][frames] integers, got shape {arr.shape} {arr.dtype}")
                if num_codebooks is not None:
                    if arr.shape[0] < num_codebooks:
                        raise ValueError(f"{arr.shape[0]} codebooks, fewer than the {num_codebooks} asked for")
                    arr = arr[:num_codebooks]
                if arr.size and (arr.min() < 0 or arr.max() > 65535):
                    raise ValueError("codes outside 0..65535")
            except ValueError as e:
                raise SegmentFormatError(f"{where}: {e}") from e
            if not isinstance(text, str):
                raise SegmentFormatError(f"{where}: transcript is {type(text).__name__}, expected a string")
            segments.append(Segment(id=chunk_id, recording_id=rec, start=start, end=end, text=text,
                                    codes=arr.astype(np.uint16)))
    return segments, skipped


def import_yodas2_mm(inputs: Iterable[str | Path], output: str | Path, codec: CodecInfo,
                     num_codebooks: int | None = None, segments_per_shard: int = 50_000) -> dict:
    """Write subshard files as a segment directory (one or more Parquet shards + manifest.json).

    `codec` describes the codec the codes came from (Mimi for the released data); the first
    `num_codebooks` codebooks are kept (default: the codec record's count)."""
    output = Path(output)
    if (output / "manifest.json").exists():
        raise FileExistsError(f"{output} already holds a segment manifest; choose a new output directory")
    k = codec.num_codebooks if num_codebooks is None else num_codebooks
    files: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        found = sorted(p.rglob("*.json")) if p.is_dir() else [p]
        if not found or not all(f.is_file() for f in found):
            raise FileNotFoundError(f"{p}: no subshard .json file")
        files.extend(found)
    manifest = SegmentManifest(codec=CodecInfo(**{**codec.__dict__, "num_codebooks": k}),
                               extra={"imported_from": "yodas2-mm", "files": [str(f) for f in files]})
    pending: list[Segment] = []
    skipped: list[Skipped] = []

    def flush() -> None:
        if pending:
            manifest.shards.append(write_segment_shard(output / f"segments-{len(manifest.shards):05d}.parquet", pending))
            pending.clear()

    for f in files:
        segs, skip = read_yodas2_mm(f, k)
        skipped += skip
        for s in segs:
            pending.append(s)
            if len(pending) >= segments_per_shard:
                flush()
    flush()
    if not manifest.shards:
        raise SegmentFormatError(f"no segment with codes in {len(files)} subshard file(s)")
    manifest.extra["skipped"] = len(skipped)
    manifest.save(output)  # written last: a directory with a manifest is complete
    if skipped:
        atomic_write_text(output / "skipped.jsonl", "".join(json.dumps(s.__dict__) + "\n" for s in skipped))
    return {"output": str(output), "files": len(files), "shards": len(manifest.shards),
            "segments": sum(s.num_segments for s in manifest.shards), "skipped": len(skipped)}
