"""Hugging Face `Qwen3ForCausalLM` interop: config and weight conversion, directory import/export.

The released SODA checkpoints are `Qwen3ForCausalLM` directories (config.json + model.safetensors +
tokenizer files). Our model keeps the same tensors except that q/k/v and gate/up are fused, so the
conversion is a rename plus a concatenation / split; nothing is approximated.

config.json is written for transformers 5 (`rope_parameters` with `rope_type: llama3`), with the
transformers 4 spelling (`rope_theta`, `rope_scaling`) alongside so older versions read it too.

Llama-3 RoPE scaling as config.json states it (`llama3_rope_fields`): transformers warns on every load
when `original_max_position_embeddings` is not below `max_position_embeddings`, which SODA's numbers
(8192 vs 4096) are not. The scaled frequencies depend on the original length only through its ratios to
the two frequency factors and to each wavelength (low/high wavelength = original / factor, smoothing
ramp = (original / wavelength - low) / (high - low)), so dividing all three by the same power of two
changes no bit of them. Exports write the smallest such division that puts the original length below
max_position_embeddings (SODA: 2048, 0.25, 1.0 for 8192, 1, 4); imports undo it when the low factor is
such a fraction, so the model config reads as the recipe wrote it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from sodakit.fileio import atomic_directory, load_safetensors, save_safetensors
from sodakit.model.config import ModelConfig, RopeScaling

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
# Files of a tokenizer that travel with a checkpoint when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


class HFFormatError(ValueError):
    """A Hugging Face directory that is not a Qwen3ForCausalLM we can represent exactly."""


# ---------------------------------------------------------------------------------------------------
# config.json <-> ModelConfig
# ---------------------------------------------------------------------------------------------------
def llama3_rope_fields(rs: RopeScaling, max_positions: int) -> tuple[int, float, float]:
    """(original_max_position_embeddings, low_freq_factor, high_freq_factor) for config.json: the same
    frequencies, with the original length below `max_positions` where a power-of-two division gets it
    there (module docstring)."""
    original, low, high = rs.original_max_position_embeddings, rs.low_freq_factor, rs.high_freq_factor
    shift = 0
    while (original >> shift) >= max_positions and (original >> (shift + 1)) << (shift + 1) == original:
        shift += 1
    if (original >> shift) >= max_positions:
        return original, low, high  # no exact rescaling: transformers will warn, the numbers stay right
    return original >> shift, math.ldexp(low, -shift), math.ldexp(high, -shift)


def _canonical_llama3(original: int, low: float, high: float) -> tuple[int, float, float]:
    """Undo `llama3_rope_fields`: scale back by the power of two that makes low_freq_factor 1, if any."""
    mantissa, exponent = math.frexp(low)
    if mantissa != 0.5 or exponent >= 1:  # low is not 2**-k for some k >= 1
        return original, low, high
    shift = 1 - exponent
    return original << shift, math.ldexp(low, shift), math.ldexp(high, shift)


def _rope_dict(cfg: ModelConfig) -> dict:
    if cfg.rope_scaling is None:
        return {"rope_type": "default", "rope_theta": cfg.rope_theta}
    rs = cfg.rope_scaling
    original, low, high = llama3_rope_fields(rs, cfg.max_seq_len)
    return {
        "rope_type": "llama3",
        "rope_theta": cfg.rope_theta,
        "factor": rs.factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original,
    }


def to_hf_config(
    cfg: ModelConfig, dtype: torch.dtype = torch.float32, bos_id: int | None = None, eos_id: int | None = None
) -> dict:
    rope = _rope_dict(cfg)
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "dtype": dtype_name,
        "torch_dtype": dtype_name,
        # transformers >= 5
        "rope_parameters": rope,
        # transformers 4.x
        "rope_theta": cfg.rope_theta,
        "rope_scaling": rope if cfg.rope_scaling is not None else None,
    }


def from_hf_config(hf: dict, where: str = HF_CONFIG) -> ModelConfig:
    """ModelConfig for a Qwen3ForCausalLM config.json; refuses anything we would not reproduce exactly."""
    model_type = hf.get("model_type")
    if model_type not in ("qwen3", None):
        raise HFFormatError(f"{where}: model_type is {model_type!r}, expected 'qwen3'")
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        if key not in hf:
            raise HFFormatError(f"{where}: missing required field {key!r}")
    if hf.get("attention_bias"):
        raise HFFormatError(f"{where}: attention_bias=true is not supported (SODA models have no biases)")
    if hf.get("use_sliding_window"):
        raise HFFormatError(f"{where}: sliding-window attention is not supported")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise HFFormatError(f"{where}: hidden_act {act!r} is not supported, expected 'silu'")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if isinstance(rope, dict) and rope and all(isinstance(v, dict) for v in rope.values()):
        raise HFFormatError(f"{where}: per-layer-type rope_parameters are not supported")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    theta = float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0)))
    heads = int(hf["num_attention_heads"])
    max_pos = int(hf.get("max_position_embeddings", 4096))
    if rope_type == "default":
        scaling = None
    elif rope_type == "llama3":
        try:
            original, low, high = _canonical_llama3(int(rope.get("original_max_position_embeddings", max_pos)),
                                                    float(rope["low_freq_factor"]), float(rope["high_freq_factor"]))
            scaling = RopeScaling(factor=float(rope["factor"]), low_freq_factor=low, high_freq_factor=high,
                                  original_max_position_embeddings=original)
        except KeyError as e:
            raise HFFormatError(f"{where}: llama3 rope scaling is missing {e}") from e
    else:
        raise HFFormatError(f"{where}: rope_type {rope_type!r} is not supported (expected 'default' or 'llama3')")
    return ModelConfig(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        n_layers=int(hf["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(hf.get("head_dim") or int(hf["hidden_size"]) // heads),
        d_ff=int(hf["intermediate_size"]),
        max_seq_len=max_pos,
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        init_std=float(hf.get("initializer_range", 0.02)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


# ---------------------------------------------------------------------------------------------------
# state dict <-> HF state dict
# ---------------------------------------------------------------------------------------------------
def to_hf_state_dict(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our parameter names/fusions -> Hugging Face Qwen3ForCausalLM tensors (contiguous, unshared)."""
    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    out: dict[str, Tensor] = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(cfg.n_layers):
        o, h = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = sd[o + "attn.wqkv.weight"].split([q_dim, kv_dim, kv_dim], dim=0)
        gate, up = sd[o + "mlp.w_gate_up.weight"].split([cfg.d_ff, cfg.d_ff], dim=0)
        out.update(
            {
                h + "input_layernorm.weight": sd[o + "attn_norm.weight"],
                h + "self_attn.q_proj.weight": q,
                h + "self_attn.k_proj.weight": k,
                h + "self_attn.v_proj.weight": v,
                h + "self_attn.o_proj.weight": sd[o + "attn.wo.weight"],
                h + "self_attn.q_norm.weight": sd[o + "attn.q_norm.weight"],
                h + "self_attn.k_norm.weight": sd[o + "attn.k_norm.weight"],
                h + "post_attention_layernorm.weight": sd[o + "mlp_norm.weight"],
                h + "mlp.gate_proj.weight": gate,
                h + "mlp.up_proj.weight": up,
                h + "mlp.down_proj.weight": sd[o + "mlp.w_down.weight"],
            }
        )
    return {k: v.contiguous().clone() for k, v in out.items()}


