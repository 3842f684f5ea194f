"""`sodakit finetune`: supervised fine-tuning on prompt/response data, reusing the pre-training engine.

    sodakit finetune prepare-s2st --manifest train.tsv --model BASE --out data/s2st_sft   # docs/soda.md#speech-to-speech-translation format
    sodakit finetune prepare-jsonl --input pairs.jsonl --model BASE --out data/sft         # {"prompt", "response"}
    sodakit finetune run configs/finetune_s2st.yaml train.model.init_from=BASE sft.path=data/s2st_sft

An SFT dataset is a directory: `examples.parquet` (id, input_ids list<uint32>, response_start int32),
`tokenizer.json` and `metadata.json` (format, vocabulary layout + fingerprint, codec info, source
checksum, counts), written to a temp directory and renamed. `SFTSource` turns it into the engine's
batches: {"tokens" [B, L+1], "loss_mask" [B, L+1] (1 = scored target), optional "segment_ids"}, one
example per row right-padded with EOS (or several per row with `pack`, attention kept within each).
loss="response" scores only tokens from response_start on (the prompt and the padding contribute
nothing); loss="full" scores every real token.

Rows come from one global stream (epoch e = a permutation seeded by (seed, e)); each `next_batch(n)` call
of rank r takes rows [cursor + r*n, cursor + (r+1)*n) and advances the cursor by n * world_size, so the
global batch of a step is the same for any number of ranks, and the cursor is the whole resume state.

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
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sodakit.config import ConfigError, atomic_write_text, check_ranges, parse_config_args
from sodakit.fileio import sha256_file
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.vocab import Vocab
from sodakit.train.config import DataConfig, OptimConfig, ScheduleConfig, TrainConfig, validate_train_config

SFT_FORMAT = "sodakit-sft"
SFT_VERSION = 1
EXAMPLES = "examples.parquet"
METADATA = "metadata.json"
TOKENIZER = "tokenizer.json"
SUMMARY = "finetune_summary.json"
LOSS_MODES = ("response", "full")


class SFTDataError(ValueError):
    """An SFT dataset or input file that is missing, malformed or does not fit the model."""


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
# Dataset on disk
# ---------------------------------------------------------------------------------------------------
@dataclass
class SFTExample:
    id: str
    input_ids: np.ndarray  # uint32 / int64, whole sequence (BOS ... EOS)
    response_start: int  # index of the first response token


def write_sft_dataset(
    out: str | os.PathLike,
    examples: Sequence[SFTExample],
    vocab: Vocab,
    tokenizer_file: str | os.PathLike | None,
    codec: dict | None = None,
    **info,
) -> Path:
    """Write examples + tokenizer + metadata into `out` atomically (temp directory, then rename)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new output directory")
    if not examples:
        raise SFTDataError("no examples to write")
    ids = [str(e.id) for e in examples]
    if len(set(ids)) != len(ids):
        raise SFTDataError("example ids must be unique")
    for e in examples:
        arr = np.asarray(e.input_ids, dtype=np.int64)
        vocab.check_ids(arr, f"example {e.id}")
        if not 0 < e.response_start < len(arr):
            raise SFTDataError(f"example {e.id}: response_start {e.response_start} outside (0, {len(arr)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        table = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "input_ids": pa.array([np.asarray(e.input_ids, dtype=np.uint32) for e in examples], pa.list_(pa.uint32())),
                "response_start": pa.array([int(e.response_start) for e in examples], pa.int32()),
            }
        )
        pq.write_table(table, tmp / EXAMPLES)
        if tokenizer_file is not None:
            shutil.copyfile(tokenizer_file, tmp / TOKENIZER)
        lengths = [len(e.input_ids) for e in examples]
        meta = {
            "format": SFT_FORMAT,
            "version": SFT_VERSION,
            "vocab": vocab.to_dict(),
            "codec": codec,
            "tokenizer": TOKENIZER if tokenizer_file is not None else None,
            "num_examples": len(examples),
            "num_tokens": int(sum(lengths)),
            "response_tokens": int(sum(len(e.input_ids) - e.response_start for e in examples)),
            "max_length": int(max(lengths)),
            "examples_sha256": sha256_file(tmp / EXAMPLES),
            **info,
        }
        (tmp / METADATA).write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class SFTDataset:
    path: Path
    metadata: dict
    vocab: Vocab
    ids: list[str]
    sequences: list[np.ndarray]
    response_starts: np.ndarray

    @classmethod
    def load(cls, path: str | os.PathLike, expected_vocab: Vocab | None = None) -> SFTDataset:
        path = Path(path)
        meta_path = path / METADATA
        if not meta_path.is_file() or not (path / EXAMPLES).is_file():
            raise SFTDataError(f"{path}: not an SFT dataset (needs {METADATA} and {EXAMPLES}; make one with `sodakit finetune prepare-*`)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise SFTDataError(f"{meta_path}: not JSON ({e})") from e
        if meta.get("format") != SFT_FORMAT:
            raise SFTDataError(f"{meta_path}: format {meta.get('format')!r}, expected {SFT_FORMAT!r}")
        if int(meta.get("version", 0)) > SFT_VERSION:
            raise SFTDataError(f"{meta_path}: version {meta['version']} is newer than this sodakit reads")
        vocab = Vocab.from_dict(meta["vocab"])
        if expected_vocab is not None and expected_vocab.fingerprint != vocab.fingerprint:
            raise SFTDataError(
                f"{path}: vocabulary layout {vocab.fingerprint} differs from the model's {expected_vocab.fingerprint}"
            )
        sha = sha256_file(path / EXAMPLES)
        if meta.get("examples_sha256") and meta["examples_sha256"] != sha:
            raise SFTDataError(f"{path / EXAMPLES}: checksum {sha[:12]} does not match metadata ({meta['examples_sha256'][:12]})")
        table = pq.read_table(path / EXAMPLES)
        for col in ("id", "input_ids", "response_start"):
            if col not in table.column_names:
                raise SFTDataError(f"{path / EXAMPLES}: missing column {col!r}")
        col = table.column("input_ids").combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = col.offsets.to_numpy()
        seqs = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        return cls(
            path=path,
            metadata=meta,
            vocab=vocab,
            ids=[str(x) for x in table.column("id").to_pylist()],
            sequences=seqs,
            response_starts=table.column("response_start").to_numpy().astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def fingerprint(self) -> str:
        return str(self.metadata.get("examples_sha256", ""))[:16]


# ---------------------------------------------------------------------------------------------------
# Batches for the training engine
# ---------------------------------------------------------------------------------------------------
def _rank_world() -> tuple[int, int]:
    """This process's data-parallel rank (torchrun's environment, before the engine joins the group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class SFTSource:
    """The engine's BatchSource over an SFT dataset (see the module docstring for the row stream)."""

    def __init__(
        self,
        dataset: SFTDataset,
        seq_len: int,
        loss: str = "response",
        pack: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if loss not in LOSS_MODES:
            raise ConfigError(f"sft.loss must be one of {LOSS_MODES}, got {loss!r}")
        self.dataset = dataset
        self.vocab = dataset.vocab
        self.seq_len = int(seq_len)
        self.loss = loss
        self.pack = bool(pack)
        self.seed = int(seed)
        r, w = _rank_world()
        self.rank = r if rank is None else int(rank)
        self.world_size = w if world_size is None else int(world_size)
        self.cursor = 0
        self.codec = dataset.metadata.get("codec")
        tok = dataset.path / TOKENIZER
        self.tokenizer = str(tok) if tok.is_file() else None
        too_long = [(dataset.ids[i], len(s)) for i, s in enumerate(dataset.sequences) if len(s) > self.seq_len + 1]
        if too_long:
            raise SFTDataError(
                f"{dataset.path}: {len(too_long)} example(s) longer than seq_len + 1 = {self.seq_len + 1} tokens "
                f"(e.g. {too_long[0][0]}: {too_long[0][1]}); raise train.data.seq_len or prepare with --max-len"
            )
        self._epochs: dict[int, list[list[int]]] = {}
        # Packing makes the row count of an epoch depend on its permutation: keep each epoch's length.
        self._epoch_lengths: list[int] = [len(self._epoch_rows(0))]
        self.rows_per_epoch = self._epoch_lengths[0]

    # ---- the row stream ----------------------------------------------------------------------------
    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        """Rows of one epoch: lists of example indices (one each, or packed in permutation order)."""
        if epoch not in self._epochs:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset)).tolist()
            if not self.pack:
                rows = [[i] for i in order]
            else:
                rows, cur, used = [], [], 0
                for i in order:
                    n = len(self.dataset.sequences[i])
                    if cur and used + n > self.seq_len + 1:
                        rows.append(cur)
                        cur, used = [], 0
                    cur.append(i)
                    used += n
                if cur:
                    rows.append(cur)
            self._epochs = {epoch: rows}  # keep only the current epoch in memory
        return self._epochs[epoch]

    def row(self, index: int) -> list[int]:
        """Example indices of global row `index`."""
        epoch, pos = 0, index
        while True:
            if epoch == len(self._epoch_lengths):
                self._epoch_lengths.append(len(self._epoch_rows(epoch)))
            if pos < self._epoch_lengths[epoch]:
                return self._epoch_rows(epoch)[pos]
            pos -= self._epoch_lengths[epoch]
            epoch += 1

    def build_row(self, examples: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """tokens, loss mask and segment ids [seq_len + 1] of one row, and its number of real (not padding)
        input positions."""
        n = self.seq_len + 1
        tokens = np.full(n, self.vocab.eos_id, dtype=np.int64)
        mask = np.zeros(n, dtype=np.float32)
        seg = np.full(n, len(examples), dtype=np.int64)  # padding is its own segment
        pos = 0
        for j, i in enumerate(examples):
            s = self.dataset.sequences[i]
            tokens[pos : pos + len(s)] = s
            seg[pos : pos + len(s)] = j
            first = int(self.dataset.response_starts[i]) if self.loss == "response" else 1
            mask[pos + first : pos + len(s)] = 1.0
            pos += len(s)
        return tokens, mask, seg, max(min(pos, n) - 1, 0)

    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        start = self.cursor + self.rank * batch_size
        rows = [self.build_row(self.row(start + j)) for j in range(batch_size)]
        self.cursor += batch_size * self.world_size
        batch = {
            "tokens": torch.from_numpy(np.stack([r[0] for r in rows])),
            "loss_mask": torch.from_numpy(np.stack([r[1] for r in rows])),
            # Padding is computed but is not work done: tokens/s counts these (see the trainer).
            "real_tokens": torch.tensor(sum(r[3] for r in rows)),
        }
        if self.pack:
            batch["segment_ids"] = torch.from_numpy(np.stack([r[2] for r in rows]))
        return batch

    def state_dict(self) -> dict:
        return {"cursor": self.cursor, "seed": self.seed, "pack": self.pack, "loss": self.loss,
                "seq_len": self.seq_len, "dataset": self.dataset.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "pack", "seq_len", "dataset"):
            if key in state and state[key] != mine[key]:
                raise SFTDataError(f"cannot resume: the checkpoint's SFT source has {key}={state[key]!r}, this run {mine[key]!r}")
        self.cursor = int(state["cursor"])

    def sequential_batches(self, batch_size: int, max_batches: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Every example once, in file order, one per row (for held-out losses)."""
        order = list(range(len(self.dataset)))
        for b, s in enumerate(range(0, len(order), batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            rows = [self.build_row([i]) for i in order[s : s + batch_size]]
            yield {
                "tokens": torch.from_numpy(np.stack([r[0] for r in rows])),
                "loss_mask": torch.from_numpy(np.stack([r[1] for r in rows])),
            }


@torch.no_grad()
def response_loss(model, source: SFTSource, batch_size: int = 8, max_batches: int | None = None) -> dict[str, float]:
    """Mean NLL over the scored tokens (the response, or all real tokens with loss="full")."""
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
    model.train(was_training)
    return {"loss": ce / max(n, 1.0), "tokens": n}


# ---------------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------------
def _base_tokenizer(model: str | None, tokenizer: str | None) -> tuple[SodaTokenizer, Path, dict | None, Vocab | None]:
    """Tokenizer (file), codec record and vocabulary of the model to fine-tune."""
    from sodakit.generate.tasks import load_soda_tokenizer

    codec, vocab, tok_file = None, None, None
    if model is not None:
        from sodakit.model.load import read_pretrained

        _, info = read_pretrained(model)
        codec, vocab = info.codec, info.vocab
        tok_file = info.tokenizer_path
    if tokenizer is not None:
        tok_file = Path(tokenizer)
        if tok_file.is_dir():
            tok_file = tok_file / TOKENIZER
    if tok_file is None:
        raise SFTDataError("no tokenizer: the model has none; pass --tokenizer")
    tok = load_soda_tokenizer(tok_file, vocab)
    if vocab is not None and tok.vocab.fingerprint != vocab.fingerprint:
        raise SFTDataError(f"tokenizer {tok_file} layout {tok.vocab.fingerprint} differs from the model's {vocab.fingerprint}")
    return tok, Path(tok_file), codec, vocab


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
    tok, tok_file, codec, _ = _base_tokenizer(model, tokenizer)
    v = tok.vocab
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
        out, examples, v, tok_file, codec, recipe="jsonl", source=str(path.resolve()), source_sha256=sha256_file(path),
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
    """docs/soda.md#speech-to-speech-translation sequences from a CVSS-style manifest (see sodakit.generate.s2st), audio encoded with
    the model's codec. Sequences longer than max_len (default: 2048-token windows + 1) are skipped and counted."""
    from sodakit.audio.codec import load_codec
    from sodakit.audio.io import load_audio
    from sodakit.generate.s2st import REQUIRED_TRAIN, read_manifest
    from sodakit.generate.tasks import check_codec
    from sodakit.tokens.templates import s2st_sequence

    tok, tok_file, codec_record, _ = _base_tokenizer(model, tokenizer)
    v = tok.vocab
    items = read_manifest(manifest, require=REQUIRED_TRAIN)
    spec = codec or (codec_record or {}).get("source")
    if spec is None:
        raise SFTDataError("no codec: the model records none; pass --codec")
    codec_obj = load_codec(spec, num_codebooks=v.num_codebooks)
    notes = check_codec(codec_obj, v, codec_record, allow_codec_mismatch)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    sr = codec_obj.sample_rate
    waves = []
    for it in items:
        waves += [load_audio(it.source_audio, sr), load_audio(it.target_audio, sr)]
    codes = codec_obj.encode_audio(waves, sr, batch_seconds=batch_seconds)
    examples, skipped = [], []
    for i, it in enumerate(items):
        src, tgt = np.asarray(codes[2 * i])[: v.num_codebooks], np.asarray(codes[2 * i + 1])[: v.num_codebooks]
        ids, start = s2st_sequence(tok, src, it.source_lang, it.source_text or "", it.target_text or "", tgt, it.target_lang, response_from)  # type: ignore[arg-type]
        if max_len is not None and len(ids) > max_len:
            skipped.append(it.id)
            continue
        examples.append(SFTExample(it.id, ids.astype(np.int64), start))
    if not examples:
        raise SFTDataError(f"{manifest}: every pair is longer than max_len={max_len} tokens")
    if skipped:
        print(f"note: skipped {len(skipped)} pair(s) longer than {max_len} tokens (e.g. {skipped[:3]})", file=sys.stderr)
    return write_sft_dataset(
        out, examples, v, tok_file, dataclasses.asdict(codec_obj.info()), recipe="s2st", response_from=response_from,
        source=str(Path(manifest).resolve()), source_sha256=sha256_file(Path(manifest)), skipped_too_long=skipped,
        max_len=max_len, codec_notes=notes,
    )


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------
def _eval_model(path: str | os.PathLike, source: SFTSource, cfg: FinetuneConfig, device: str) -> dict[str, float]:
    from sodakit.model.load import load_pretrained

    model, _ = load_pretrained(path, device=device)
    return response_loss(model, source, cfg.train.micro_batch, cfg.sft.eval_batches)


def run_finetune(cfg: FinetuneConfig):
    """Fine-tune `train.model.init_from` on `sft.path`; returns the engine's TrainResult."""
    from sodakit.model.load import read_pretrained
    from sodakit.train.trainer import train

    t = cfg.train
    validate_train_config(t, prefix="train.")
    check_ranges(cfg.sft, positive=("epochs", "eval_batches"), prefix="sft.")
    if not t.model.init_from:
        raise ConfigError("train.model.init_from is required: the checkpoint (ours or a Hugging Face Qwen3 directory) to fine-tune")
    if not cfg.sft.path:
        raise ConfigError("sft.path is required: an SFT dataset from `sodakit finetune prepare-s2st|prepare-jsonl`")
    if t.data.sources or t.data.val_path:
        raise ConfigError("finetune reads sft.path / sft.val_path; leave train.data.sources and train.data.val_path empty")
    _, info = read_pretrained(t.model.init_from)
    data = SFTDataset.load(cfg.sft.path, expected_vocab=info.vocab)
    source = SFTSource(data, t.data.seq_len, cfg.sft.loss, cfg.sft.pack, seed=t.seed)
    if cfg.sft.epochs is not None:
        t = dataclasses.replace(t, steps=max(1, math.ceil(cfg.sft.epochs * source.rows_per_epoch / t.global_batch)))
    if source.codec is None and info.codec is not None:
        source.codec = info.codec  # text-only SFT data: keep the model's codec record in the checkpoints
    rank, _ = _rank_world()
    eval_data = SFTDataset.load(cfg.sft.val_path, expected_vocab=data.vocab) if cfg.sft.val_path else data
    eval_src = SFTSource(eval_data, t.data.seq_len, cfg.sft.loss, pack=False, rank=0, world_size=1)
    device = "cuda" if (t.device in ("auto", "cuda") and torch.cuda.is_available()) else "cpu"
    before = _eval_model(t.model.init_from, eval_src, cfg, device) if (rank == 0 and cfg.sft.eval_before) else None
    result = train(t, source=source)
    if rank == 0:
        after = _eval_model(result.last_checkpoint, eval_src, cfg, device) if result.last_checkpoint else None
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
