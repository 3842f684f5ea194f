"""`sodakit convert`: Hugging Face Qwen3ForCausalLM <-> sodakit checkpoints.

    sodakit convert import HF_DIR OUT_DIR [--vocab vocab.json]
    sodakit convert export CHECKPOINT_OR_RUN_DIR OUT_DIR [--dtype bfloat16] [--tokenizer PATH] [--shard-size-gb 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from sodakit.device import DTYPES
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
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
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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



def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sodakit convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_imp = sub.add_parser("import", help="Hugging Face Qwen3ForCausalLM directory -> sodakit checkpoint")
    p_imp.add_argument("src")
    p_imp.add_argument("out")
    p_imp.add_argument("--vocab", help="JSON file with a Vocab layout (default: the sidecar's, or SODA's at 144,644 ids)")
    p_exp = sub.add_parser("export", help="sodakit checkpoint or run directory -> Hugging Face directory")
    p_exp.add_argument("src")
    p_exp.add_argument("out")
    p_exp.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p_exp.add_argument("--tokenizer", help="tokenizer.json or a directory of tokenizer files (default: the checkpoint's)")
    p_exp.add_argument("--shard-size-gb", type=float, default=None, help="split weights into shards of this size")
    args = parser.parse_args(argv)
    if args.cmd == "import":
        vocab = None
        if args.vocab:
            vocab = Vocab.from_dict(json.loads(Path(args.vocab).read_text()))
        out = import_hf(args.src, args.out, vocab)
    else:
        shard = int(args.shard_size_gb * 2**30) if args.shard_size_gb else None
        out = export_hf(args.src, args.out, DTYPES[args.dtype], args.tokenizer, shard)
    print(f"wrote {out}")
    return 0
