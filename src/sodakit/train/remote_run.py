"""A training run directory on an object store (`run_dir=s3://bucket/runs/x`, any fsspec URL).

The trainer never writes to the store directly. It works in a local mirror (`<cache>/runs/<key>`: the same
folder for the same URL, see sodakit.storage.local_work_dir) exactly as in a local run directory, with
its lock, atomic checkpoints and resume checks, and `RunMirror` copies what it writes to the store:

- each checkpoint once it is complete locally: every file, then `COMPLETE` last. A checkpoint on the
  store is complete exactly when its COMPLETE object exists; an upload cut short by a kill leaves a
  checkpoint without it, which readers ignore and the next start removes;
- config.yaml, metrics.jsonl and the TensorBoard events, after each checkpoint and at the end;
- pruning: checkpoints the trainer deletes locally (checkpoint.keep_last) are deleted on the store too,
  COMPLETE first, so a half-deleted checkpoint never looks complete.

At the start (`sync`, rank 0, holding the mirror's lock), before the trainer looks for a checkpoint:
the newest complete checkpoint decides. If it is only on the store (another machine, a lost cache) it is
downloaded into the mirror with metrics.jsonl and config.yaml; if it is only local (a kill during its
upload) its upload is finished. The trainer then resumes from the mirror as from any run directory
(COMPLETE's checksums are checked there). checkpoint.resume=none refuses a store that already holds
checkpoints, as it refuses a local run directory.

Rank 0 uploads and downloads, so every file a checkpoint's COMPLETE lists must be in rank 0's mirror: an
upload that finds one missing (ranks of other nodes writing into their own caches) refuses to publish
the checkpoint. On several nodes the mirror goes on a file system they share (SODAKIT_CACHE).

Limits: the run-directory lock is the mirror's, so it keeps a second job on the same machine out, not
one on another machine (object stores have no locks).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from sodakit import storage
from sodakit.fileio import atomic_directory
from sodakit.model.load import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    CheckpointError,
    list_checkpoints,
    remote_checkpoints,
)
from sodakit.train import distributed as D
from sodakit.train.checkpoint import TMP_PREFIX

MIRROR_PURPOSE = "runs"
LOG_EXCLUDE = (CHECKPOINTS_DIR, ".lock")  # what is not a log file of the run directory
RESTORED_LOGS = ("metrics.jsonl", "config.yaml")


def _step_of(name: str) -> int | None:
    digits = name[len(CHECKPOINT_PREFIX):]
    return int(digits) if name.startswith(CHECKPOINT_PREFIX) and digits.isdigit() else None


class RunMirror:
    """The local stand-in of a remote run directory and the uploads that keep the store up to date."""

    def __init__(self, url: str, keep_last: int = 0, log=None):
        self.url = url.rstrip("/")
        self.local = storage.local_work_dir(self.url, MIRROR_PURPOSE)
        self.keep_last = keep_last
        self.log = log or (lambda msg: print(f"sodakit train: {msg}", file=sys.stderr, flush=True))
        self._pushed: dict[str, tuple[int, int]] = {}  # log file -> (size, mtime) at its last upload

    @classmethod
    def for_run_dir(cls, run_dir: str, keep_last: int = 0) -> RunMirror | None:
        return cls(run_dir, keep_last) if storage.is_remote(run_dir) else None

    # ---- start -------------------------------------------------------------------------------------
    def sync(self, resume: str) -> None:
        """Bring the mirror and the store to the same newest complete checkpoint (module docstring)."""
        remote, partial = remote_checkpoints(self.url)
        if resume == "none" and remote:
            raise CheckpointError(
                f"{self.url} already holds checkpoints (newest {CHECKPOINT_PREFIX}{max(remote):08d}); resume with "
                f"checkpoint.resume=auto (or --resume auto), or choose a new run_dir"
            )
        for url in partial:  # uploads a kill cut short: never complete, never read
            storage.remove(url, recursive=True)
        local = {_step_of(p.name): p for p in list_checkpoints(self.local)}
        newest_remote, newest_local = max(remote, default=-1), max(local, default=-1)
        if newest_local > newest_remote:
            self.log(f"finishing the upload of {local[newest_local].name} to {self.url}")
            self.push_checkpoint(local[newest_local])
            self.push_logs()
        elif newest_remote > newest_local and resume == "auto":
            self.log(f"downloading {CHECKPOINT_PREFIX}{newest_remote:08d} from {self.url} into {self.local}")
            self._download_checkpoint(remote[newest_remote])
            for name in RESTORED_LOGS:
                if storage.isfile(storage.join(self.url, name)):
                    storage.download(storage.join(self.url, name), self.local / name)

    def _download_checkpoint(self, url: str) -> Path:
        final = self.local / CHECKPOINTS_DIR / storage.basename(url)
        # a killed save's temp prefix: the resume ignores the directory and clears it as one
        with atomic_directory(final, prefix=f"{TMP_PREFIX}{final.name}-") as tmp:
            storage.download_dir(url, tmp)
            if final.exists():  # an incomplete local copy of the same step
                shutil.rmtree(final)
        return final

    # ---- during the run ----------------------------------------------------------------------------
    def push_checkpoint(self, ckpt: Path) -> None:
        """Upload a complete local checkpoint (COMPLETE last, after removing a stale COMPLETE of the same
        step), then delete the store's checkpoints beyond keep_last. Every file COMPLETE lists must be in
        the mirror: a checkpoint with pieces missing (ranks writing elsewhere) is never published."""
        listed = _listed_files(ckpt)
        missing = sorted(name for name in listed if not (ckpt / name).is_file())
        if missing:
            raise CheckpointError(
                f"{ckpt}: {COMPLETE_MARKER} lists {missing[0]}{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}, "
                f"which is not in the local mirror of {self.url}; on several nodes point SODAKIT_CACHE at a file "
                f"system they share"
            )
        dest = storage.join(self.url, CHECKPOINTS_DIR, ckpt.name)
        storage.remove(storage.join(dest, COMPLETE_MARKER))
        storage.upload_dir(ckpt, dest, last=[COMPLETE_MARKER])
        self.prune()

    def prune(self) -> None:
        if self.keep_last <= 0:
            return
        remote, _ = remote_checkpoints(self.url)
        for step in list(remote)[: -self.keep_last]:
            storage.remove(storage.join(remote[step], COMPLETE_MARKER))
            storage.remove(remote[step], recursive=True)

    def push_logs(self) -> None:
        """Upload the run directory's other files (config, metrics, TensorBoard events) that changed."""
        if not self.local.is_dir():
            return
        for path in sorted(self.local.rglob("*")):
            rel = path.relative_to(self.local)
            if not path.is_file() or rel.parts[0] in LOG_EXCLUDE or path.name.endswith(".tmp"):
                continue
            st = path.stat()
            if self._pushed.get(rel.as_posix()) != (st.st_size, st.st_mtime_ns):
                storage.put_file(path, storage.join(self.url, *rel.parts))
                self._pushed[rel.as_posix()] = (st.st_size, st.st_mtime_ns)


def _listed_files(ckpt: Path) -> list[str]:
    """The files a checkpoint's COMPLETE marker holds checksums of (relative names); [] for an old marker."""
    try:
        record = json.loads((ckpt / COMPLETE_MARKER).read_text() or "{}")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt / COMPLETE_MARKER}: unreadable ({e})") from e
    return list((record.get("sha256") or {}) if isinstance(record, dict) else {})


def sync_collective(mirror: RunMirror, resume: str, ctx: D.DistContext) -> None:
    """Collective: rank 0 syncs the mirror with the store; every rank gets its error, if any."""
    error = None
    if ctx.is_main:
        try:
            mirror.sync(resume)
        except (OSError, ValueError) as e:
            error = (type(e).__name__, str(e))
    error = D.broadcast_object(error)
    if error is not None:
        raise CheckpointError(error[1]) if error[0] == "CheckpointError" else OSError(f"{mirror.url}: {error[1]}")
