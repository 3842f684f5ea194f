"""File primitives shared by every stage: atomic writes (temp file + fsync + rename) and checksums."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# Characters kept as they are in a file name made from an external id; everything else (path separators,
# "%", control and non-ASCII characters, ...) is percent-encoded, so distinct ids stay distinct files.
_NAME_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+=@,~")
_MAX_NAME_BYTES = 200  # below the common 255-byte limit, leaving room for a suffix and temp-file affixes


def safe_file_name(item_id: str, suffix: str = "") -> str:
    """One file name for an id that comes from outside (a benchmark item, a manifest row), never a path.

    Separators and other unsafe characters are percent-encoded (`../x` -> `..%2Fx`), a leading dot too
    (no hidden files, never `.` or `..`), so the name always stays inside the folder it is joined to and
    two different ids never share a file. Names longer than 200 bytes are cut and end in a hash of the id.
    """
    item_id = str(item_id)
    if not item_id:
        raise ValueError("an empty id cannot name a file")
    encoded = "".join(c if c in _NAME_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in item_id)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > _MAX_NAME_BYTES:
        digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:16]
        encoded = f"{encoded[: _MAX_NAME_BYTES - 17]}-{digest}"
    return encoded + suffix


def path_inside(directory: str | os.PathLike, item_id: str, suffix: str = "") -> Path:
    """`directory / safe_file_name(item_id, suffix)`, verified to resolve inside `directory`."""
    directory = Path(directory)
    path = directory / safe_file_name(item_id, suffix)
    if path.resolve().parent != directory.resolve():
        raise ValueError(f"id {item_id!r} would write outside {directory}")
    return path


def is_plain_file_name(name: str) -> bool:
    """True for a single path component that is not `.`/`..` (an id that may be looked up as a file)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