def from_hf_state_dict(hf: dict[str, Tensor], cfg: ModelConfig, where: str = "checkpoint") -> dict[str, Tensor]:
    """Hugging Face Qwen3ForCausalLM tensors -> our state dict. Missing or unexpected tensors are errors."""
    hf = dict(hf)

    def take(key: str) -> Tensor:
        if key not in hf:
            raise HFFormatError(f"{where}: missing tensor {key!r}")
        return hf.pop(key)

    sd: dict[str, Tensor] = {"embed.weight": take("model.embed_tokens.weight"), "norm.weight": take("model.norm.weight")}
    if cfg.tie_embeddings:
        hf.pop("lm_head.weight", None)  # some exporters write the tied copy anyway
    else:
        sd["lm_head.weight"] = take("lm_head.weight")
    for i in range(cfg.n_layers):
        o, h = f"layers.{i}.", f"model.layers.{i}."
        sd[o + "attn_norm.weight"] = take(h + "input_layernorm.weight")
        sd[o + "attn.wqkv.weight"] = torch.cat(
            [take(h + "self_attn.q_proj.weight"), take(h + "self_attn.k_proj.weight"), take(h + "self_attn.v_proj.weight")]
        )
        sd[o + "attn.wo.weight"] = take(h + "self_attn.o_proj.weight")
        sd[o + "attn.q_norm.weight"] = take(h + "self_attn.q_norm.weight")
        sd[o + "attn.k_norm.weight"] = take(h + "self_attn.k_norm.weight")
        sd[o + "mlp_norm.weight"] = take(h + "post_attention_layernorm.weight")
        sd[o + "mlp.w_gate_up.weight"] = torch.cat([take(h + "mlp.gate_proj.weight"), take(h + "mlp.up_proj.weight")])
        sd[o + "mlp.w_down.weight"] = take(h + "mlp.down_proj.weight")
    leftover = [k for k in hf if not k.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise HFFormatError(f"{where}: unexpected tensors for a {cfg.n_layers}-layer Qwen3: {sorted(leftover)[:5]}")
    return sd


# ---------------------------------------------------------------------------------------------------
# Directories
# ---------------------------------------------------------------------------------------------------
def is_hf_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / HF_CONFIG).is_file() and ((p / HF_WEIGHTS).is_file() or (p / HF_INDEX).is_file())


