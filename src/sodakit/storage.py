"""Where data lives: local paths and URLs behind one small set of calls that every stage uses.

A location is a local path (`data/x`, `/abs/x`, `~/x`, `file:///abs/x`) or a URL that fsspec opens:
`s3://bucket/key`, `gs://bucket/key`, `az://...`, `hf://datasets/org/name/...`, `https://...` (read
only), `memory://...`. URLs never go through `pathlib.Path`, which would collapse `s3://b/k` into
`s3:/b/k`: these functions take and return strings for URLs and keep local paths local.

Writes are atomic on both. A local write goes to a temporary file in the same folder, is fsynced and
renamed (modes follow the umask, `sodakit.fileio`). On an object store one PUT (or one multipart upload)
is atomic: a reader sees the old object or the new one, never part of one. A folder is complete when
its marker object is there (a segment `manifest.json`, a packed `metadata.json`, a checkpoint's
`COMPLETE`), and every writer writes that marker last, so an interrupted job never looks finished and a
rerun resumes from the objects that exist.

Credentials and endpoints are fsspec's: for S3 the usual AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL for an S3-compatible server such as
MinIO or Ceph), fsspec's `FSSPEC_S3_ENDPOINT_URL=...` or `FSSPEC_S3='{"endpoint_url": ..., "anon": true}'`,
or in Python `sodakit.storage.configure("s3", endpoint_url=...)`.

Remote files a stage must have as local files (a model, a codec, a tokenizer, eval data, packed shards)
are copied once into the cache (`cache_dir()`: $SODAKIT_CACHE, else $XDG_CACHE_HOME/sodakit, else
~/.cache/sodakit) and reused while the object's size and ETag (or the sha256 a manifest records) match.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sodakit.errors import UserError
from sodakit.fileio import (
    atomic_file,
    atomic_write_bytes,
    hub_offline,
    looks_like_hub_id,
    sha256_file,
    temp_dir,
    temp_file,
    try_exclusive_lock,
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_COPY_RECORD = ".sodakit-source.json"  # beside each cached copy: what it was copied from


class StorageError(UserError, ValueError):
    """A location that cannot be read or written as asked (missing, not a folder, no such protocol)."""


# --- what a location is -----------------------------------------------------------------------------------
def scheme(location: str | os.PathLike) -> str | None:
    m = _SCHEME.match(os.fspath(location))
    return m.group(1).lower() if m else None


def is_remote(location: str | os.PathLike) -> bool:
    """A URL other than file://: read and written through fsspec."""
    return scheme(location) not in (None, "file")


def local_path(location: str | os.PathLike) -> Path:
    """The local path of a location that is not remote (`file://` stripped, `~` expanded)."""
    text = os.fspath(location)
    if is_remote(text):
        raise StorageError(f"{text} is a URL, not a local path")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(os.path.expanduser(text))


def as_location(location: str | os.PathLike) -> str:
    """A location as a string: a URL unchanged, a local path as given (`file://` stripped)."""
    return os.fspath(location) if is_remote(location) else str(local_path(location))


def join(base: str | os.PathLike, *names: str) -> str:
    """`base/name/...`: '/'-joined for URLs, `os.path.join` for local paths."""
    if is_remote(base):
        return "/".join([os.fspath(base).rstrip("/"), *(n.strip("/") for n in names)])
    return os.path.join(local_path(base), *names)


def basename(location: str | os.PathLike) -> str:
    return os.fspath(location).rstrip("/").rsplit("/", 1)[-1] if is_remote(location) else local_path(location).name


def parent(location: str | os.PathLike) -> str:
    if is_remote(location):
        head, _, _ = os.fspath(location).rstrip("/").rpartition("/")
        return head
    return str(local_path(location).parent)


def configure(protocol: str, **options: Any) -> None:
    """Default storage options for one protocol (`configure("s3", endpoint_url=...)`), as fsspec's config."""
    import fsspec.config

    fsspec.config.conf.setdefault(protocol, {}).update(options)


