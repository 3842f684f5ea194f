"""Open a trained model from any of its on-disk forms, plus the model part of our checkpoints.

1. A sodakit model directory (a full-state training checkpoint is one, with optimizer/loader state on top):
       model.safetensors   our parameter names, fp32 master weights
       sodakit.json        sidecar: {"format": "sodakit", "model": ModelConfig dict, "vocab": Vocab dict,
                            "codec": CodecInfo dict | null, "tokenizer": "tokenizer.json" | null, "step", ...}
       tokenizer.json      when training had one (a SODA-style tokenizer file, copied verbatim)
2. A sharded training checkpoint (model/sharded.py): the sidecar and tokenizer.json as above, the
   weights in `shards/` as every rank's own pieces, put back together here in one process whatever
   the number of ranks that wrote them.
3. A Hugging Face Qwen3ForCausalLM directory (config.json + model.safetensors or shards + index); the
   sidecar is honoured when an export of ours carries it.

A training run directory (holding checkpoints/step_*) resolves to its newest complete checkpoint.
Only safetensors are read: loading never unpickles anything.

Loading a sodakit directory checks the weights against the sha256 recorded when they were written (in
the sidecar; for shards, in the checkpoint's COMPLETE marker): a bit-flipped or cut-off file is a
CheckpointError naming it. Given a run directory, a damaged newest checkpoint is skipped for the previous
complete one, and `PretrainedInfo.notes` says so.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor
from torch.distributed.checkpoint.api import CheckpointException

from sodakit.config import ConfigError, from_dict, to_dict
from sodakit.fileio import DamagedFileError, load_safetensors, sha256_file, writing
from sodakit.model import hf
from sodakit.model.config import ModelConfig
from sodakit.model.qwen3 import Qwen3
from sodakit.model.sharded import SHARDS_DIR, ShardedWeights, is_sharded
from sodakit.tokens.vocab import Vocab

SIDECAR = "sodakit.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
FORMAT = "sodakit"
FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step_"
# Written last into a checkpoint's temp directory; a step_* directory without it is ignored.
COMPLETE_MARKER = "COMPLETE"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or incompatible with what is asked of it."""


@dataclass
class PretrainedInfo:
    path: Path
    source: str  # "sodakit" (our checkpoint) or "hf" (Qwen3ForCausalLM directory)
    model_config: ModelConfig
    vocab: Vocab | None
    codec: dict[str, Any] | None
    tokenizer_path: Path | None
    step: int | None = None
    sidecar: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# Writing (used by train/checkpoint.py and model/commands.py)
# ---------------------------------------------------------------------------------------------------
def make_sidecar(
    cfg: ModelConfig,
    vocab: Vocab | None,
    codec: dict[str, Any] | None = None,
    tokenizer: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": to_dict(cfg),
        "vocab": vocab.to_dict() if vocab is not None else None,
        "codec": codec,
        "tokenizer": TOKENIZER if tokenizer else None,
        **extra,
    }


def write_model_dir(
    directory: Path,
    state_dict: dict[str, Tensor],
    cfg: ModelConfig,
    vocab: Vocab | None,
    codec: dict[str, Any] | None = None,
    tokenizer: str | os.PathLike | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write weights + sidecar (+ tokenizer.json) into `directory` (the caller makes it atomic)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with writing(directory / WEIGHTS):
        save_file(tensors, str(directory / WEIGHTS), metadata={"format": "pt"})
    return write_model_metadata(directory, cfg, vocab, codec, tokenizer,
                                weights_sha256=sha256_file(directory / WEIGHTS), **extra)


def write_model_metadata(
    directory: Path,
    cfg: ModelConfig,
    vocab: Vocab | None,
    codec: dict[str, Any] | None = None,
    tokenizer: str | os.PathLike | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Sidecar (+ a copy of tokenizer.json) of a model directory whose weights are written elsewhere."""
    directory.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        src = Path(tokenizer)
        if src.is_dir():
            src = src / TOKENIZER
        if not src.is_file():
            raise FileNotFoundError(f"tokenizer file {src} does not exist")
        shutil.copyfile(src, directory / TOKENIZER)
    sidecar = make_sidecar(cfg, vocab, codec, tokenizer=tokenizer is not None, **extra)
    (directory / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    return sidecar


# ---------------------------------------------------------------------------------------------------
# Finding checkpoints
# ---------------------------------------------------------------------------------------------------
def is_complete_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / COMPLETE_MARKER).is_file() and (path / SIDECAR).is_file()


def list_checkpoints(run_or_ckpt_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (step_* with the COMPLETE marker) under `run/checkpoints` or `dir`, oldest first."""
    root = Path(run_or_ckpt_dir)
    if (root / CHECKPOINTS_DIR).is_dir():
        root = root / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX) :].isdigit():
            if is_complete_checkpoint(p):
                found.append((int(p.name[len(CHECKPOINT_PREFIX) :]), p))
    return [p for _, p in sorted(found)]


