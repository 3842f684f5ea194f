"""Training checkpoints: atomic, complete, resumable exactly, never unpickled.

A checkpoint is `RUN/checkpoints/step_XXXXXXXX/`, a sodakit model directory (see model/load.py:
model.safetensors + sodakit.json + tokenizer.json) plus

    optimizer.safetensors   optimizer state tensors, full (unsharded), named "<param fqn>::<key>"
    optimizer.json          param groups (lr, betas, ...) and the state layout
    trainer_state.json      step, tokens seen, world size, per-rank loader state and RNG states, full config
    COMPLETE                written last: the sha256 of every other file

Rank 0 writes everything into `RUN/checkpoints/.tmp-step_XXXXXXXX-<pid>` and renames it into place, so
a run killed mid-write leaves only a temp directory, which `--resume auto` ignores. Old checkpoints are
pruned by renaming them to `.trash-*` first and deleting after, so a kill mid-delete never leaves a
half-deleted `step_*`. Temp and trash leftovers are removed when the next run takes the run directory's
lock (`run_directory`), which also keeps a second process out of a live run.

A resume verifies the checkpoint's files against COMPLETE (checkpoints written before it held checksums:
the weights against the sidecar and the safetensors files' sizes against their headers). `--resume auto`
moves a damaged checkpoint aside to `damaged-step_XXXXXXXX` and falls back to the previous complete one,
saying so. Tensors are gathered to full size, so a checkpoint is also directly loadable for evaluation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from sodakit.fileio import DirectoryInUseError, exclusive_directory, save_safetensors, sha256_file
from sodakit.model.config import ModelConfig
from sodakit.model.load import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    SIDECAR,
    WEIGHTS,
    CheckpointError,
    list_checkpoints,
    model_config_from_sidecar,
    read_sidecar,
    read_weights,
    write_model_dir,
)
from sodakit.tokens.vocab import Vocab
from sodakit.train import distributed as D

OPTIM_TENSORS = "optimizer.safetensors"
OPTIM_JSON = "optimizer.json"
TRAINER_STATE = "trainer_state.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
DAMAGED_PREFIX = "damaged-"


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
# Optimizer state <-> flat tensors + JSON
# ---------------------------------------------------------------------------------------------------
def _flatten_optimizer(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, dict[str, Any]] = {}
    for fqn, entry in osd["state"].items():
        layout[fqn] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{fqn}::{key}"] = value.detach().cpu().contiguous()
                layout[fqn][key] = "tensor"
            else:
                layout[fqn][key] = {"value": value}
    return tensors, {"param_groups": osd["param_groups"], "state": layout}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, where: Path) -> dict:
    state: dict[str, dict[str, Any]] = {}
    for fqn, keys in meta["state"].items():
        state[fqn] = {}
        for key, kind in keys.items():
            if kind == "tensor":
                name = f"{fqn}::{key}"
                if name not in tensors:
                    raise CheckpointError(f"{where / OPTIM_TENSORS}: missing optimizer tensor {name}")
                state[fqn][key] = tensors[name]
            else:
                state[fqn][key] = kind["value"]
    return {"state": state, "param_groups": meta["param_groups"]}


# ---------------------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------------------
@dataclass
class SaveInfo:
    vocab: Vocab
    codec: dict | None
    tokenizer: str | None
    config: dict[str, Any]  # the full TrainConfig as a dict


def save_checkpoint(
    run_dir: Path,
    step: int,
    tokens_seen: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_cfg: ModelConfig,
    loader_state: dict,
    info: SaveInfo,
    keep_last: int,
    ctx: D.DistContext,
) -> Path | None:
    """Collective: every rank calls it. Returns the checkpoint path on rank 0, None elsewhere."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=opts)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=opts)
    per_rank = D.all_gather_object({"rank": ctx.rank, "loader": loader_state, "rng": capture_rng()})
    final = None
    if ctx.is_main:
        root = Path(run_dir) / CHECKPOINTS_DIR
        root.mkdir(parents=True, exist_ok=True)
        name = checkpoint_name(step)
        tmp = root / f"{TMP_PREFIX}{name}-{os.getpid()}"
        final = root / name
        try:
            sidecar = write_model_dir(
                tmp,
                model_sd,
                model_cfg,
                info.vocab,
                info.codec,
                tokenizer=info.tokenizer,
                step=step,
                tokens_seen=tokens_seen,
            )
            tensors, meta = _flatten_optimizer(optim_sd)
            save_safetensors(tensors, tmp / OPTIM_TENSORS)
            (tmp / OPTIM_JSON).write_text(json.dumps(meta, indent=1))
            state = {
                "step": step,
                "tokens_seen": tokens_seen,
                "world_size": ctx.world_size,
                "ranks": sorted(per_rank, key=lambda r: r["rank"]),
                "config": info.config,
            }
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
            sums = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.name != WEIGHTS}
            sums[WEIGHTS] = sidecar["weights_sha256"]
            (tmp / COMPLETE_MARKER).write_text(json.dumps({"sha256": dict(sorted(sums.items()))}, indent=1))
            _fsync_dir_files(tmp)
            old = _to_trash(final) if final.exists() else None  # re-saving a step (a resume that ended there)
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for stale in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(_to_trash(stale), ignore_errors=True)
    D.barrier()
    return final


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
    for p in directory.iterdir():
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
    """Every file against the sha256 in COMPLETE; for checkpoints written before COMPLETE held them, the
    weights against the sidecar's sha256 and each safetensors file's size against its header. JSON files
    must parse. Raises CheckpointError naming the first bad file."""
    marker = ckpt / COMPLETE_MARKER
    try:
        text = marker.read_text()
        recorded = json.loads(text)["sha256"] if text.strip() else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{marker}: unreadable checksum record ({e})") from e
    if recorded is None:
        recorded = {}
        sidecar = read_sidecar(ckpt)
        if sidecar.get("weights_sha256"):
            recorded[WEIGHTS] = sidecar["weights_sha256"]
        for name in (WEIGHTS, OPTIM_TENSORS):
            if name not in recorded:
                _check_safetensors_size(ckpt / name)
    for name in (SIDECAR, OPTIM_JSON, TRAINER_STATE, WEIGHTS, OPTIM_TENSORS):
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{ckpt / name}: missing from the checkpoint")
    for name, expected in recorded.items():
        path = ckpt / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{path}: sha256 {actual[:16]}... differs from the {expected[:16]}... recorded when the checkpoint "
                f"was written: the file was changed or damaged since"
            )
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


