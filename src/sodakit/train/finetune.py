"""`sodakit finetune`: supervised fine-tuning on prompt/response data, reusing the pre-training engine.

    sodakit finetune prepare-s2st --manifest train.tsv --model BASE --out data/s2st_sft   # docs/soda.md#speech-to-speech-translation format
    sodakit finetune prepare-jsonl --input pairs.jsonl --model BASE --out data/sft         # {"prompt", "response"}
    sodakit finetune run configs/finetune_s2st.yaml train.model.init_from=BASE sft.path=data/s2st_sft

SFT datasets (the format and the engine's batch source over them) are `sodakit.data.sft`; S2ST manifests
are `sodakit.data.s2st_manifest`. After `finetune run`, score an S2ST model with
`sodakit eval model=RUN tasks=[s2st] data.s2st=test.tsv` (the eval stage sits above training, so the
finetune command does not call it).

`run_finetune` = `sodakit.train.trainer.train(cfg.train, source=SFTSource(...))` with the weights of
`train.model.init_from` (ours or a Hugging Face Qwen3 directory): FSDP2, checkpoints, resume and
metrics are the pre-training engine's. It adds the response loss of the held-out (or training) set
before and after, written to RUN/finetune_summary.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sodakit.audio.codec import Codec
from sodakit.audio.io import load_audio
from sodakit.audio.registry import check_codec, load_codec
from sodakit.config import ConfigError, atomic_write_text, check_ranges, parse_config_args
from sodakit.data.s2st_manifest import REQUIRED_TRAIN, read_manifest
from sodakit.data.sft import (
    METADATA,
    TOKENIZER,
    SFTDataError,
    SFTDataset,
    SFTExample,
    SFTSource,
    rank_world,
    write_sft_dataset,
)
from sodakit.device import resolve_device
from sodakit.fileio import sha256_file
from sodakit.model.bundle import load_bundle
from sodakit.model.load import load_pretrained, read_pretrained
from sodakit.progress import Progress
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.templates import s2st_sequence
from sodakit.train.config import DataConfig, OptimConfig, ScheduleConfig, TrainConfig, validate_train_config
from sodakit.train.trainer import train

SUMMARY = "finetune_summary.json"
PREPARE_CHUNK = 256  # S2ST pairs read and encoded at once (two clips each)


# ---------------------------------------------------------------------------------------------------
# Config (docs/soda.md#speech-to-speech-translation defaults: seq 2048, batch 64, AdamW (0.9, 0.999), wd 0.01, LR 2e-5 cosine, 3% warmup)
# ---------------------------------------------------------------------------------------------------
def _finetune_train_defaults() -> TrainConfig:
    return TrainConfig(
        run_dir="runs/finetune",
        steps=100,
        global_batch=64,
        micro_batch=8,
        data=DataConfig(seq_len=2048),
        optim=OptimConfig(name="adamw", lr=2e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, z_loss=0.0),
        schedule=ScheduleConfig(kind="cosine", warmup_frac=0.03, min_lr_ratio=0.0),
    )


@dataclass
class SFTConfig:
    path: str = ""  # an SFT dataset directory (`sodakit finetune prepare-*`)
    loss: str = "response"  # "response": score the response only; "full": every real token
    pack: bool = False  # several examples per row (document-masked attention); off = one per row, padded
    # Train for this many passes over the data (sets train.steps); None keeps train.steps.
    epochs: float | None = 5.0
    val_path: str | None = None  # held-out SFT dataset for the before/after response loss (default: the training set)
    eval_batches: int = 16  # at most this many batches of train.micro_batch rows for the before/after loss
    eval_before: bool = True  # also measure the starting model (one extra pass over eval_batches)


@dataclass
class FinetuneConfig:
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: TrainConfig = field(default_factory=_finetune_train_defaults)


# ---------------------------------------------------------------------------------------------------
# Loss on held-out data
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def response_loss(model, source: SFTSource, batch_size: int = 8, max_batches: int | None = None,
                  progress: Progress | None = None) -> dict[str, float]:
    """Mean NLL over the scored tokens (the response, or all real tokens with loss="full"); `progress` counts
    the batches."""
    device = model.embed.weight.device
    was_training = model.training
    model.eval()
    ce, n = 0.0, 0.0
    for batch in source.sequential_batches(batch_size, max_batches):
        tokens = batch["tokens"].to(device)
        w = batch["loss_mask"][:, 1:].to(device)
        out = model(tokens[:, :-1], tokens[:, 1:], loss_mask=w)
        ce += float(out.ce_sum)
        n += float(out.num_tokens)
        if progress is not None:
            progress.update(1)
    model.train(was_training)
    return {"loss": ce / max(n, 1.0), "tokens": n}


# ---------------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------------
@dataclass
class BaseModel:
    """What SFT data is prepared for: the tokenizer (and its file), the codec and what loading noticed."""

    tokenizer: SodaTokenizer
    tokenizer_file: Path
    codec: Codec | None = None
    codec_record: dict | None = None  # the codec the model was trained with, as its checkpoint records it
    notes: list[str] = field(default_factory=list)


def _base_model(model: str | None, tokenizer: str | None, codec: str | None = None, need_codec: bool = False,
                allow_codec_mismatch: bool = False) -> BaseModel:
    """The tokenizer and codec of the model to fine-tune, or of the --tokenizer/--codec given without one."""
    given_file = None
    if tokenizer is not None:
        given_file = Path(tokenizer) / TOKENIZER if Path(tokenizer).is_dir() else Path(tokenizer)
    if model is not None:
        bundle = load_bundle(model, device="auto" if need_codec else "cpu", tokenizer=given_file, codec=codec,
                             need_codec=need_codec, need_tokenizer=True, allow_codec_mismatch=allow_codec_mismatch)
        assert bundle.tokenizer is not None  # need_tokenizer
        return BaseModel(bundle.tokenizer, given_file or bundle.info.tokenizer_path, bundle.codec,
                         bundle.info.codec_record, bundle.info.notes)
    if given_file is None:
        raise SFTDataError("no tokenizer: pass --model (a checkpoint with its tokenizer) or --tokenizer")
    tok = SodaTokenizer.from_pretrained(given_file)
    if not need_codec:
        return BaseModel(tok, given_file)
    if codec is None:
        raise SFTDataError("no codec: without --model, pass --codec")
    codec_obj = load_codec(codec, num_codebooks=tok.vocab.num_codebooks)
    return BaseModel(tok, given_file, codec_obj, None, check_codec(codec_obj, tok.vocab, None, allow_codec_mismatch))


def prepare_jsonl(
    input_path: str | os.PathLike,
    out: str | os.PathLike,
    model: str | None = None,
    tokenizer: str | None = None,
    max_len: int | None = None,
    add_eos: bool = True,
) -> Path:
    """Lines {"prompt": SODA string, "response": SODA string} or {"prompt_ids": [...], "response_ids": [...]}
    (optional "id"). Strings are tokenized separately (prompt with BOS), so the response tokens are exactly
    the response's; EOS is appended to the response unless it already ends with one."""
    base = _base_model(model, tokenizer)
    tok, v = base.tokenizer, base.tokenizer.vocab
    path = Path(input_path)
    if not path.is_file():
        raise SFTDataError(f"{path} does not exist")
    examples, skipped = [], 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SFTDataError(f"{where}: not JSON ({e})") from e
        if "prompt" in row and "response" in row:
            prompt = tok.encode(str(row["prompt"]), add_bos=True).astype(np.int64)
            resp = tok.encode(str(row["response"]), add_bos=False).astype(np.int64)
        elif "prompt_ids" in row and "response_ids" in row:
            prompt = np.asarray(row["prompt_ids"], dtype=np.int64)
            resp = np.asarray(row["response_ids"], dtype=np.int64)
            v.check_ids(np.concatenate([prompt, resp]), where)
        else:
            raise SFTDataError(f"{where}: expected keys prompt+response (SODA strings) or prompt_ids+response_ids")
        if len(prompt) == 0 or len(resp) == 0:
            raise SFTDataError(f"{where}: empty prompt or response")
        if add_eos and resp[-1] != v.eos_id:
            resp = np.append(resp, v.eos_id)
        ids = np.concatenate([prompt, resp])
        if max_len is not None and len(ids) > max_len:
            skipped += 1
            continue
        examples.append(SFTExample(str(row.get("id", n)), ids, len(prompt)))
    if not examples:
        raise SFTDataError(f"{path}: no usable examples ({skipped} longer than max_len={max_len})")
    return write_sft_dataset(
        out, examples, v, base.tokenizer_file, base.codec_record, recipe="jsonl", source=str(path.resolve()), source_sha256=sha256_file(path),
        skipped_too_long=skipped, max_len=max_len,
    )


