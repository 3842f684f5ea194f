"""The full-state checkpoint format: rank 0 gathers the whole model and optimizer and writes them alone.

    model.safetensors       full fp32 weights, our parameter names (the checkpoint is a model directory)
    optimizer.safetensors   full optimizer state tensors, named "<param fqn>::<key>"

Every checkpoint written before sharded checkpoints existed is one; `checkpoint.format=full` still
writes it. Loading broadcasts rank 0's copy into the model's shards, so it resumes on any world size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from sodakit.fileio import writing
from sodakit.model.load import WEIGHTS, CheckpointError, read_weights
from sodakit.model.sharded import optimizer_key
from sodakit.train import distributed as D

OPTIM_TENSORS = "optimizer.safetensors"
OPTIM_JSON = "optimizer.json"  # both formats: param groups and which state entries are tensors


def split_optimizer_state(osd: dict) -> tuple[dict[str, Any], dict]:
    """An optimizer state dict as (tensors named "<param>::<key>", the JSON rest: param groups and layout)."""
    tensors: dict[str, Any] = {}
    layout: dict[str, dict[str, Any]] = {}
    for fqn, entry in osd["state"].items():
        layout[fqn] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[optimizer_key(fqn, key)] = value
                layout[fqn][key] = "tensor"
            else:
                layout[fqn][key] = {"value": value}
    return tensors, {"param_groups": osd["param_groups"], "state": layout}


def join_optimizer_state(tensors: dict[str, Any], meta: dict, where: Path) -> dict:
    """The inverse of `split_optimizer_state`; a tensor the layout names but `tensors` lacks is an error."""
    state: dict[str, dict[str, Any]] = {}
    for fqn, keys in meta["state"].items():
        state[fqn] = {}
        for key, kind in keys.items():
            if kind == "tensor":
                name = optimizer_key(fqn, key)
                if name not in tensors:
                    raise CheckpointError(f"{where}: missing optimizer tensor {name}")
                state[fqn][key] = tensors[name]
            else:
                state[fqn][key] = kind["value"]
    return {"state": state, "param_groups": meta["param_groups"]}


def read_optimizer_meta(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / OPTIM_JSON).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt / OPTIM_JSON}: cannot read ({e})") from e


def gather_full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Collective: the full weights and optimizer state on rank 0's CPU (empty elsewhere)."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def write_optimizer(directory: Path, optim_sd: dict) -> None:
    tensors, meta = split_optimizer_state(optim_sd)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with writing(directory / OPTIM_TENSORS):
        save_file(tensors, str(directory / OPTIM_TENSORS))
    (directory / OPTIM_JSON).write_text(json.dumps(meta, indent=1))


def load_full_state(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: D.DistContext) -> None:
    """Collective: rank 0 reads the files, every rank gets its shards of weights and optimizer state."""
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    model_sd = read_weights(ckpt / WEIGHTS) if ctx.is_main else {}
    set_model_state_dict(model, model_sd, options=opts)
    del model_sd
    optim_sd = (join_optimizer_state(read_weights(ckpt / OPTIM_TENSORS), read_optimizer_meta(ckpt), ckpt / OPTIM_TENSORS)
                if ctx.is_main else {})
    set_optimizer_state_dict(model, optimizer, optim_sd, options=opts)


def load_full_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], ctx: D.DistContext) -> None:
    """Collective: full weights held by rank 0 into a (sharded) model (init_from)."""
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state_dict if ctx.is_main else {}, options=opts)
