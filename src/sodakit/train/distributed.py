"""Process group setup and FSDP2 wrapping: one code path for 1 process, torchrun, CPU (gloo) and GPU (NCCL).

A plain `python -m sodakit train` (no torchrun) still gets a 1-rank process group over an in-memory
store, so FSDP2, the state-dict gathering and the all-reduces run exactly as in a multi-node job.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from sodakit.device import resolve_device

# Generous: the first collective waits for every rank to finish start-up (and compilation).
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    owns_group: bool  # we created the process group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(pref: str, local_rank: int) -> torch.device:
    """`pref` resolved as everywhere (sodakit.device); a CUDA rank takes the GPU of its local rank."""
    if pref not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {pref!r} unknown; choose 'auto', 'cpu' or 'cuda'")
    if resolve_device(pref).type == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device_pref: str = "auto") -> DistContext:
    """Join (torchrun / an existing group) or create a 1-rank process group."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_pref, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            kwargs = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=TIMEOUT)
        owns = True
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, backend, owns)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard_model(model: nn.Module, ctx: DistContext, bf16: bool, compile_blocks: bool = False) -> nn.Module:
    """FSDP2 (fully_shard) per decoder block, then the root; optional torch.compile per block.

    bf16: parameters are all-gathered in bf16 for compute while the sharded masters stay fp32 and
    gradients are reduced in fp32 (FSDP2's MixedPrecisionPolicy).
    """
    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    layers = model.layers  # type: ignore[attr-defined]
    for i, block in enumerate(layers):
        if compile_blocks:
            block.compile()
        # The last block's parameters are needed again right away by backward: keep them gathered.
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(layers) - 1)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0, group: dist.ProcessGroup | None = None):
    """Broadcast a small JSON-like object from global rank `src` (collective over `group`, default: all
    ranks; pickled between our own ranks only)."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def all_gather_object(obj) -> list:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