def _fs(location: str):
    """(fsspec filesystem, path inside it) of a URL; a missing fsspec backend is named with its package."""
    import fsspec.core

    try:
        fs, path = fsspec.core.url_to_fs(location)
        # Other processes (the ranks of a job, a resumed run) write the same store: never answer from a
        # listing this process cached earlier.
        fs.invalidate_cache()
        return fs, path
    except ImportError as e:
        raise StorageError(f"{location}: reading {scheme(location)}:// needs an extra package ({e})") from e
    except ValueError as e:
        raise StorageError(f"{location}: {e}") from e


# --- reading ----------------------------------------------------------------------------------------------
def exists(location: str | os.PathLike) -> bool:
    if not is_remote(location):
        return local_path(location).exists()
    fs, path = _fs(os.fspath(location))
    return fs.exists(path)


def isfile(location: str | os.PathLike) -> bool:
    if not is_remote(location):
        return local_path(location).is_file()
    fs, path = _fs(os.fspath(location))
    return fs.isfile(path)


def isdir(location: str | os.PathLike) -> bool:
    if not is_remote(location):
        return local_path(location).is_dir()
    fs, path = _fs(os.fspath(location))
    return fs.isdir(path)


def list_files(location: str | os.PathLike, suffixes: Iterable[str] | None = None) -> list[str]:
    """Every file under a folder (recursively), sorted, as locations spelled from `location`."""
    wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    keep = (lambda name: name.lower().endswith(wanted)) if wanted else (lambda name: True)
    if not is_remote(location):
        root = local_path(location)
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and keep(p.name))
    base = os.fspath(location).rstrip("/")
    fs, root = _fs(base)
    root = root.rstrip("/")
    found = []
    for path in fs.find(root):
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path
        if rel and keep(rel.rsplit("/", 1)[-1]):
            found.append(join(base, rel))
    return sorted(found)


@contextmanager
def open_file(location: str | os.PathLike, mode: str = "rb", **kwargs: Any) -> Iterator[IO]:
    """A file object for reading (or, remote, writing a whole object), closed on exit."""
    if not is_remote(location):
        with builtins.open(local_path(location), mode, **kwargs) as f:
            yield f
        return
    fs, path = _fs(os.fspath(location))
    try:
        f = fs.open(path, mode, **kwargs)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{location} does not exist") from e
    with f:
        yield f