def prepare_s2st(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    model: str | None = None,
    tokenizer: str | None = None,
    codec: str | None = None,
    response_from: str = "source_text",
    max_len: int | None = 2049,
    allow_codec_mismatch: bool = False,
    batch_seconds: float = 240.0,
) -> Path:
    """docs/soda.md#speech-to-speech-translation sequences from a CVSS-style manifest (see sodakit.data.s2st_manifest),
    audio encoded with the model's codec. Sequences longer than max_len (default: 2048-token windows + 1) are
    skipped and counted."""
    items = read_manifest(manifest, require=REQUIRED_TRAIN)
    base = _base_model(model, tokenizer, codec, need_codec=True, allow_codec_mismatch=allow_codec_mismatch)
    tok, v, codec_obj, notes = base.tokenizer, base.tokenizer.vocab, base.codec, base.notes
    assert codec_obj is not None  # need_codec
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    sr = codec_obj.sample_rate
    examples, skipped = [], []
    # A chunk of pairs is read and encoded at a time: memory stays bounded on a full CVSS split.
    with Progress("finetune prepare-s2st", total=len(items), unit="pair") as bar:
        for first in range(0, len(items), PREPARE_CHUNK):
            chunk = items[first : first + PREPARE_CHUNK]
            waves = [load_audio(a, sr) for it in chunk for a in (it.source_audio, it.target_audio)]
            codes = codec_obj.encode_audio(waves, sr, batch_seconds=batch_seconds)
            for i, it in enumerate(chunk):
                src, tgt = np.asarray(codes[2 * i])[: v.num_codebooks], np.asarray(codes[2 * i + 1])[: v.num_codebooks]
                ids, start = s2st_sequence(tok, src, it.source_lang, it.source_text or "", it.target_text or "", tgt, it.target_lang, response_from)  # type: ignore[arg-type]
                if max_len is not None and len(ids) > max_len:
                    skipped.append(it.id)
                    continue
                examples.append(SFTExample(it.id, ids.astype(np.int64), start))
            bar.update(len(chunk), skipped=len(skipped))
    if not examples:
        raise SFTDataError(f"{manifest}: every pair is longer than max_len={max_len} tokens")
    if skipped:
        print(f"note: skipped {len(skipped)} pair(s) longer than {max_len} tokens (e.g. {skipped[:3]})", file=sys.stderr)
    return write_sft_dataset(
        out, examples, v, base.tokenizer_file, dataclasses.asdict(codec_obj.info()), recipe="s2st", response_from=response_from,
        source=str(Path(manifest).resolve()), source_sha256=sha256_file(Path(manifest)), skipped_too_long=skipped,
        max_len=max_len, codec_notes=notes,
    )


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------
def _eval_model(path: str | os.PathLike, source: SFTSource, cfg: FinetuneConfig, device: torch.device,
                when: str) -> dict[str, float]:
    # Only the weights: the SFT data carries the tokens, and a Hugging Face start may record no layout.
    model, _ = load_pretrained(path, device=device)
    bs, limit = cfg.train.micro_batch, cfg.sft.eval_batches
    with Progress(f"finetune: response loss {when}", total=min(limit, math.ceil(len(source.dataset) / bs)),
                  unit="batch", quiet=cfg.train.quiet or not cfg.train.log.progress) as bar:
        loss = response_loss(model, source, bs, limit, progress=bar)
        bar.write(f"finetune: response loss {when} fine-tuning {loss['loss']:.4f} ({loss['tokens']:.0f} tokens)")
    return loss


