"""The sharded checkpoint format: weights and optimizer state as every rank's own pieces.

A sharded training checkpoint is a model directory without `model.safetensors`: beside the sidecar
(sodakit.json) and tokenizer.json it holds `shards/`, written by torch.distributed.checkpoint (DCP)
in its safetensors layout, two files per rank:

    shards/shard-RRRRR-model-00001-of-00002.safetensors   rank RRRRR-1's pieces of the weights
    shards/shard-RRRRR-model-00002-of-00002.safetensors   its pieces of the optimizer state

Weights keep their parameter names; optimizer tensors are named "<parameter>::<key>" ("::exp_avg",
"::step"). Each file is plain safetensors whose header says where each piece sits in the full tensor
(DCP's `DCP_SHARDING_INFO`: the piece's offsets), so the pieces can be read back by any number of
processes, a single one without a process group included, whatever the world size that wrote them.
Nothing in the format is pickled. A tensor every rank holds whole (a replicated scalar like an
optimizer step count) is written once.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import Tensor
from torch.distributed.checkpoint import HuggingFaceStorageReader

SHARDS_DIR = "shards"
WEIGHTS_FILE = 1  # DCP's file index of the weights ("-model-00001-of-00002")
OPTIMIZER_FILE = 2  # ... and of the optimizer state
OPTIMIZER_KEY_SEP = "::"


def optimizer_key(param: str, key: str) -> str:
    return f"{param}{OPTIMIZER_KEY_SEP}{key}"


def is_optimizer_key(name: str) -> bool:
    return OPTIMIZER_KEY_SEP in name


def file_index(name: str) -> int:
    """Which of a rank's two files a tensor goes to."""
    return OPTIMIZER_FILE if is_optimizer_key(name) else WEIGHTS_FILE


def is_sharded(directory: str | Path) -> bool:
    return (Path(directory) / SHARDS_DIR).is_dir()


class ShardedWeights:
    """The weights of a sharded checkpoint, read in this process (no process group needed)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.reader = HuggingFaceStorageReader(str(self.directory / SHARDS_DIR))
        metadata = self.reader.read_metadata()  # the safetensors headers, no tensor data
        self.shapes = {
            name: (tuple(md.size), md.properties.dtype)
            for name, md in metadata.state_dict_metadata.items()
            if not is_optimizer_key(name)
        }
        files = {Path(info.relative_path).name for index, info in metadata.storage_data.items()
                 if not is_optimizer_key(index.fqn)}
        self.files = sorted(f"{SHARDS_DIR}/{name}" for name in files)  # relative to the checkpoint

    def read(self) -> dict[str, Tensor]:
        """Full-size CPU tensors, every rank's pieces put in place."""
        state = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in self.shapes.items()}
        with warnings.catch_warnings():  # DCP warns that it reads in one process even when asked to
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, storage_reader=self.reader, no_dist=True)
        return state