def resolve(path: str | os.PathLike) -> Path:
    """A model directory for `path`: itself, or the newest complete checkpoint of a run directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if _is_model_dir(p) or hf.is_hf_dir(p):
        return p
    ckpts = list_checkpoints(p)
    if ckpts:
        return ckpts[-1]
    raise CheckpointError(
        f"{p} is neither a sodakit checkpoint ({SIDECAR} + {WEIGHTS} or {SHARDS_DIR}/), a Hugging Face Qwen3 directory "
        f"({hf.HF_CONFIG} + safetensors) nor a run directory with complete checkpoints"
    )


def _is_model_dir(p: Path) -> bool:
    return (p / SIDECAR).is_file() and ((p / WEIGHTS).is_file() or is_sharded(p))


def read_sidecar(directory: Path) -> dict[str, Any]:
    path = directory / SIDECAR
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the sidecar ({e})") from e
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: 'format' is {data.get('format')!r}, expected {FORMAT!r}")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {data['format_version']} is newer than this sodakit reads")
    return data


def model_config_from_sidecar(sidecar: dict[str, Any], where: Path) -> ModelConfig:
    try:
        return from_dict(ModelConfig, sidecar["model"])
    except (KeyError, ConfigError, ValueError) as e:
        raise CheckpointError(f"{where / SIDECAR}: invalid 'model' record ({e})") from e


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------
def load_state_dict_into(model: torch.nn.Module, sd: dict[str, Tensor], where: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{where}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{where}: tensor {k} has shape {tuple(sd[k].shape)}, model expects {tuple(own[k].shape)}")
    model.load_state_dict(sd, strict=True)


def verify_weights(directory: Path, sidecar: dict[str, Any]) -> None:
    """model.safetensors against the sha256 its sidecar recorded when it was written (if it did)."""
    expected = sidecar.get("weights_sha256")
    if not expected:
        return
    actual = sha256_file(directory / WEIGHTS)
    if actual != expected:
        raise CheckpointError(
            f"{directory / WEIGHTS}: sha256 {actual[:16]}... differs from the {expected[:16]}... recorded in "
            f"{SIDECAR} when it was written: the file was changed or damaged since"
        )


def recorded_checksums(directory: Path) -> dict[str, str] | None:
    """The sha256 of every file of a checkpoint as its COMPLETE marker records them (None when there is no
    marker, or an empty one: checkpoints written before it held checksums)."""
    marker = directory / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        text = marker.read_text()
        return dict(json.loads(text)["sha256"]) if text.strip() else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{marker}: unreadable checksum record ({e})") from e


def check_file(directory: Path, name: str, expected: str) -> None:
    """One file of a checkpoint against the sha256 recorded for it."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 {actual[:16]}... differs from the {expected[:16]}... recorded when the checkpoint "
            f"was written: the file was changed or damaged since"
        )