def run_finetune(cfg: FinetuneConfig):
    """Fine-tune `train.model.init_from` on `sft.path`; returns the engine's TrainResult."""
    t = cfg.train
    validate_train_config(t, prefix="train.")
    check_ranges(cfg.sft, positive=("epochs", "eval_batches"), prefix="sft.")
    if not t.model.init_from:
        raise ConfigError("train.model.init_from is required: the checkpoint (ours or a Hugging Face Qwen3 directory) to fine-tune")
    if not cfg.sft.path:
        raise ConfigError("sft.path is required: an SFT dataset from `sodakit finetune prepare-s2st|prepare-jsonl`")
    if t.data.sources or t.data.val_path:
        raise ConfigError("finetune reads sft.path / sft.val_path; leave train.data.sources and train.data.val_path empty")
    _, info = read_pretrained(t.model.init_from)  # the recorded vocabulary and codec, on every rank
    data = SFTDataset.load(cfg.sft.path, expected_vocab=info.vocab)
    source = SFTSource(data, t.data.seq_len, cfg.sft.loss, cfg.sft.pack, seed=t.seed)
    if cfg.sft.epochs is not None:
        t = dataclasses.replace(t, steps=max(1, math.ceil(cfg.sft.epochs * source.rows_per_epoch / t.global_batch)))
    if source.codec is None and info.codec is not None:
        source.codec = info.codec  # text-only SFT data: keep the model's codec record in the checkpoints
    rank, _ = rank_world()
    eval_data = SFTDataset.load(cfg.sft.val_path, expected_vocab=data.vocab) if cfg.sft.val_path else data
    eval_src = SFTSource(eval_data, t.data.seq_len, cfg.sft.loss, pack=False, rank=0, world_size=1)
    device = resolve_device(t.device)
    before = _eval_model(t.model.init_from, eval_src, cfg, device, "before") if (rank == 0 and cfg.sft.eval_before) else None
    result = train(t, source=source)
    if rank == 0:
        after = _eval_model(result.last_checkpoint, eval_src, cfg, device, "after") if result.last_checkpoint else None
        summary = {
            "init_from": str(t.model.init_from),
            "sft": dataclasses.asdict(cfg.sft),
            "steps": t.steps,
            "rows_per_epoch": source.rows_per_epoch,
            "examples": len(data),
            "eval_set": str(eval_data.path),
            "loss_before": before,
            "loss_after": after,
            "checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        }
        atomic_write_text(Path(t.run_dir) / SUMMARY, json.dumps(summary, indent=2))
        result.val = {"sft_loss_before": before["loss"] if before else float("nan"), "sft_loss_after": after["loss"] if after else float("nan")}
    return result


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def _prepare_parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"sodakit finetune {name}")
    p.add_argument("--model", default=None, help="the model to fine-tune (its tokenizer, vocabulary and codec are used)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the model's)")
    p.add_argument("--out", required=True, help="new SFT dataset directory")
    return p


