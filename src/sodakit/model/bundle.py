"""Open a trained model for inference: weights, vocabulary layout, tokenizer and codec in one call.

    bundle = load_bundle("runs/x")                        # newest checkpoint of a run, on CUDA if present
    bundle = load_bundle("soda/export", need_codec=True)  # + the codec recorded with the model
    bundle.model, bundle.vocab, bundle.tokenizer, bundle.codec, bundle.info

`path_or_id` is a sodakit checkpoint (full or sharded: the pieces every rank wrote are put together
here, whatever their number), a training run directory (its newest complete checkpoint), a
Hugging Face Qwen3ForCausalLM directory (the released SODA form), or the hub id of one (resolved through
the Hugging Face cache; HF_HUB_OFFLINE=1 never downloads). backend "sodakit" opens it with the project's
Qwen3 (`sodakit.model.load`); "transformers" with AutoModelForCausalLM, any Hugging Face causal LM
(e.g. a text baseline to score); "auto" tries sodakit first, then transformers.

Tokenizer: `tokenizer` when given, else the model's tokenizer.json, always read with the vocabulary
layout the model records. Codec: `codec` (a directory, hub id or Codec) when given, else the source
recorded with the model; need_codec=True requires one, None opens one when there is one, False opens
none (a Codec object given is still used). Every codec is checked against the model
(`sodakit.audio.registry.check_codec`): codes of another codec mean nothing to it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sodakit.audio.codec import Codec
from sodakit.audio.registry import check_codec, load_model_codec
from sodakit.config import to_dict
from sodakit.device import resolve_device, resolve_dtype
from sodakit.fileio import hub_offline, looks_like_hub_id
from sodakit.model.config import ModelConfig
from sodakit.model.load import SIDECAR, TOKENIZER, load_pretrained
from sodakit.model.sharded import SHARDS_DIR
from sodakit.progress import library_bars_off_in_logs
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import Vocab

BACKENDS = ("auto", "sodakit", "transformers")
# What a hub download of a model fetches: configs, weights, tokenizer files and our sidecar.
HUB_FILES = ["*.json", "*.safetensors"]


class ModelLoadError(ValueError):
    """A model that cannot be opened as asked (no weights, no tokenizer, no codec, unknown backend, ...)."""


@dataclass
class BundleInfo:
    """What was opened, as recorded next to every result computed with it."""

    path: Path  # the model directory read (a run directory's newest complete checkpoint)
    backend: str  # "sodakit" or "transformers"
    model_class: str
    vocab_size: int  # rows of the output head
    max_positions: int | None
    device: str = ""  # where it was loaded, resolved ("auto" -> "cuda" or "cpu")
    dtype: str = ""
    source_format: str | None = None  # sodakit backend: "sodakit" (our checkpoint) or "hf" (Qwen3 directory)
    step: int | None = None
    model_config: ModelConfig | None = None  # sodakit backend
    codec_record: dict | None = None  # the codec the model was trained with, as its sidecar records it
    tokenizer_path: Path | None = None
    fingerprint: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the main fields of config.json, when there is one
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "backend": self.backend, "class": self.model_class,
            "source_format": self.source_format, "step": self.step,
            "vocab_size": self.vocab_size, "max_positions": self.max_positions, "device": self.device,
            "dtype": self.dtype,
            **self.fingerprint, "config": self.config,
            "model_config": to_dict(self.model_config) if self.model_config is not None else None,
            "notes": list(self.notes),
        }


@dataclass
class Bundle:
    model: torch.nn.Module  # eval mode; sodakit's Qwen3, or a transformers model (backend transformers)
    vocab: Vocab
    tokenizer: SodaTokenizer | None
    codec: Codec | None
    info: BundleInfo


def load_bundle(
    path_or_id: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float32",
    backend: str = "auto",
    tokenizer: str | os.PathLike | None = None,
    codec: str | os.PathLike | Codec | None = None,
    need_codec: bool | None = False,
    need_tokenizer: bool = False,
    allow_codec_mismatch: bool = False,
) -> Bundle:
    """The model at `path_or_id` with its vocabulary, tokenizer and codec (see the module docstring)."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = local_model_dir(path_or_id)
    dev = resolve_device(device)
    td = resolve_dtype(dtype, dev)
    model, info, recorded_vocab = _open_model(path, backend, dev, td)
    info.device, info.dtype = str(dev), str(td).removeprefix("torch.")
    tok = _open_tokenizer(tokenizer, info, recorded_vocab, need_tokenizer)
    vocab = recorded_vocab or (tok.vocab if tok is not None else None)
    if vocab is None:
        raise ModelLoadError(
            f"{info.path}: the checkpoint records no vocabulary layout and no tokenizer was given (--tokenizer)"
        )
    codec_obj = _open_codec(codec, need_codec, info, vocab, dev)
    if codec_obj is not None:
        info.notes += check_codec(codec_obj, vocab, info.codec_record, allow_codec_mismatch)
    return Bundle(model, vocab, tok, codec_obj, info)


