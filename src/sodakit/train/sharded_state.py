"""Model and optimizer state to and from a sharded checkpoint (model/sharded.py) with torch.distributed.checkpoint.

Saving: every rank writes the pieces it holds (its FSDP shards; a tensor every rank holds whole is
written by one of them) into `shards/`, all ranks in parallel, nothing gathered anywhere. Loading: every
rank reads the pieces that overlap the shards it holds now, so a checkpoint written by N ranks resumes
on M. Non-tensor optimizer state (param groups, their learning rates and betas) goes to optimizer.json,
as in the full format.

The writer is DCP's safetensors writer; a storage layer on URLs (fsspec) would pass its own
`StorageWriter`/`StorageReader` to the same `dcp.save`/`dcp.async_save`/`dcp.load` calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from sodakit.model.load import CheckpointError
from sodakit.model.sharded import SHARDS_DIR, file_index, optimizer_key
from sodakit.train.full_state import (
    OPTIM_JSON,
    join_optimizer_state,
    read_optimizer_meta,
    split_optimizer_state,
)

# A rank writes its weights file and its optimizer file at the same time.
WRITE_THREADS = 2


class ShardWriter(HuggingFaceStorageWriter):
    """DCP's safetensors writer for one checkpoint's `shards/`, remembering the files this rank wrote
    (their checksums go into the checkpoint's COMPLETE marker)."""

    def __init__(self, checkpoint_dir: Path, names: list[str]) -> None:
        super().__init__(str(checkpoint_dir / SHARDS_DIR), fqn_to_index_mapping={n: file_index(n) for n in names},
                         save_distributed=True, thread_count=WRITE_THREADS)
        self.written: list[str] = []  # relative to the checkpoint directory

    def write_data(self, plan, planner):  # type: ignore[no-untyped-def]
        future = super().write_data(plan, planner)  # DCP's file writer finishes before returning
        self.written = sorted({f"{SHARDS_DIR}/{r.storage_data.relative_path}" for r in future.wait()})
        return future


def sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict]:
    """This rank's pieces of weights and optimizer state as one flat dict of (D)Tensors, and the
    optimizer's JSON rest. No communication: nothing is gathered."""
    flat: dict[str, Any] = dict(get_model_state_dict(model))
    tensors, meta = split_optimizer_state(get_optimizer_state_dict(model, optimizer))
    flat.update(tensors)
    return flat, meta


def write_optimizer_meta(directory: Path, meta: dict) -> None:
    (directory / OPTIM_JSON).write_text(json.dumps(meta, indent=1))


def load_sharded_state(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       group: dist.ProcessGroup | None) -> None:
    """Collective: every rank reads its pieces of the weights and optimizer state, resharded to this run."""
    meta = read_optimizer_meta(ckpt)
    model_sd = get_model_state_dict(model)
    optim_sd = get_optimizer_state_dict(model, optimizer)  # placeholders shaped like this run's shards
    targets, _ = split_optimizer_state(optim_sd)
    wanted = dict(model_sd)
    for fqn, keys in meta["state"].items():
        for key, kind in keys.items():
            if kind == "tensor":
                name = optimizer_key(fqn, key)
                if name not in targets:
                    raise CheckpointError(f"{ckpt / OPTIM_JSON}: optimizer state {name} does not belong to this model")
                wanted[name] = targets[name]
    try:
        dcp.load(wanted, storage_reader=HuggingFaceStorageReader(str(ckpt / SHARDS_DIR)), process_group=group)
    except (Exception, CheckpointException) as e:  # DCP's error lists every rank's traceback: say what and where
        raise CheckpointError(f"{ckpt / SHARDS_DIR}: cannot read the sharded state ({error_summary(e)})") from e
    set_model_state_dict(model, model_sd)
    set_optimizer_state_dict(model, optimizer, join_optimizer_state(wanted, meta, ckpt / SHARDS_DIR))


def error_summary(e: BaseException) -> str:
    """One line for an error; for DCP's CheckpointException (every failed rank's traceback), the first
    failed rank's error itself."""
    if isinstance(e, CheckpointException) and e.failures:
        rank, (cause, _) = min(e.failures.items())
        return f"rank {rank}: {error_summary(cause)}"
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