def main(argv: list[str]) -> int:
    argv = list(argv)
    cmd = argv[0] if argv and argv[0] in ("prepare-s2st", "prepare-jsonl", "run") else "run"
    rest = argv[1:] if argv and argv[0] == cmd else argv
    if cmd == "prepare-s2st":
        p = _prepare_parser(cmd)
        p.add_argument("--manifest", required=True, help="CVSS-style TSV/JSONL (see README-generate)")
        p.add_argument("--codec", default=None, help="codec (default: the one recorded in the model)")
        p.add_argument("--response-from", default="source_text", choices=["source_text", "target_text", "target_audio"],
                       help="where the scored response starts (default: after the source audio)")
        p.add_argument("--max-len", type=int, default=2049, help="skip longer sequences (tokens; default 2049)")
        p.add_argument("--allow-codec-mismatch", action="store_true")
        a = p.parse_args(rest)
        out = prepare_s2st(a.manifest, a.out, a.model, a.tokenizer, a.codec, a.response_from, a.max_len, a.allow_codec_mismatch)
    elif cmd == "prepare-jsonl":
        p = _prepare_parser(cmd)
        p.add_argument("--input", required=True, help="JSONL of {prompt, response} SODA strings or {prompt_ids, response_ids}")
        p.add_argument("--max-len", type=int, default=None, help="skip longer sequences (tokens)")
        a = p.parse_args(rest)
        out = prepare_jsonl(a.input, a.out, a.model, a.tokenizer, a.max_len)
    else:
        cfg, _ = parse_config_args(FinetuneConfig, rest, "sodakit finetune run", __doc__ or "")
        result = run_finetune(cfg)
        if result.rank == 0:
            val = result.val or {}
            print(
                f"done: step {result.step}, response loss {val.get('sft_loss_before', float('nan')):.4f} -> "
                f"{val.get('sft_loss_after', float('nan')):.4f}, checkpoint {result.last_checkpoint}"
            )
        return 0
    meta = json.loads((Path(out) / METADATA).read_text())
    print(f"wrote {out}: {meta['num_examples']} examples, {meta['num_tokens']} tokens ({meta['response_tokens']} response)")
    return 0