def check_compatible(ckpt: Path, model_cfg: ModelConfig, vocab: Vocab, world_size: int) -> dict[str, Any]:
    """Refuse a resume that cannot continue the same run exactly; returns the trainer state."""
    state = read_trainer_state(ckpt)
    sidecar = read_sidecar(ckpt)
    if state.get("world_size") != world_size:
        raise CheckpointError(
            f"{ckpt} was written by {state.get('world_size')} ranks but this run has {world_size}: resuming with a "
            f"different world size would change the data order and the optimizer sharding; relaunch with "
            f"{state.get('world_size')} ranks (or start a new run from it with model.init_from={ckpt})"
        )
    saved_vocab = sidecar.get("vocab") or {}
    if saved_vocab.get("fingerprint") != vocab.fingerprint:
        raise CheckpointError(
            f"{ckpt}: vocabulary layout {saved_vocab.get('fingerprint')} differs from the data's {vocab.fingerprint}"
        )
    saved_cfg = model_config_from_sidecar(sidecar, ckpt)
    if saved_cfg != model_cfg:
        diff = {k: (getattr(saved_cfg, k), getattr(model_cfg, k)) for k in vars(model_cfg) if getattr(saved_cfg, k) != getattr(model_cfg, k)}
        raise CheckpointError(f"{ckpt}: model config differs from this run's (checkpoint, now): {diff}")
    return state


def load_checkpoint(
    ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], ctx: D.DistContext
) -> dict[str, Any]:
    """Collective: restore model, optimizer and this rank's RNG; returns this rank's loader state."""
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    model_sd = read_weights(ckpt / WEIGHTS) if ctx.is_main else {}
    set_model_state_dict(model, model_sd, options=opts)
    del model_sd
    meta = json.loads((ckpt / OPTIM_JSON).read_text())
    optim_sd = _unflatten_optimizer(read_weights(ckpt / OPTIM_TENSORS), meta, ckpt) if ctx.is_main else {}
    set_optimizer_state_dict(model, optimizer, optim_sd, options=opts)
    ranks = state["ranks"]
    mine = ranks[ctx.rank]
    if mine["rank"] != ctx.rank:
        raise CheckpointError(f"{ckpt / TRAINER_STATE}: rank records out of order")
    restore_rng(mine["rng"])
    return mine["loader"]


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], ctx: D.DistContext) -> None:
    """Collective: full weights held by rank 0 into a (sharded) model (init_from)."""
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state_dict if ctx.is_main else {}, options=opts)
