"""SFT datasets: prompt/response examples on disk, and the batches the training engine reads from them.

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
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from sodakit.config import ConfigError
from sodakit.fileio import atomic_directory, sha256_file
from sodakit.tokens.vocab import Vocab

SFT_FORMAT = "sodakit-sft"
SFT_VERSION = 1
EXAMPLES = "examples.parquet"
METADATA = "metadata.json"
TOKENIZER = "tokenizer.json"
LOSS_MODES = ("response", "full")


class SFTDataError(ValueError):
    """An SFT dataset or input file that is missing, malformed or does not fit the model."""


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
    with atomic_directory(out) as tmp:
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
def rank_world() -> tuple[int, int]:
    """This process's data-parallel rank (torchrun's environment, before the engine joins the group)."""
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
        r, w = rank_world()
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