def read_sharded_weights(directory: Path) -> dict[str, Tensor]:
    """Full weights of a sharded checkpoint, its weight files checked against COMPLETE first."""
    sums = recorded_checksums(directory)
    if sums is None:
        raise CheckpointError(f"{directory}: a sharded checkpoint without its {COMPLETE_MARKER} record is incomplete")
    try:
        weights = ShardedWeights(directory)
    except Exception as e:  # safetensors' and DCP's own errors name neither the file nor what to do
        raise CheckpointError(f"{directory / SHARDS_DIR}: not a readable set of shards ({e})") from e
    if not weights.files:
        raise CheckpointError(f"{directory / SHARDS_DIR}: holds no weights")
    for name in weights.files:
        if name not in sums:
            raise CheckpointError(f"{directory / name}: not recorded in {COMPLETE_MARKER}, so not part of the checkpoint")
        check_file(directory, name, sums[name])
    try:
        return weights.read()
    except (Exception, CheckpointException) as e:
        raise CheckpointError(f"{directory / SHARDS_DIR}: cannot assemble the weights ({e})") from e


def read_weights(path: Path) -> dict[str, Tensor]:
    """A checkpoint's safetensors file; a damaged one is a CheckpointError naming it."""
    try:
        return load_safetensors(path)
    except DamagedFileError as e:
        raise CheckpointError(str(e)) from e


def read_pretrained(path: str | os.PathLike) -> tuple[dict[str, Tensor], PretrainedInfo]:
    """Weights (our names, as stored) and metadata of a checkpoint / HF directory / run directory.

    For a run directory a damaged newest checkpoint falls back to the previous complete one (noted in
    `info.notes`); a checkpoint or HF directory named directly must itself be intact.
    """
    d = resolve(path)
    p = Path(path)
    candidates = [d] if d == p else list(reversed(list_checkpoints(p)))
    skipped: list[str] = []
    for i, ckpt in enumerate(candidates):
        try:
            sd, info = _read_model_dir(ckpt)
        except CheckpointError as e:
            if i + 1 == len(candidates):
                raise CheckpointError("; ".join([*skipped, str(e)]) + (
                    " (no intact checkpoint left in the run directory)" if skipped else "")) from e
            skipped.append(str(e))
            continue
        info.notes[:0] = [f"skipped a damaged checkpoint ({s}); loaded {ckpt} instead" for s in skipped]
        return sd, info
    raise CheckpointError(f"{p}: no checkpoint to load")  # (resolve() refuses an empty run directory first)


def _read_model_dir(d: Path) -> tuple[dict[str, Tensor], PretrainedInfo]:
    if _is_model_dir(d) and not hf.is_hf_dir(d):
        sidecar = read_sidecar(d)
        cfg = model_config_from_sidecar(sidecar, d)
        if is_sharded(d):
            sd = read_sharded_weights(d)
        else:
            verify_weights(d, sidecar)
            sd = read_weights(d / WEIGHTS)
        source = "sodakit"
    else:
        cfg, sd, _raw = hf.load_hf_dir(d)
        sidecar = read_sidecar(d) if (d / SIDECAR).is_file() else {}
        source = "hf"
    notes: list[str] = []
    vocab = Vocab.from_dict(sidecar["vocab"]) if sidecar.get("vocab") else None
    if vocab is None and cfg.vocab_size == Vocab.soda().size:
        vocab = Vocab.soda()
        notes.append("no sodakit.json: assumed the released SODA vocabulary layout (144,644 ids)")
    if vocab is not None and vocab.size > cfg.vocab_size:
        raise CheckpointError(f"{d}: vocabulary layout has {vocab.size} ids but the model only {cfg.vocab_size}")
    tok = d / TOKENIZER
    info = PretrainedInfo(
        path=d,
        source=source,
        model_config=cfg,
        vocab=vocab,
        codec=sidecar.get("codec"),
        tokenizer_path=tok if tok.is_file() else None,
        step=sidecar.get("step"),
        sidecar=sidecar,
        notes=notes,
    )
    return sd, info


def load_pretrained(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[Qwen3, PretrainedInfo]:
    """The model (eval mode, on `device` in `dtype`) and its metadata, from any of the forms above."""
    sd, info = read_pretrained(path)
    with torch.device("meta"):
        model = Qwen3(info.model_config)
    model.to_empty(device=device)
    load_state_dict_into(model, sd, str(info.path))
    model.to(dtype=dtype)
    model.eval()
    return model, info
