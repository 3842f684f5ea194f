"""Open what `sodakit eval` needs from a model path: the scorer, its tokenizer, its codec."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sodakit.config import to_dict
from sodakit.eval.lm import HFCausalLM, ScoringLM, as_scoring_lm, describe_config, model_fingerprint
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.text_tokenizer import TextTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(ValueError):
    """A model path that cannot be evaluated (no weights, no tokenizer, unsupported dtype, ...)."""


@dataclass
class LoadedModel:
    lm: ScoringLM
    tokenizer: SodaTokenizer
    info: dict
    codec_record: dict | None = None  # the codec the model was trained with (sodakit.json), if recorded
    notes: list[str] = field(default_factory=list)


def _dtype(name: str, device: str) -> torch.dtype:
    if name not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {list(DTYPES)}, got {name!r}")
    if name == "float16" and not device.startswith("cuda"):
        raise ModelLoadError("float16 on CPU is not supported (use float32 or bfloat16)")
    return DTYPES[name]


def load_tokenizer(path: Path, vocab=None) -> SodaTokenizer:
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelLoadError(f"no tokenizer.json at {path}; pass --tokenizer PATH (a SODA-style tokenizer.json)")
    if vocab is not None:
        return SodaTokenizer(TextTokenizer.from_file(file), vocab=vocab)
    return SodaTokenizer.from_pretrained(file)


def load_for_eval(path: str | Path, device: str = "cpu", dtype: str = "float32", backend: str = "auto",
                  tokenizer: str | Path | None = None) -> LoadedModel:
    """backend "sodakit": the project's Qwen3 (sodakit checkpoints, run dirs, HF Qwen3 dirs);
    "transformers": AutoModelForCausalLM (any HF causal LM); "auto": sodakit first, then transformers."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    td = _dtype(dtype, device)
    notes: list[str] = []
    errors = []
    if backend in ("auto", "sodakit"):
        try:
            from sodakit.model.load import load_pretrained

            model, info = load_pretrained(path, device=device, dtype=td)
            lm = as_scoring_lm(model)
            tok_path = Path(tokenizer) if tokenizer else info.tokenizer_path
            if tok_path is None and (info.path / "tokenizer.json").is_file():
                tok_path = info.path / "tokenizer.json"
            if tok_path is None:
                raise ModelLoadError(f"{info.path}: no tokenizer.json; pass --tokenizer PATH")
            tok = load_tokenizer(tok_path, info.vocab)
            notes += list(info.notes)
            meta = {
                "path": str(info.path), "backend": "sodakit", "source_format": info.source, "step": info.step,
                "vocab_size": lm.vocab_size, "max_positions": lm.max_positions,
                **model_fingerprint(info.path), "config": describe_config(info.path),
                "model_config": to_dict(info.model_config),
            }
            return LoadedModel(lm, tok, meta, info.codec, notes)
        except ModelLoadError:
            raise
        except Exception as e:
            if backend == "sodakit":
                raise ModelLoadError(f"{path}: cannot load with the sodakit backend ({type(e).__name__}: {e})") from e
            errors.append(f"sodakit backend: {type(e).__name__}: {e}")
    if backend in ("auto", "transformers"):
        try:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(path, dtype=td).to(device)
        except Exception as e:
            errors.append(f"transformers backend: {type(e).__name__}: {e}")
            raise ModelLoadError(f"{path}: cannot load the model:\n  " + "\n  ".join(errors)) from e
        lm = HFCausalLM(model)
        tok_path = Path(tokenizer) if tokenizer else path
        vocab = None
        sidecar = path / "sodakit.json"
        if sidecar.is_file():
            rec = json.loads(sidecar.read_text()).get("vocab")
            if rec:
                from sodakit.tokens.vocab import Vocab

                vocab = Vocab.from_dict(rec)
        tok = load_tokenizer(tok_path, vocab)
        codec = json.loads(sidecar.read_text()).get("codec") if sidecar.is_file() else None
        meta = {"path": str(path), "backend": "transformers", "class": type(model).__name__,
                "vocab_size": lm.vocab_size, "max_positions": lm.max_positions,
                **model_fingerprint(path), "config": describe_config(path)}
        return LoadedModel(lm, tok, meta, codec, notes + errors)
    raise ModelLoadError(f"backend must be auto, sodakit or transformers, got {backend!r}")


def load_eval_codec(spec: str | None, record: dict | None, device: str, allow_mismatch: bool = False):
    """The codec for spoken tasks: --codec, else the source recorded with the model. Its config hash
    must equal the one the model was trained with (codes of another codec mean nothing to it)."""
    from sodakit.audio.codec import load_model_codec

    codec = load_model_codec(spec, record, device=device)
    if codec is None:
        return None
    source = spec or (record or {}).get("source")
    want = (record or {}).get("config_hash")
    if want and codec.config_hash != want and not allow_mismatch:
        raise ModelLoadError(
            f"codec {source} has config hash {codec.config_hash}, but the model was trained on codes of "
            f"{record.get('name')} {want}; pass the matching codec (or --allow-codec-mismatch to score anyway)"
        )
    return codec