def local_model_dir(path_or_id: str | os.PathLike) -> Path:
    """A local directory for a path, or for a hub id through the Hugging Face cache."""
    path = Path(os.path.expanduser(str(path_or_id)))
    if path.exists():
        return path
    if not looks_like_hub_id(str(path_or_id)):
        raise ModelLoadError(f"model path {path} does not exist")
    from huggingface_hub import snapshot_download  # a transformers dependency, only needed for hub ids

    offline = hub_offline()
    try:
        return Path(snapshot_download(str(path_or_id), allow_patterns=HUB_FILES, local_files_only=offline))
    except Exception as e:
        where = "in the local Hugging Face cache (HF_HUB_OFFLINE=1: no download attempted)" if offline else "on the hub"
        raise ModelLoadError(
            f"model path {path} does not exist, and {path_or_id!r} cannot be found {where} ({type(e).__name__}: {e})"
        ) from e


def _open_model(path: Path, backend: str, device: torch.device, dtype: torch.dtype):
    """(model, info, recorded vocabulary or None), trying the backends `backend` allows in order."""
    errors: list[str] = []
    if backend in ("auto", "sodakit"):
        try:
            model, pre = load_pretrained(path, device=device, dtype=dtype)
        except Exception as e:
            if backend == "sodakit":
                raise ModelLoadError(f"{path}: cannot load with the sodakit backend ({type(e).__name__}: {e})") from e
            errors.append(f"sodakit backend: {type(e).__name__}: {e}")
        else:
            cfg = pre.model_config
            info = BundleInfo(
                path=pre.path, backend="sodakit", model_class=type(model).__name__, vocab_size=cfg.vocab_size,
                max_positions=cfg.max_seq_len, source_format=pre.source, step=pre.step, model_config=cfg,
                codec_record=pre.codec, tokenizer_path=pre.tokenizer_path, fingerprint=model_fingerprint(pre.path),
                config=describe_config(pre.path), notes=list(pre.notes),
            )
            return model, info, pre.vocab
    try:
        from transformers import AutoModelForCausalLM  # optional heavy dependency, only for this backend

        with library_bars_off_in_logs():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    except Exception as e:
        errors.append(f"transformers backend: {type(e).__name__}: {e}")
        raise ModelLoadError(f"{path}: cannot load the model:\n  " + "\n  ".join(errors)) from e
    sidecar = _read_json(path / SIDECAR)
    tok = path / TOKENIZER
    info = BundleInfo(
        path=path, backend="transformers", model_class=type(model).__name__,
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        max_positions=getattr(model.config, "max_position_embeddings", None), codec_record=sidecar.get("codec"),
        tokenizer_path=tok if tok.is_file() else None, fingerprint=model_fingerprint(path),
        config=describe_config(path), notes=errors,
    )
    vocab = Vocab.from_dict(sidecar["vocab"]) if sidecar.get("vocab") else None
    return model, info, vocab


def _open_tokenizer(given: str | os.PathLike | None, info: BundleInfo, vocab: Vocab | None, required: bool):
    path = Path(given) if given is not None else info.tokenizer_path
    if path is None:
        if required:
            raise ModelLoadError(f"{info.path}: no {TOKENIZER}; pass --tokenizer PATH (a SODA-style {TOKENIZER})")
        return None
    file = path / TOKENIZER if path.is_dir() else path
    if not file.is_file():
        raise ModelLoadError(f"no {TOKENIZER} at {path}; pass --tokenizer PATH (a SODA-style {TOKENIZER})")
    return SodaTokenizer.from_pretrained(file, vocab=vocab)


def _open_codec(given, need: bool | None, info: BundleInfo, vocab: Vocab, device: torch.device) -> Codec | None:
    if isinstance(given, Codec):
        return given
    if need is False:
        return None
    codec = load_model_codec(given, info.codec_record, device=str(device), num_codebooks=vocab.num_codebooks)
    if codec is None and need:
        raise ModelLoadError(
            f"{info.path}: the checkpoint records no codec source; pass one with --codec (a Mimi directory, "
            "an offline codec directory or a hub id)"
        )
    return codec


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path}: not JSON ({e})") from e


def model_fingerprint(path: Path) -> dict:
    """A cheap, stable identity of a model directory: config.json bytes plus, per weight file, its
    name, size and a sha256 of its first and last MiB (hashing multi-GB weights on every load is slow;
    the method string says exactly what was hashed)."""
    path = Path(path)
    h = hashlib.sha256()
    files = []
    for meta in ("config.json", SIDECAR):
        if (path / meta).is_file():
            h.update((path / meta).read_bytes())
    weights = [*path.glob("*.safetensors"), *path.glob("*.pt"), *path.glob("*.bin"),
               *path.glob(f"{SHARDS_DIR}/*.safetensors")]  # a sharded checkpoint's pieces
    for w in sorted(weights):
        name = w.relative_to(path).as_posix()
        size = w.stat().st_size
        with open(w, "rb") as f:
            head = f.read(1 << 20)
            f.seek(max(0, size - (1 << 20)))
            tail = f.read(1 << 20)
        h.update(name.encode() + b"\0" + str(size).encode() + head + tail)
        files.append({"file": name, "bytes": size})
    return {
        "fingerprint": h.hexdigest()[:32],
        "method": "sha256(config.json, sodakit.json + per weight file: name, size, first and last MiB)",
        "weight_files": files,
    }


def describe_config(path: Path) -> dict:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return {}
    d = _read_json(cfg)
    keep = ("architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "torch_dtype", "dtype")
    return {k: d[k] for k in keep if k in d}