def read_hf_tensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of an HF directory: model.safetensors, or the shards listed in model.safetensors.index.json."""
    p = Path(path)
    if (p / HF_WEIGHTS).is_file():
        return load_safetensors(p / HF_WEIGHTS)
    index_path = p / HF_INDEX
    if not index_path.is_file():
        raise HFFormatError(f"{p}: neither {HF_WEIGHTS} nor {HF_INDEX} found (only safetensors are read)")
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise HFFormatError(f"{index_path}: not a safetensors index with a 'weight_map' ({e})") from e
    tensors: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = p / shard
        if not shard_path.is_file():
            raise HFFormatError(f"{index_path}: shard {shard} is missing")
        tensors.update(load_safetensors(shard_path))
    missing = set(weight_map) - set(tensors)
    if missing:
        raise HFFormatError(f"{index_path}: tensors listed but absent from the shards: {sorted(missing)[:5]}")
    return tensors


def load_hf_dir(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Tensor], dict]:
    """(ModelConfig, our state dict, raw config.json dict) of a Qwen3ForCausalLM directory."""
    p = Path(path)
    cfg_path = p / HF_CONFIG
    if not cfg_path.is_file():
        raise HFFormatError(f"{p}: no {HF_CONFIG}")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise HFFormatError(f"{cfg_path}: not valid JSON ({e})") from e
    cfg = from_hf_config(raw, str(cfg_path))
    sd = from_hf_state_dict(read_hf_tensors(p), cfg, str(p))
    return cfg, sd, raw


def _shard(tensors: dict[str, Tensor], max_bytes: int) -> list[dict[str, Tensor]]:
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    return shards


def save_hf_dir(
    out_dir: str | os.PathLike,
    cfg: ModelConfig,
    state_dict: dict[str, Tensor],
    dtype: torch.dtype = torch.float32,
    tokenizer: str | os.PathLike | object | None = None,
    extra_files: dict[str, str] | None = None,
    bos_id: int | None = None,
    eos_id: int | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Write a Qwen3ForCausalLM directory atomically (temp directory, then rename).

    tokenizer: a SodaTokenizer (written complete with `save_pretrained`), or a tokenizer.json file or a
    directory whose tokenizer files are copied along.
    extra_files: name -> text written next to the weights (e.g. our sodakit.json sidecar).
    max_shard_bytes: split the weights into model-0000i-of-0000n.safetensors plus an index.
    """
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new output directory")
    with atomic_directory(out) as tmp:
        tensors = {k: v.detach().to("cpu", dtype) for k, v in to_hf_state_dict(state_dict, cfg).items()}
        meta = {"format": "pt"}
        if max_shard_bytes is None:
            save_safetensors(tensors, tmp / HF_WEIGHTS, metadata=meta)
        else:
            shards = _shard(tensors, max_shard_bytes)
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_safetensors(shard, tmp / name, metadata=meta)
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / HF_INDEX).write_text(json.dumps(index, indent=2))
        (tmp / HF_CONFIG).write_text(json.dumps(to_hf_config(cfg, dtype, bos_id, eos_id), indent=2))
        gen_cfg = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": eos_id, "do_sample": False}
        (tmp / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2))
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp)
        elif tokenizer is not None:
            copy_tokenizer_files(tokenizer, tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out


def copy_tokenizer_files(src: str | os.PathLike, dst_dir: Path) -> list[str]:
    """Copy tokenizer.json (a file, or the tokenizer files of a directory) into dst_dir."""
    s = Path(src)
    if s.is_file():
        shutil.copyfile(s, dst_dir / "tokenizer.json")
        return ["tokenizer.json"]
    if not s.is_dir():
        raise FileNotFoundError(f"tokenizer {s} is neither a tokenizer.json file nor a directory")
    copied = []
    for name in TOKENIZER_FILES:
        if name == "generation_config.json":
            continue
        if (s / name).is_file():
            shutil.copyfile(s / name, dst_dir / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        raise FileNotFoundError(f"tokenizer directory {s} holds no tokenizer.json")
    return copied

