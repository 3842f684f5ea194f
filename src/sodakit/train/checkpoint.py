"""Training checkpoints: atomic, complete, resumable exactly on any number of ranks, never unpickled.

A checkpoint is `RUN/checkpoints/step_XXXXXXXX/` in one of two formats (`checkpoint.format`):

    sharded (default)   sodakit.json + tokenizer.json (model config, vocabulary, codec: model/load.py) and
                        shards/, every rank's own pieces of weights and optimizer state (model/sharded.py,
                        written by train/sharded_state.py with torch.distributed.checkpoint)
    full                model.safetensors + sodakit.json + tokenizer.json (a model directory) and
                        optimizer.safetensors, gathered to and written by rank 0 (train/full_state.py)

plus, in both,

    optimizer.json      param groups (lr, betas, ...) and the optimizer state's layout
    trainer_state.json  step, tokens seen, world size, per-rank loader and RNG states, format, full config
    COMPLETE            written last: the sha256 of every other file (shards/ files by relative path)

Everything goes into `RUN/checkpoints/.tmp-step_XXXXXXXX-<pid of rank 0>`, which rank 0 renames into place
after writing COMPLETE, so a run killed mid-write leaves only a temp directory, which `--resume auto`
ignores. In a sharded save each rank hashes the files it wrote and sends the sums to rank 0: COMPLETE is
written only once every rank's sums arrived, that is once every shard is on disk (and fsynced by DCP).
Old checkpoints are pruned by renaming them to `.trash-*` first and deleting after, so a kill mid-delete
never leaves a half-deleted `step_*`. Temp and trash leftovers are removed when the next run takes the
run directory's lock (`run_directory`), which also keeps a second process out of a live run.

Asynchronous saves (`checkpoint.async_save`, sharded only; torchtitan's scheme): the training loop waits
only while the state is copied to CPU memory; DCP then writes it in a background thread and the commit
above follows in another, while training goes on. At most one save is in flight: the next save, and the
end of the run, wait for it. The background work talks over its own gloo process group, so its
collectives never interleave with the training's.

A run directory on an object store (train/remote_run.py) is written here as its local mirror; the
Checkpointer's `publish` hook copies each checkpoint to the store right after its commit, so only
complete checkpoints, every file COMPLETE lists, are ever uploaded, asynchronous ones included.

A resume verifies the checkpoint's files against COMPLETE (checkpoints written before it held checksums:
the weights against the sidecar and the safetensors files' sizes against their headers). `--resume auto`
moves a damaged checkpoint aside to `damaged-step_XXXXXXXX` and falls back to the previous complete one,
saying so. A checkpoint resumes on another world size: weights and optimizer state are resharded on
load, and the data continues at the global sample counter every rank saved (`resume_rank_state`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.staging import BlockingAsyncStager

from sodakit.fileio import DirectoryInUseError, exclusive_directory, sha256_file
from sodakit.model.config import ModelConfig
from sodakit.model.load import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    SIDECAR,
    WEIGHTS,
    CheckpointError,
    check_file,
    list_checkpoints,
    model_config_from_sidecar,
    read_sidecar,
    recorded_checksums,
    write_model_dir,
    write_model_metadata,
)
from sodakit.model.sharded import SHARDS_DIR, is_sharded
from sodakit.tokens.vocab import Vocab
from sodakit.train import distributed as D
from sodakit.train.config import CheckpointConfig
from sodakit.train.full_state import (
    OPTIM_JSON,
    OPTIM_TENSORS,
    gather_full_state,
    load_full_state,
    write_optimizer,
)
from sodakit.train.sharded_state import (
    ShardWriter,
    error_summary,
    load_sharded_state,
    sharded_state,
    write_optimizer_meta,
)

TRAINER_STATE = "trainer_state.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
DAMAGED_PREFIX = "damaged-"
VERIFY_THREADS = 8  # sha256 of a sharded checkpoint's files in parallel (hashlib releases the GIL)


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


# ---------------------------------------------------------------------------------------------------
# RNG states (JSON-safe)
# ---------------------------------------------------------------------------------------------------
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": _b64(torch.get_rng_state()), "python": list(random.getstate()[1])}
    state["python_version"] = random.getstate()[0]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = _b64(torch.cuda.get_rng_state())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_unb64(state["cuda"]))


# ---------------------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------------------
@dataclass
class SaveInfo:
    vocab: Vocab
    codec: dict | None
    tokenizer: str | None
    config: dict[str, Any]  # the full TrainConfig as a dict


@dataclass
class SaveReport:
    """One committed checkpoint and what it cost."""

    step: int
    path: Path
    format: str
    asynchronous: bool
    blocked_s: float  # the training loop waited this long (for an earlier save still in flight included)
    total_s: float  # from the start of the save until the checkpoint was committed

    def record(self) -> dict[str, Any]:
        return {"step": self.step, "event": "checkpoint", "checkpoint": str(self.path), "format": self.format,
                "async": self.asynchronous, "checkpoint_blocked_s": self.blocked_s, "checkpoint_total_s": self.total_s}


class Checkpointer:
    """Writes a run's checkpoints (collective: every rank calls `save`, `wait` and `close` in the same order)."""

    def __init__(self, run_dir: Path, cfg: CheckpointConfig, ctx: D.DistContext,
                 on_commit: Callable[[SaveReport], None] | None = None,
                 publish: Callable[[Path], None] | None = None) -> None:
        """`on_commit`: every rank, in the training thread, once a save is committed (for an asynchronous
        save at the next `save`, `wait` or `close`). `publish`: rank 0, with each checkpoint right after its
        commit (an asynchronous save's in the background thread, so a copy to a store overlaps training);
        its error fails the save like a write error, and the committed local checkpoint stays."""
        self.root = Path(run_dir) / CHECKPOINTS_DIR
        self.format, self.keep_last, self.ctx, self.on_commit = cfg.format, cfg.keep_last, ctx, on_commit
        self.publish = publish
        self.tag = D.broadcast_object(os.getpid())  # rank 0's pid names the temp directories on every rank
        # Sharded saves (and their commit) talk over a group of their own: an asynchronous one runs its
        # collectives in a background thread while training runs its own on the default group.
        self.group = dist.new_group(backend="gloo") if cfg.format == "sharded" else None
        self.executor: ThreadPoolExecutor | None = None
        self.stager: BlockingAsyncStager | None = None
        if cfg.async_save:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="sodakit-checkpoint")
            # On a GPU the staging buffers are pinned and kept from one save to the next.
            self.stager = BlockingAsyncStager(cache_staged_state_dict=ctx.device.type == "cuda")
        self.pending: Future[SaveReport] | None = None
        self.last: Path | None = None  # the newest checkpoint this run committed

    def save(self, step: int, tokens_seen: int, model: nn.Module, optimizer: torch.optim.Optimizer,
             model_cfg: ModelConfig, loader_state: dict, info: SaveInfo) -> None:
        """Checkpoint `step` (collective). Returns once it is committed, or, asynchronously, once the state
        is copied (after waiting for the previous save)."""
        start = time.perf_counter()
        self.wait()
        per_rank = D.all_gather_object({"rank": self.ctx.rank, "loader": loader_state, "rng": capture_rng()})
        name = checkpoint_name(step)
        tmp, final = self.root / f"{TMP_PREFIX}{name}-{self.tag}", self.root / name
        state = {"step": step, "tokens_seen": tokens_seen, "world_size": self.ctx.world_size, "format": self.format,
                 "ranks": sorted(per_rank, key=lambda r: r["rank"]), "config": info.config}
        sidecar_extra = {"step": step, "tokens_seen": tokens_seen}
        if self.format == "full":
            self._save_full(tmp, final, model, optimizer, model_cfg, info, state, sidecar_extra)
            self._committed(SaveReport(step, final, "full", False, time.perf_counter() - start,
                                       time.perf_counter() - start))
            return
        flat, optim_meta = sharded_state(model, optimizer)
        failed = None
        if self.ctx.is_main:
            try:
                write_model_metadata(tmp, model_cfg, info.vocab, info.codec, info.tokenizer, **sidecar_extra)
                write_optimizer_meta(tmp, optim_meta)
                (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
            except (OSError, ValueError) as e:
                shutil.rmtree(tmp, ignore_errors=True)
                failed = str(e)
        failed = D.broadcast_object(failed)  # every rank stops, instead of the others waiting for rank 0
        if failed is not None:
            raise CheckpointError(f"checkpoint {name} was not saved: {failed}")
        writer = ShardWriter(tmp, list(flat))
        if self.executor is None:
            error = None
            try:
                dcp.save(flat, storage_writer=writer, process_group=self.group)
            except (Exception, CheckpointException) as e:  # DCP gives every rank the error; the commit reports it
                error = error_summary(e)
            path = self._commit_shards(writer, tmp, final, error)
            elapsed = time.perf_counter() - start
            self._committed(SaveReport(step, path, "sharded", False, elapsed, elapsed))
            return
        upload = dcp.async_save(flat, storage_writer=writer, process_group=self.group, async_stager=self.stager)
        blocked = time.perf_counter() - start
        self.pending = self.executor.submit(self._finish_async, upload, writer, tmp, final, step, start, blocked)

    def wait(self) -> None:
        """Block until the save in flight, if any, is committed (collective); its error is raised here."""
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        self._committed(pending.result())

    def close(self) -> None:
        """Wait for the save in flight and release the background thread (collective)."""
        try:
            self.wait()
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=True)
            if self.stager is not None:
                self.stager.close()

    # ---- the formats --------------------------------------------------------------------------------
    def _save_full(self, tmp: Path, final: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                   model_cfg: ModelConfig, info: SaveInfo, state: dict, sidecar_extra: dict) -> None:
        """Gather everything to rank 0, which writes and commits the checkpoint alone; every rank learns the
        outcome, so a failed write fails the save everywhere (instead of the other ranks waiting for rank 0
        in a barrier until the collective timeout)."""
        model_sd, optim_sd = gather_full_state(model, optimizer)
        failed = None
        if self.ctx.is_main:
            try:
                sidecar = write_model_dir(tmp, model_sd, model_cfg, info.vocab, info.codec, tokenizer=info.tokenizer,
                                          **sidecar_extra)
                del model_sd
                write_optimizer(tmp, optim_sd)
                (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
                self._commit(tmp, final, {WEIGHTS: sidecar["weights_sha256"]})
            except Exception as e:
                shutil.rmtree(tmp, ignore_errors=True)
                failed = _failure(e)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        failed = D.broadcast_object(failed)
        if failed is not None:
            raise CheckpointError(f"checkpoint {final.name} was not saved: {failed}")

    def _finish_async(self, upload: Future, writer: ShardWriter, tmp: Path, final: Path, step: int,
                      start: float, blocked: float) -> SaveReport:
        """The background half of an asynchronous save: wait for DCP's writes, then commit."""
        error = None
        try:
            upload.result()
        except (Exception, CheckpointException) as e:
            error = error_summary(e)
        path = self._commit_shards(writer, tmp, final, error)
        return SaveReport(step, path, "sharded", True, blocked, time.perf_counter() - start)

    def _commit_shards(self, writer: ShardWriter, tmp: Path, final: Path, error: str | None) -> Path:
        """Collective over the checkpoint group: every rank's file sums (or its error) to rank 0, which
        commits; every rank learns the outcome, so a failed save fails on every rank."""
        sums = {} if error else {name: sha256_file(tmp / name) for name in writer.written}
        reports = _gather(self.group, {"rank": self.ctx.rank, "sums": sums, "error": error})
        outcome: dict[str, str] = {}
        if self.ctx.is_main:
            errors = sorted({r["error"] for r in reports if r["error"]})  # DCP hands every rank the same error
            try:
                if errors:
                    raise CheckpointError("; ".join(errors))
                self._commit(tmp, final, {k: v for r in reports for k, v in r["sums"].items()})
                outcome = {"path": str(final)}
            except Exception as e:
                shutil.rmtree(tmp, ignore_errors=True)
                outcome = {"error": _failure(e)}
        outcome = D.broadcast_object(outcome, group=self.group)
        if "error" in outcome:
            raise CheckpointError(f"checkpoint {final.name} was not saved: {outcome['error']}")
        return Path(outcome["path"])

    def _commit(self, tmp: Path, final: Path, sums: dict[str, str]) -> None:
        """Rank 0, every file of the checkpoint in `tmp`: record their sums in COMPLETE, rename the
        directory into place, prune old checkpoints. `sums` holds those already known."""
        sums = dict(sums)
        for p in sorted(tmp.iterdir()):
            if p.is_file() and p.name not in sums:
                sums[p.name] = sha256_file(p)
        _fsync_dir_files(tmp)
        write_complete_marker(tmp, sums)
        old = _to_trash(final) if final.exists() else None  # re-saving a step (a resume that ended there)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for stale in list_checkpoints(self.root)[:-self.keep_last] if self.keep_last > 0 else []:
            shutil.rmtree(_to_trash(stale), ignore_errors=True)
        if self.publish is not None:
            self.publish(final)

    def _committed(self, report: SaveReport) -> None:
        self.last = report.path
        if self.on_commit is not None:
            self.on_commit(report)


def _failure(e: Exception) -> str:
    """Why a save failed, for every rank's error: our own CheckpointError as it reads, others with their type."""
    return str(e) if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"


def write_complete_marker(directory: Path, sums: dict[str, str]) -> None:
    """The commit point's record: every file's sha256; what a kill before this line leaves is a temp directory."""
    with open(directory / COMPLETE_MARKER, "w") as f:
        f.write(json.dumps({"sha256": dict(sorted(sums.items()))}, indent=1))
        f.flush()
        os.fsync(f.fileno())


def _gather(group: dist.ProcessGroup | None, obj: Any) -> list[Any]:
    """`obj` of every rank in `group` on rank 0 of it (elsewhere an empty list)."""
    if group is None or dist.get_world_size(group) == 1:
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size(group) if dist.get_rank(group) == 0 else None
    dist.gather_object(obj, out, dst=dist.get_global_rank(group, 0), group=group)
    return out or []


def _to_trash(path: Path) -> Path:
    """Rename a checkpoint out of the `step_*` namespace before deleting it: a kill mid-delete then leaves
    a `.trash-*` directory (removed at the next start), never a half-deleted checkpoint."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{os.getpid()}")
    os.replace(path, trash)
    return trash


def remove_leftovers(run_dir: Path) -> list[str]:
    """Delete the temp and trash directories killed runs left in RUN/checkpoints (only safe while holding
    the run directory's lock); returns their names."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    stale = sorted(p for p in root.iterdir() if p.name.startswith((TMP_PREFIX, TRASH_PREFIX)))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in stale]


@contextlib.contextmanager
def run_directory(run_dir: Path, ctx: D.DistContext) -> Iterator[None]:
    """Collective: rank 0 holds RUN/.lock for the whole job, then clears leftovers of killed runs.

    A second `sodakit train` (or a second `--resume auto`) on a live run directory gets an error naming
    the holder on every rank, instead of deleting the live run's temp checkpoint and its metrics.jsonl.
    """
    with contextlib.ExitStack() as stack:
        error = None
        if ctx.is_main:
            try:
                stack.enter_context(exclusive_directory(run_dir, "run directory"))
                remove_leftovers(run_dir)
            except DirectoryInUseError as e:
                error = str(e)
        error = D.broadcast_object(error)
        if error is not None:
            raise DirectoryInUseError(error)
        yield


def _fsync_dir_files(directory: Path) -> None:
    """The files rank 0 wrote into a checkpoint (DCP fsyncs the shards it writes itself)."""
    for p in directory.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------
@dataclass
class ResumeChoice:
    path: Path | None  # None: a fresh run
    skipped: list[str] = field(default_factory=list)  # damaged checkpoints passed over, with the reason


def find_resume(run_dir: Path, resume: str, verify: bool = True) -> ResumeChoice:
    """The checkpoint to resume from (rank 0's decision; see choose_resume). Refuses to silently
    overwrite a run; with "auto" a damaged checkpoint is moved aside and the previous one taken."""
    existing = list_checkpoints(run_dir)
    if resume == "none":
        if existing:
            raise CheckpointError(
                f"{run_dir} already holds checkpoints (newest {existing[-1].name}); resume with "
                f"checkpoint.resume=auto (or --resume auto), or choose a new run_dir"
            )
        return ResumeChoice(None)
    if resume == "auto":
        choice = ResumeChoice(None)
        for ckpt in reversed(existing):
            try:
                if verify:
                    verify_checkpoint(ckpt)
                choice.path = ckpt
                break
            except CheckpointError as e:
                aside = _set_aside(ckpt)
                choice.skipped.append(f"{e} (moved to {aside.name})")
        return choice
    path = Path(resume)
    if not path.is_dir() or not (path / COMPLETE_MARKER).is_file():
        raise CheckpointError(f"checkpoint.resume={resume}: not a complete checkpoint directory")
    if verify:
        verify_checkpoint(path)
    return ResumeChoice(path)


def choose_resume(run_dir: Path, resume: str, ctx: D.DistContext) -> ResumeChoice:
    """Collective: rank 0 finds and verifies the checkpoint (reading it once), every rank gets the answer,
    and a fallback over a damaged checkpoint is reported on stderr."""
    answer: dict[str, Any] = {}
    if ctx.is_main:
        try:
            choice = find_resume(run_dir, resume)
            answer = {"path": str(choice.path) if choice.path else None, "skipped": choice.skipped}
        except CheckpointError as e:
            answer = {"error": str(e)}
    answer = D.broadcast_object(answer)
    if "error" in answer:
        raise CheckpointError(answer["error"])
    choice = ResumeChoice(Path(answer["path"]) if answer["path"] else None, answer["skipped"])
    if choice.skipped and choice.path is None:
        raise CheckpointError(
            f"{run_dir}: no intact checkpoint to resume from ({'; '.join(choice.skipped)}); the damaged ones were "
            f"moved aside, so running the same command again starts the run afresh"
        )
    if ctx.is_main:
        for note in choice.skipped:
            print(f"sodakit train: damaged checkpoint skipped: {note}; resuming from {choice.path}", file=sys.stderr)
    return choice


def _set_aside(ckpt: Path) -> Path:
    """Rename a damaged checkpoint out of the step_* namespace (kept for inspection, never loaded again)."""
    for n in range(1000):
        aside = ckpt.with_name(f"{DAMAGED_PREFIX}{ckpt.name}" + (f"-{n}" if n else ""))
        if not aside.exists():
            os.replace(ckpt, aside)
            return aside
    raise CheckpointError(f"{ckpt}: damaged, and too many damaged copies of it already sit next to it")


def verify_checkpoint(ckpt: Path) -> None:
    """Every file against the sha256 in COMPLETE; for checkpoints written before COMPLETE held them (all of
    the full format), the weights against the sidecar's sha256 and each safetensors file's size against
    its header. JSON files must parse. Raises CheckpointError naming the first bad file."""
    recorded = recorded_checksums(ckpt)
    sharded = is_sharded(ckpt)
    if recorded is None:
        if sharded:
            raise CheckpointError(f"{ckpt / COMPLETE_MARKER}: holds no checksums, which every sharded checkpoint records")
        recorded = {}
        sidecar = read_sidecar(ckpt)
        if sidecar.get("weights_sha256"):
            recorded[WEIGHTS] = sidecar["weights_sha256"]
        for name in (WEIGHTS, OPTIM_TENSORS):
            if name not in recorded:
                _check_safetensors_size(ckpt / name)
    required = (SIDECAR, OPTIM_JSON, TRAINER_STATE) + (() if sharded else (WEIGHTS, OPTIM_TENSORS))
    for name in required:
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{ckpt / name}: missing from the checkpoint")
    if sharded:
        shards = sorted(f"{SHARDS_DIR}/{p.name}" for p in (ckpt / SHARDS_DIR).iterdir())
        if not shards:
            raise CheckpointError(f"{ckpt / SHARDS_DIR}: empty")
        for name in shards:
            if name not in recorded:
                raise CheckpointError(f"{ckpt / name}: not recorded in {COMPLETE_MARKER}, so not part of the checkpoint")
    with ThreadPoolExecutor(min(VERIFY_THREADS, max(1, len(recorded)))) as pool:
        for done in [pool.submit(check_file, ckpt, name, expected) for name, expected in sorted(recorded.items())]:
            done.result()
    for name in (SIDECAR, OPTIM_JSON, TRAINER_STATE):
        try:
            json.loads((ckpt / name).read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{ckpt / name}: not valid JSON ({e})") from e


def _check_safetensors_size(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the data it lists."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        size = path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    if size != 8 + n + end:
        raise CheckpointError(f"{path}: {size} bytes but its header describes {8 + n + end}: cut off or damaged")


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / TRAINER_STATE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt / TRAINER_STATE}: cannot read ({e})") from e


def check_compatible(ckpt: Path, model_cfg: ModelConfig, vocab: Vocab) -> dict[str, Any]:
    """Refuse a resume that cannot continue the same run (another model shape or vocabulary layout);
    returns the trainer state. Another world size is fine (see `resume_rank_state`)."""
    state = read_trainer_state(ckpt)
    sidecar = read_sidecar(ckpt)
    saved_vocab = sidecar.get("vocab") or {}
    if saved_vocab.get("fingerprint") != vocab.fingerprint:
        raise CheckpointError(
            f"{ckpt}: vocabulary layout {saved_vocab.get('fingerprint')} differs from the data's {vocab.fingerprint}"
        )
    saved_cfg = model_config_from_sidecar(sidecar, ckpt)
    if saved_cfg != model_cfg:
        diff = {k: (getattr(saved_cfg, k), getattr(model_cfg, k)) for k in vars(model_cfg) if getattr(saved_cfg, k) != getattr(model_cfg, k)}
        raise CheckpointError(f"{ckpt}: model config differs from this run's (checkpoint, now): {diff}")
    ranks = state.get("ranks")
    if not isinstance(ranks, list) or [r.get("rank") for r in ranks] != list(range(int(state.get("world_size", -1)))):
        raise CheckpointError(f"{ckpt / TRAINER_STATE}: 'ranks' should hold one record per rank 0..world_size-1, in order")
    return state


def resume_rank_state(ckpt: Path, state: dict[str, Any], ctx: D.DistContext) -> tuple[dict, dict | None]:
    """(loader state, RNG state or None) for this rank to resume with.

    On the world size that wrote the checkpoint, each rank takes its own record. On another one, the
    data position must be global (the same record on every rank that wrote it, apart from its
    'world_size'): every rank continues from it, so the global batch after the resize is the one the
    run would have drawn anyway. A rank that existed before keeps its RNG state; a new one keeps the
    seed it started with (training draws nothing from the global generators).
    """
    ranks = state["ranks"]
    if len(ranks) == ctx.world_size:
        return ranks[ctx.rank]["loader"], ranks[ctx.rank]["rng"]
    positions = [{k: v for k, v in r["loader"].items() if k != "world_size"} for r in ranks]
    for r, position in enumerate(positions):
        if position != positions[0]:
            raise CheckpointError(
                f"{ckpt} was written by {len(ranks)} ranks whose data sources hold per-rank positions (rank 0: "
                f"{positions[0]}, rank {r}: {position}), so it cannot continue on {ctx.world_size} ranks; relaunch "
                f"with {len(ranks)} ranks"
            )
    mine = ranks[ctx.rank] if ctx.rank < len(ranks) else None
    return ranks[0]["loader"], mine["rng"] if mine is not None else None


def load_checkpoint(
    ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], ctx: D.DistContext
) -> dict[str, Any]:
    """Collective: restore model, optimizer (resharded to this run's ranks) and this rank's RNG; returns
    this rank's loader state."""
    if is_sharded(ckpt):
        load_sharded_state(ckpt, model, optimizer, group=None)
    else:
        load_full_state(ckpt, model, optimizer, ctx)
    loader, rng = resume_rank_state(ckpt, state, ctx)
    if rng is not None:
        restore_rng(rng)
    return loader
