"""The storage layer: local paths keep their behaviour, URLs go through fsspec (a real S3 server here),
remote copies are cached and refreshed, hub ids resolve through an offline Hugging Face cache."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from sodakit import storage

from .hub_cache import make_hub_repo


def test_urls_are_never_paths():
    assert storage.is_remote("s3://bucket/x.parquet") and storage.is_remote("hf://datasets/a/b")
    assert not storage.is_remote("data/x") and not storage.is_remote("file:///tmp/x")
    assert storage.join("s3://bucket/run/", "checkpoints", "step_1") == "s3://bucket/run/checkpoints/step_1"
    assert storage.parent("s3://bucket/a/b.json") == "s3://bucket/a" and storage.basename("s3://b/a/") == "a"
    assert storage.local_path("file:///tmp/x") == storage.local_path("/tmp/x")
    with pytest.raises(storage.StorageError, match="is a URL"):
        storage.local_path("gs://b/k")


def test_local_writes_are_atomic_and_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        storage.write_text(tmp_path / "a" / "x.json", "{}")
        (tmp_path / "src.bin").write_bytes(b"abc")
        storage.put_file(tmp_path / "src.bin", tmp_path / "b" / "y.bin")
        with storage.staged_file(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"staged")
            assert not (tmp_path / "c.bin").exists()  # nothing at the destination until the body is done
        with pytest.raises(RuntimeError), storage.staged_file(tmp_path / "d.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    finally:
        os.umask(old)
    for p in (tmp_path / "a" / "x.json", tmp_path / "b" / "y.bin", tmp_path / "c.bin"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert (tmp_path / "c.bin").read_bytes() == b"staged" and not (tmp_path / "d.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c.bin", "src.bin"]  # no temp files left
    assert storage.list_files(tmp_path, suffixes=[".bin"]) == [str(tmp_path / "b" / "y.bin"), str(tmp_path / "c.bin"),
                                                                str(tmp_path / "src.bin")]
    assert storage.local_copy(str(tmp_path / "c.bin")) == tmp_path / "c.bin"


def test_memory_filesystem_round_trip():
    base = "memory://sodakit-test-storage"
    storage.write_text(storage.join(base, "d", "a.txt"), "hello")
    storage.write_bytes(storage.join(base, "d", "sub", "b.bin"), b"\x00\x01")
    assert storage.read_text(f"{base}/d/a.txt") == "hello" and storage.isfile(f"{base}/d/a.txt")
    assert storage.isdir(f"{base}/d") and not storage.exists(f"{base}/nope")
    assert storage.list_files(f"{base}/d") == [f"{base}/d/a.txt", f"{base}/d/sub/b.bin"]
    assert storage.read_range(f"{base}/d/a.txt", 1, 4) == b"ell"
    storage.remove(f"{base}/d", recursive=True)
    assert not storage.exists(f"{base}/d/a.txt")


def test_s3_files_folders_and_identity(s3_bucket, tmp_path, sodakit_cache):
    url = f"{s3_bucket}/data/x.json"
    storage.write_text(url, json.dumps({"a": 1}))
    assert json.loads(storage.read_text(url)) == {"a": 1}
    assert storage.exists(url) and storage.isfile(url) and storage.isdir(f"{s3_bucket}/data")
    with storage.open_file(url, "rb") as f:
        assert f.read(4) == b'{"a"'
    ident = storage.content_id(url)
    assert ident["size"] == len('{"a": 1}') and ident["etag"] == hashlib.md5(b'{"a": 1}').hexdigest()
    assert storage.sha256(url) == hashlib.sha256(b'{"a": 1}').hexdigest()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.read_bytes(f"{s3_bucket}/missing.json")

    # A folder uploaded with its marker last; the marker's upload is the last PUT.
    (tmp_path / "ck" / "sub").mkdir(parents=True)
    for name in ("COMPLETE", "a.bin", "sub/b.bin"):
        (tmp_path / "ck" / name).write_bytes(name.encode())
    order = []
    real_put = storage.put_file

    def spy(src, dst):
        order.append(storage.basename(dst))
        real_put(src, dst)

    storage.put_file = spy
    try:
        storage.upload_dir(tmp_path / "ck", f"{s3_bucket}/run/ck", last=["COMPLETE"])
    finally:
        storage.put_file = real_put
    assert order[-1] == "COMPLETE" and sorted(order) == ["COMPLETE", "a.bin", "b.bin"]
    assert storage.list_files(f"{s3_bucket}/run/ck") == [f"{s3_bucket}/run/ck/{n}" for n in ("COMPLETE", "a.bin", "sub/b.bin")]

    # Local copies: made once, refreshed when an object changes, deleted objects disappear from the copy.
    copy = storage.local_copy(f"{s3_bucket}/run/ck")
    assert (copy / "sub" / "b.bin").read_bytes() == b"sub/b.bin" and sodakit_cache in copy.parents
    storage.write_bytes(f"{s3_bucket}/run/ck/a.bin", b"changed")
    storage.remove(f"{s3_bucket}/run/ck/sub/b.bin")
    assert storage.local_copy(f"{s3_bucket}/run/ck") == copy
    assert (copy / "a.bin").read_bytes() == b"changed" and not (copy / "sub" / "b.bin").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.local_copy(f"{s3_bucket}/nothing/here")


def test_cached_object_is_verified(s3_bucket, sodakit_cache):
    url = f"{s3_bucket}/shard.bin"
    storage.write_bytes(url, b"tokens" * 100)
    good = hashlib.sha256(b"tokens" * 100).hexdigest()
    path = storage.cached_object(url, good, ".bin")
    assert path.read_bytes() == b"tokens" * 100 and path.name == f"{good}.bin"
    with pytest.raises(storage.StorageError, match="differs from the recorded"):
        storage.cached_object(url, "0" * 64, ".bin")
    assert not (sodakit_cache / "objects" / ("0" * 64 + ".bin")).exists()


def test_hub_snapshot_offline(hub_cache):
    snap = make_hub_repo(hub_cache, "org/thing", {"config.json": b"{}"})
    path, ref = storage.hub_snapshot("org/thing")
    assert path == snap and ref == f"org/thing@{snap.name}"
    assert storage.hub_snapshot(f"org/thing@{snap.name}")[0] == snap
    assert storage.is_hub_ref("org/thing") and not storage.is_hub_ref("s3://org/thing")
    with pytest.raises(storage.StorageError, match=r"'org/missing'.*HF_HUB_OFFLINE=1"):
        storage.hub_snapshot("org/missing")
