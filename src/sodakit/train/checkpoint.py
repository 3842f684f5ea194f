"""Training checkpoints: atomic, complete, resumable exactly, never unpickled.

A checkpoint is `RUN/checkpoints/step_XXXXXXXX/`, a sodakit model directory (see model/load.py:
model.safetensors + sodakit.json + tokenizer.json) plus

    optimizer.safetensors   optimizer state tensors, full (unsharded), named "<param fqn>::<key>"
    optimizer.json          param groups (lr, betas, ...) and the state layout
    trainer_state.json      step, tokens seen, world size, per-rank loader state and RNG states, full config
    COMPLETE                written last

Rank 0 writes everything into `RUN/checkpoints/.tmp-step_XXXXXXXX-<pid>` and renames it into place, so
a run killed mid-write leaves only a temp directory, which `--resume auto` ignores (and the next save
removes). Tensors are gathered to full size, so a checkpoint is also directly loadable for evaluation.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from sodakit.model.config import ModelConfig
from sodakit.model.load import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    CheckpointError,
    list_checkpoints,
    model_config_from_sidecar,
    read_sidecar,
    write_model_dir,
)
from sodakit.tokens.vocab import Vocab
from sodakit.train import distributed as D

OPTIM_TENSORS = "optimizer.safetensors"
OPTIM_JSON = "optimizer.json"
TRAINER_STATE = "trainer_state.json"
TMP_PREFIX = ".tmp-"


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
        for stale in root.glob(f"{TMP_PREFIX}*"):  # leftovers of a killed run
            shutil.rmtree(stale, ignore_errors=True)
        name = checkpoint_name(step)
        tmp = root / f"{TMP_PREFIX}{name}-{os.getpid()}"
        final = root / name
        try:
            write_model_dir(
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
            save_file(tensors, str(tmp / OPTIM_TENSORS))
            (tmp / OPTIM_JSON).write_text(json.dumps(meta, indent=1))
            state = {
                "step": step,
                "tokens_seen": tokens_seen,
                "world_size": ctx.world_size,
                "ranks": sorted(per_rank, key=lambda r: r["rank"]),
                "config": info.config,
            }
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
            _fsync_dir_files(tmp)
            (tmp / COMPLETE_MARKER).write_text("")
            if final.exists():  # re-saving a step (e.g. after a resume that ended there)
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    D.barrier()
    return final


def _fsync_dir_files(directory: Path) -> None:
    for p in directory.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------
def find_resume(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint to resume from: None for a fresh run. Refuses to silently overwrite a run."""
    existing = list_checkpoints(run_dir)
    if resume == "none":
        if existing:
            raise CheckpointError(
                f"{run_dir} already holds checkpoints (newest {existing[-1].name}); resume with "
                f"checkpoint.resume=auto (or --resume auto), or choose a new run_dir"
            )
        return None
    if resume == "auto":
        return existing[-1] if existing else None
    path = Path(resume)
    if not path.is_dir() or not (path / COMPLETE_MARKER).is_file():
        raise CheckpointError(f"checkpoint.resume={resume}: not a complete checkpoint directory")
    return path


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
    model_sd = load_file(str(ckpt / "model.safetensors")) if ctx.is_main else {}
    set_model_state_dict(model, model_sd, options=opts)
    del model_sd
    meta = json.loads((ckpt / OPTIM_JSON).read_text())
    optim_sd = _unflatten_optimizer(load_file(str(ckpt / OPTIM_TENSORS)), meta, ckpt) if ctx.is_main else {}
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