def read_bytes(location: str | os.PathLike) -> bytes:
    if not is_remote(location):
        return local_path(location).read_bytes()
    fs, path = _fs(os.fspath(location))
    try:
        return fs.cat_file(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{location} does not exist") from e


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode("utf-8")


def read_range(location: str | os.PathLike, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file: one ranged GET on an object store."""
    if not is_remote(location):
        with builtins.open(local_path(location), "rb") as f:
            f.seek(start)
            return f.read(end - start)
    fs, path = _fs(os.fspath(location))
    return fs.cat_file(path, start=start, end=end)


def info(location: str | os.PathLike) -> dict[str, Any]:
    """{"size": bytes, "version": the store's ETag or modification time (what changes when the object does)}."""
    if not is_remote(location):
        st = local_path(location).stat()
        return {"size": st.st_size, "version": str(st.st_mtime_ns)}
    fs, path = _fs(os.fspath(location))
    try:
        d = fs.info(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{location} does not exist") from e
    version = d.get("ETag") or d.get("etag") or d.get("md5Hash") or d.get("LastModified") or d.get("mtime") \
        or d.get("last_modified") or d.get("created")
    return {"size": int(d.get("size") or 0), "version": str(version).strip('"') if version is not None else None}


def sha256(location: str | os.PathLike, chunk: int = 1 << 22) -> str:
    if not is_remote(location):
        return sha256_file(local_path(location), chunk)
    h = hashlib.sha256()
    with open_file(location, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_id(location: str | os.PathLike) -> dict[str, Any]:
    """What identifies a file's content in a record: its sha256 (local), or its size and ETag (remote:
    hashing a multi-GB object only to name it would read it twice; the store's ETag changes whenever
    the object does). A store that reports no version gets the sha256."""
    if not is_remote(location):
        return {"sha256": sha256_file(local_path(location))}
    meta = info(location)
    if meta["version"] is None:
        return {"sha256": sha256(location)}
    return {"etag": meta["version"], "size": meta["size"]}


# --- writing ----------------------------------------------------------------------------------------------
def makedirs(location: str | os.PathLike) -> None:
    """A local folder (and its parents); nothing on object stores, whose folders are key prefixes."""
    if not is_remote(location):
        local_path(location).mkdir(parents=True, exist_ok=True)


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """One atomic write: temp file + fsync + rename locally, one PUT on an object store."""
    if not is_remote(location):
        atomic_write_bytes(local_path(location), data)
        return
    fs, path = _fs(os.fspath(location))
    fs.pipe_file(path, data)


def write_text(location: str | os.PathLike, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def put_file(source: str | os.PathLike, location: str | os.PathLike) -> None:
    """Copy a local file to `location` atomically (a local destination: temp file + rename; an object
    store: one upload, multipart for large files, visible only once complete)."""
    if not is_remote(location):
        with atomic_file(local_path(location)) as out, builtins.open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 22)
        return
    fs, path = _fs(os.fspath(location))
    fs.put_file(os.fspath(source), path)


def upload_dir(source: str | os.PathLike, location: str | os.PathLike, last: Iterable[str] = ()) -> list[str]:
    """Copy every file under a local folder to `location/...`, the relative names in `last` after all
    others (a folder's marker file: readers trust the copy only once it is there). Returns the names."""
    source = Path(source)
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    last = [n for n in last if n in names]
    for name in [n for n in names if n not in last] + last:
        put_file(source / name, join(location, *name.split("/")))
    return names


def remove(location: str | os.PathLike, recursive: bool = False) -> None:
    """Delete a file (or, recursive, a folder); a missing one is not an error."""
    if not is_remote(location):
        path = local_path(location)
        if path.is_dir() and recursive:
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    fs, path = _fs(os.fspath(location))
    try:
        fs.rm(path, recursive=recursive)
    except FileNotFoundError:
        pass


@contextmanager
def staged_file(location: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A local path to write a whole file to, which then becomes `location` atomically: a temp file in
    the destination's folder renamed into place (local), or a temp file uploaded in one piece (remote).
    Nothing appears at `location` if the body raises."""
    if not is_remote(location):
        dest = local_path(location)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(dest.parent, prefix=f".{dest.name}.", suffix=suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            with builtins.open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    staging = cache_dir("staging")
    fd, tmp = temp_file(staging, prefix=f"{basename(location)}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        put_file(tmp, location)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- local copies of remote files -------------------------------------------------------------------------
def cache_dir(*names: str) -> Path:
    """sodakit's cache folder (created): $SODAKIT_CACHE, else $XDG_CACHE_HOME/sodakit, else ~/.cache/sodakit."""
    root = os.environ.get("SODAKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sodakit")
    path = Path(root, *names)
    path.mkdir(parents=True, exist_ok=True)
    return path


def url_key(location: str) -> str:
    """A short folder name for a URL in the cache (a readable tail and a hash of the whole URL)."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", location.rstrip("/").rsplit("/", 1)[-1])[:40] or "root"
    return f"{tail}-{hashlib.sha256(location.encode()).hexdigest()[:16]}"


def _download(location: str, dest: Path, expected_sha256: str | None = None) -> None:
    """Download one object to `dest` (temp file + rename), checking its sha256 when one is expected."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(dest.parent, prefix=f".{dest.name}.", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open_file(location, "rb") as src:
            while block := src.read(1 << 23):
                out.write(block)
                if expected_sha256:
                    h.update(block)
        if expected_sha256 and h.hexdigest() != expected_sha256:
            raise StorageError(f"{location}: sha256 {h.hexdigest()[:16]}... differs from the recorded "
                               f"{expected_sha256[:16]}...: the object changed or is damaged")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def download(location: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy one remote (or local) file to the local path `dest` (temp file + rename)."""
    _download(os.fspath(location), Path(dest))


def download_dir(location: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Copy every file under a folder to the local folder `dest`, keeping relative names; returns them."""
    base = os.fspath(location).rstrip("/")
    names = []
    for url in list_files(base):
        rel = url[len(base):].strip("/")
        _download(url, Path(dest, *rel.split("/")))
        names.append(rel)
    return names


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold `path` (a lock file) exclusively, waiting for another process that holds it."""
    import fcntl
    import time

    f = try_exclusive_lock(path)
    while f is None:  # another process is downloading the same thing: wait for it
        time.sleep(0.2)
        f = try_exclusive_lock(path)
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def local_copy(location: str | os.PathLike) -> Path:
    """A local path holding `location`: a local path itself; a remote file or folder copied into the
    cache (`cache_dir("remote")`) and refreshed when an object's size or ETag changed since."""
    if not is_remote(location):
        return local_path(location)
    location = os.fspath(location).rstrip("/")
    if not exists(location):
        raise FileNotFoundError(f"{location} does not exist")
    root = cache_dir("remote", url_key(location))
    target = root / basename(location)
    with _locked(root / ".lock"):
        record_path = root / _COPY_RECORD
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        files = {"": info(location)} if isfile(location) else {
            rel: info(url) for url in list_files(location) for rel in [url[len(location):].lstrip("/")]}
        copied = record.get("files", {}) if record.get("source") == location else {}
        for rel, meta in files.items():
            dest = target / rel if rel else target
            if copied.get(rel) != meta or not dest.is_file():
                _download(join(location, rel) if rel else location, dest)
        for rel in set(copied) - set(files):  # deleted from the store since the last copy
            (target / rel).unlink(missing_ok=True)
        atomic_write_bytes(record_path, json.dumps({"source": location, "files": files}).encode())
    return target


def cached_object(location: str, sha256_hex: str, suffix: str = "") -> Path:
    """A remote object whose sha256 is known (a packed shard listed in its metadata), copied once into a
    content-addressed cache (`cache_dir("objects")/<sha256>`) and verified while downloading; datasets that
    share a shard share its copy."""
    root = cache_dir("objects")
    dest = root / f"{sha256_hex}{suffix}"
    if dest.is_file():
        return dest
    with _locked(root / f".{sha256_hex}.lock"):
        if not dest.is_file():
            _download(location, dest, expected_sha256=sha256_hex)
    return dest


def local_work_dir(location: str | os.PathLike, purpose: str) -> Path:
    """A local folder that stands in for a remote one while a job writes to it (a run directory whose
    files are uploaded as they complete): the same URL always maps to the same folder."""
    if not is_remote(location):
        return local_path(location)
    return cache_dir(purpose, url_key(os.fspath(location).rstrip("/")))


def new_temp_dir(purpose: str = "staging") -> Path:
    return temp_dir(cache_dir(purpose), prefix="tmp-")


# --- the Hugging Face hub ---------------------------------------------------------------------------------
def split_revision(spec: str) -> tuple[str, str | None]:
    """"org/name@rev" -> ("org/name", "rev"); no "@" -> (spec, None)."""
    repo, sep, rev = spec.partition("@")
    return (repo, rev or None) if sep else (spec, None)


def is_hub_ref(spec: str | os.PathLike) -> bool:
    """"org/name" or "org/name@revision" that is not an existing local path."""
    text = os.fspath(spec)
    if scheme(text) is not None or Path(os.path.expanduser(text)).exists():
        return False
    return looks_like_hub_id(split_revision(text)[0])


def hub_snapshot(spec: str, *, repo_type: str = "model", allow_patterns: list[str] | None = None,
                 what: str = "model") -> tuple[Path, str]:
    """The local snapshot folder of a hub repository ("org/name" or "org/name@revision") through the
    Hugging Face cache, and the portable reference "org/name@<commit>" of what was read. With
    HF_HUB_OFFLINE=1 only the cache is used, and a repository not in it is an error saying so."""
    from huggingface_hub import snapshot_download  # a dependency of transformers and datasets

    repo, revision = split_revision(spec)
    offline = hub_offline()
    try:
        path = Path(snapshot_download(repo, revision=revision, repo_type=repo_type, allow_patterns=allow_patterns,
                                      local_files_only=offline))
    except Exception as e:
        where = ("in the local Hugging Face cache (HF_HUB_OFFLINE=1: no download attempted; download it once "
                 f"with `hf download {'--repo-type dataset ' if repo_type == 'dataset' else ''}{repo}` or unset "
                 "HF_HUB_OFFLINE)") if offline else "on the Hugging Face hub"
        raise StorageError(f"{what} {spec!r} is not a local path and cannot be found {where} "
                           f"({type(e).__name__}: {e})") from e
    return path, f"{repo}@{path.name}"
