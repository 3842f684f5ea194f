"""The mirror of a run directory on S3 (a real S3 server on localhost): the store only ever holds complete
checkpoints (COMPLETE last); a start finishes an interrupted upload, drops partial ones, and on another
machine brings the newest complete checkpoint down. (SIGKILL and resume through the command line, with
the exact loss curve: tests/test_remote_end_to_end.py.)"""

from __future__ import annotations

import os
from pathlib import Path

from sodakit import storage
from sodakit.model.load import COMPLETE_MARKER, SIDECAR
from sodakit.train.remote_run import RunMirror


def remote_steps(url: str) -> list[str]:
    return sorted({storage.basename(storage.parent(p)) for p in storage.list_files(f"{url}/checkpoints")
                   if p.endswith("/" + COMPLETE_MARKER)})


def _fake_checkpoint(root: Path, step: int) -> Path:
    d = root / "checkpoints" / f"step_{step:08d}"
    d.mkdir(parents=True)
    (d / SIDECAR).write_text("{}")
    (d / "model.safetensors").write_bytes(b"w" * step)
    (d / COMPLETE_MARKER).write_text("{}")
    return d


def test_sync_finishes_an_interrupted_upload_and_drops_partial_ones(s3_bucket, sodakit_cache):
    url = f"{s3_bucket}/runs/r2"
    mirror = RunMirror(url, keep_last=2, log=lambda m: None)
    _fake_checkpoint(mirror.local, 5)
    mirror.push_checkpoint(mirror.local / "checkpoints" / "step_00000005")
    _fake_checkpoint(mirror.local, 10)  # complete locally; killed before its upload finished:
    storage.write_bytes(f"{url}/checkpoints/step_00000010/model.safetensors", b"partial")
    storage.write_bytes(f"{url}/checkpoints/step_00000009/model.safetensors", b"orphan")
    (mirror.local / "metrics.jsonl").write_text('{"step": 10}\n')
    mirror.sync("auto")
    assert remote_steps(url) == ["step_00000005", "step_00000010"]
    assert storage.read_bytes(f"{url}/checkpoints/step_00000010/model.safetensors") == b"w" * 10
    assert not storage.exists(f"{url}/checkpoints/step_00000009/model.safetensors")
    assert storage.read_text(f"{url}/metrics.jsonl") == '{"step": 10}\n'
    # Another machine: the newest complete checkpoint comes down, into the checkpoints folder of its mirror.
    os.environ["SODAKIT_CACHE"] = str(sodakit_cache / "other")
    try:
        other = RunMirror(url, keep_last=2, log=lambda m: None)
        other.sync("auto")
    finally:
        os.environ["SODAKIT_CACHE"] = str(sodakit_cache)
    assert (other.local / "checkpoints" / "step_00000010" / "model.safetensors").read_bytes() == b"w" * 10
    assert not (other.local / "checkpoints" / "step_00000005").exists()
    assert (other.local / "metrics.jsonl").read_text() == '{"step": 10}\n'


def test_a_checkpoint_with_files_missing_from_the_mirror_is_never_published(s3_bucket, sodakit_cache):
    import json

    import pytest

    from sodakit.model.load import CheckpointError

    mirror = RunMirror(f"{s3_bucket}/runs/r3", log=lambda m: None)
    ckpt = _fake_checkpoint(mirror.local, 4)
    (ckpt / COMPLETE_MARKER).write_text(json.dumps({"sha256": {"model.safetensors": "0", "shards/rank1.distcp": "1"}}))
    with pytest.raises(CheckpointError, match=r"lists shards/rank1.distcp, which is not in the local mirror"):
        mirror.push_checkpoint(ckpt)
    assert not storage.exists(f"{s3_bucket}/runs/r3/checkpoints/step_00000004/{COMPLETE_MARKER}")


def test_a_failed_upload_stops_training_naming_the_store_and_keeps_the_checkpoint(packed, s3_bucket, sodakit_cache,
                                                                                  monkeypatch):
    import pytest

    from sodakit.model.load import CheckpointError, list_checkpoints
    from sodakit.train.trainer import train

    from .test_trainer import make_cfg

    def unreachable(self, ckpt):
        raise OSError(f"Could not connect to the endpoint URL for {self.url}")

    monkeypatch.setattr(RunMirror, "push_checkpoint", unreachable)
    run = f"{s3_bucket}/runs/down"
    with pytest.raises(CheckpointError, match=rf"step_00000004 is complete in .* but its upload to {run} failed"):
        train(make_cfg(run, packed, steps=4, **{"log.tensorboard": False}))
    assert [p.name for p in list_checkpoints(RunMirror(run).local)] == ["step_00000004"]  # the next start uploads it
