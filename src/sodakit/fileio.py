"""File primitives shared by every stage: atomic writes (temp file + fsync + rename), checksums,
exclusive locks, and file names made from external ids.

Temporary files and folders that are renamed into place get the modes an ordinary `open()`/`mkdir()`
would have given them (0666/0777 minus the umask): `tempfile` creates them private (0600/0700), which a
rename would otherwise carry over to every model, dataset and report.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sodakit.errors import UserError


class DamagedFileError(UserError, ValueError):
    """A file that exists but cannot be what it claims to be (cut off, bit-flipped, not that format)."""


def load_safetensors(path: str | os.PathLike) -> dict:
    """`safetensors.torch.load_file`, with a damaged or cut-off file reported as DamagedFileError naming it
    (safetensors' own error says neither which file nor what to do)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise DamagedFileError(f"{path}: not a readable safetensors file ({e}): damaged or cut off") from e


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, with a failed write named (`writing`) and the file's mode following
    the umask (safetensors creates its files 0600)."""
    from safetensors.torch import save_file

    with writing(path):
        save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~current_umask())


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Make a failed write (a full disk, a quota, a size limit) an OSError naming `path`.

    A failing `write()` raises an OSError without a file name, and safetensors and libsndfile wrap the
    OS error in their own exception types; all three would reach the user without saying which file.
    """
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except Exception as e:
        name = type(e).__name__
        if name == "SafetensorError" and (m := re.search(r"os error (\d+)", str(e))):
            raise OSError(int(m.group(1)), os.strerror(int(m.group(1))), str(path)) from e
        if name == "LibsndfileError":
            raise OSError(None, f"cannot write audio (libsndfile: {e.args[1:] or e})", str(path)) from e
        raise


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock: no other way to read it)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def temp_file(directory: str | os.PathLike, prefix: str = "", suffix: str = ".tmp") -> tuple[int, str]:
    """`tempfile.mkstemp` in `directory`, with the mode a plain `open(path, "w")` would give (0666 - umask),
    so that renaming it into place leaves a file others may read when the umask allows it."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


def temp_dir(parent: str | os.PathLike, prefix: str = "") -> Path:
    """`tempfile.mkdtemp` in `parent`, with the mode `mkdir` would give (0777 - umask)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o777 & ~current_umask())
    return path


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file to fill; on success it is fsynced and renamed over `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with writing(path), os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike, prefix: str | None = None) -> Iterator[Path]:
    """A temporary directory beside `path` to fill; renamed to `path` when the block ends (`path` must not
    exist by then), removed with its contents when the block raises. `prefix` names the temporary
    directory (default `.{name}.`), e.g. for a cleaner that recognises leftovers of killed writers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(path.parent, prefix=f".{path.name}." if prefix is None else prefix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    with atomic_file(path) as f:
        f.write(data)


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


def looks_like_hub_id(spec: str) -> bool:
    """"owner/name" and nothing more: a Hugging Face hub id rather than a local path."""
    return not (spec.startswith(("/", ".", "~")) or spec.count("/") != 1 or (os.sep != "/" and os.sep in spec))


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: hub ids resolve from the local cache only, never by download."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


class DirectoryInUseError(UserError):
    """Another live process holds the directory's lock."""


def try_exclusive_lock(path: str | os.PathLike) -> IO[str] | None:
    """Open `path` (created if missing) holding an exclusive `flock`, or None when another process holds it.

    The lock lasts while the returned file is open and dies with its process (a crash or SIGKILL never
    strands it). Advisory, and local to one machine on file systems whose locks are not shared (some NFS).
    """
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


LOCK_NAME = ".lock"


@contextmanager
def exclusive_directory(directory: str | os.PathLike, what: str = "directory") -> Iterator[None]:
    """Hold `directory/.lock` for the duration, or raise DirectoryInUseError naming the holder (pid, host,
    start time and command, which the holder writes into the lock file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    f = try_exclusive_lock(path)
    if f is None:
        try:
            holder = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {holder.get('since', '?')}"
               + (f": {holder['command']}" if holder.get("command") else ""))
        raise DirectoryInUseError(
            f"{what} {directory} is in use by another process ({who}); wait for it to finish or stop it, "
            f"or use another directory (the lock file {path} is released when that process exits)"
        )
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)[:500]}))
        f.flush()
        yield
    finally:
        f.close()
