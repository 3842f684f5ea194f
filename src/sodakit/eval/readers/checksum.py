"""Data-set checksums recorded next to every number.

Hashing every audio file of a large benchmark (sBLIMP is ~GBs) on each run is slow, so the default
checksum covers the index files fully (gold.csv, meta.lst, transcripts, JSONL, Parquet) and the audio
files by name and size. `method` says which was done, and results JSON records it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

METHOD_INDEX_FULL_AUDIO_LISTING = "sha256(index files' bytes + audio files' relative names and sizes)"
METHOD_FULL = "sha256(all files' bytes)"


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)


def dataset_checksum(root: Path, index_files: Iterable[Path], audio_files: Iterable[Path]) -> tuple[str, str]:
    """(hex digest, method) over `index_files` (content) and `audio_files` (relative name + size)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(set(map(Path, index_files))):
        h.update(b"I" + _rel(p, root).encode() + b"\0")
        _hash_file(h, p)
    for p in sorted(set(map(Path, audio_files))):
        size = p.stat().st_size if p.is_file() else -1
        h.update(b"A" + _rel(p, root).encode() + b"\0" + str(size).encode() + b"\0")
    return h.hexdigest(), METHOD_INDEX_FULL_AUDIO_LISTING


def files_checksum(root: Path, files: Iterable[Path]) -> tuple[str, str]:
    """(hex digest, method) over the full content of `files`."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(set(map(Path, files))):
        h.update(_rel(p, root).encode() + b"\0")
        _hash_file(h, p)
    return h.hexdigest(), METHOD_FULL


def _rel(p: Path, root: Path) -> str:
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.name
