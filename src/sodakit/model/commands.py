"""`sodakit convert`: Hugging Face Qwen3ForCausalLM <-> sodakit checkpoints.

    sodakit convert import [CONFIG.yaml] src=HF_DIR out=OUT_DIR [vocab=vocab.json]
    sodakit convert export [CONFIG.yaml] src=CHECKPOINT_OR_RUN_DIR out=OUT_DIR [dtype=bfloat16]
                           [tokenizer=PATH] [shard_size_gb=5]

Like every stage, each takes a typed config (`key=value`, optionally over a YAML file); the positional
form `import HF_DIR OUT_DIR` and the flags (`--vocab`, `--dtype`, `--tokenizer`, `--shard-size-gb`)
are other spellings of the same keys.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from sodakit.config import ConfigError, Flag, parse_config_args
from sodakit.device import DTYPES
from sodakit.fileio import atomic_directory
from sodakit.model import hf
from sodakit.model.load import SIDECAR, make_sidecar, read_pretrained, write_model_dir
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import Vocab


def import_hf(src: str | os.PathLike, out: str | os.PathLike, vocab: Vocab | None = None) -> Path:
    """Turn a Qwen3ForCausalLM directory into a sodakit model directory (atomically)."""
    src, out = Path(src), Path(out)
    if not hf.is_hf_dir(src):
        raise hf.HFFormatError(f"{src}: not a Hugging Face directory (needs {hf.HF_CONFIG} and safetensors weights)")
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new output directory")
    sd, info = read_pretrained(src)
    vocab = vocab or info.vocab
    if vocab is not None and vocab.size > info.model_config.vocab_size:
        raise ValueError(f"vocab layout has {vocab.size} ids but the model only {info.model_config.vocab_size}")
    with atomic_directory(out) as tmp:
        write_model_dir(
            tmp,
            {k: v.float() for k, v in sd.items()},
            info.model_config,
            vocab,
            info.codec,
            tokenizer=info.tokenizer_path,
            imported_from=str(src.resolve()),
            step=info.step,
        )
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
    return out


def export_hf(
    src: str | os.PathLike,
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    tokenizer: str | os.PathLike | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Write a sodakit checkpoint (or a run's newest) as a Qwen3ForCausalLM directory with our sidecar."""
    sd, info = read_pretrained(src)
    tok_path = tokenizer if tokenizer is not None else info.tokenizer_path
    vocab = info.vocab
    # Always a complete tokenizer (tokenizer.json in the released style + tokenizer_config.json +
    # special_tokens_map.json), rebuilt from the text BPE and the checkpoint's layout.
    tok = SodaTokenizer.from_pretrained(tok_path, vocab=vocab) if tok_path is not None else None
    sidecar = make_sidecar(
        info.model_config, vocab, info.codec, tokenizer=tok is not None, step=info.step, exported_from=str(info.path)
    )
    return hf.save_hf_dir(
        out,
        info.model_config,
        sd,
        dtype=dtype,
        tokenizer=tok,
        extra_files={SIDECAR: json.dumps(sidecar, indent=2)},
        bos_id=vocab.bos_id if vocab else None,
        eos_id=vocab.eos_id if vocab else None,
        max_shard_bytes=max_shard_bytes,
    )



@dataclass
class ImportConfig:
    src: str = "???"  # Hugging Face Qwen3ForCausalLM directory
    out: str = "???"  # new sodakit model directory
    vocab: str | None = None  # JSON file with a Vocab layout (default: the sidecar's, or SODA's at 144,644 ids)


@dataclass
class ExportConfig:
    src: str = "???"  # sodakit checkpoint or run directory (its newest checkpoint)
    out: str = "???"  # new Hugging Face directory
    dtype: str = "float32"  # float32 | bfloat16 | float16
    tokenizer: str | None = None  # tokenizer.json or a directory of tokenizer files (default: the checkpoint's)
    shard_size_gb: float | None = None  # split the weights into shards of this size


IMPORT_FLAGS = (Flag("vocab", help="JSON file with a Vocab layout"),)
EXPORT_FLAGS = (
    Flag("dtype", help="float32 | bfloat16 | float16"),
    Flag("tokenizer", help="tokenizer.json or a directory of tokenizer files"),
    Flag("shard_size_gb", help="split weights into shards of this size"),
)


def run_import(cfg: ImportConfig) -> Path:
    vocab = Vocab.from_dict(json.loads(Path(cfg.vocab).read_text())) if cfg.vocab else None
    return import_hf(cfg.src, cfg.out, vocab)


def run_export(cfg: ExportConfig) -> Path:
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype}: choose one of {sorted(DTYPES)}")
    if cfg.shard_size_gb is not None and not cfg.shard_size_gb > 0:
        raise ConfigError(f"shard_size_gb must be > 0, got {cfg.shard_size_gb}")
    shard = int(cfg.shard_size_gb * 2**30) if cfg.shard_size_gb else None
    return export_hf(cfg.src, cfg.out, DTYPES[cfg.dtype], cfg.tokenizer, shard)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sodakit convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmd", choices=("import", "export"),
                        help="import: Hugging Face directory -> sodakit checkpoint; export: the other way")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the subcommand's config (see CMD --help)")
    ns = parser.parse_args(argv)
    prog = f"sodakit convert {ns.cmd}"
    if ns.cmd == "import":
        icfg, _ = parse_config_args(ImportConfig, ns.args, prog, "Hugging Face Qwen3ForCausalLM directory -> "
                                    "sodakit checkpoint", flags=IMPORT_FLAGS, positionals=("src", "out"))
        out = run_import(icfg)
    else:
        ecfg, _ = parse_config_args(ExportConfig, ns.args, prog, "sodakit checkpoint or run directory -> Hugging "
                                    "Face directory", flags=EXPORT_FLAGS, positionals=("src", "out"))
        out = run_export(ecfg)
    print(f"wrote {out}")
    return 0
