"""Mixture loader: fixed-length windows from weighted packed datasets, deterministic and resumable.

The stream is a pure function of (seed, sources, weights, seq_len) and the global sample index, so the
loader's state is one integer and a resumed run sees exactly the same windows.

- Sample g of the global stream belongs to block g // BLOCK. Each block holds each dataset exactly
  round(weight * BLOCK) times (largest remainders), in a seeded random order: proportions are exact
  per block and any sample's dataset and its index inside that dataset are computed without replay.
- Dataset d's j-th sample is window perm_{d, epoch}(j mod n_windows) in epoch j // n_windows, where perm
  is a keyed Feistel permutation: a fresh shuffle per epoch in O(1) memory, even for 10^8 windows.
- A window is seq_len + 1 tokens at offset window * seq_len (inputs [:-1], targets [1:]), so windows
  share one boundary token and every token is a target exactly once per epoch.
- Data parallelism: each call takes the next `batch_size * world_size` global samples and rank r keeps
  slice [r * batch_size, (r + 1) * batch_size): ranks see disjoint streams, and the global batch of a
  step does not depend on the world size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sodakit.data.packed import TOKEN_DTYPE, PackedDataError, PackedDataset
from sodakit.tokens.vocab import Vocab

BLOCK = 10_000  # exact mixture proportions at 1e-4 resolution; a block's plan costs ~0.1 ms


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a cheap, well-distributed 64-bit hash (vectorised)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def feistel_permute(index: np.ndarray, n: int, key: int, rounds: int = 4) -> np.ndarray:
    """A keyed pseudo-random permutation of [0, n), applied to `index` (cycle-walking Feistel network)."""
    index = np.asarray(index, dtype=np.uint64)
    if n <= 1:
        return np.zeros_like(index)
    half_bits = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half_bits) - 1)
    keys = _mix64(np.arange(1, rounds + 1, dtype=np.uint64) + np.uint64(key & 0xFFFFFFFFFFFFFFFF))
    out = index.copy()
    todo = np.ones(out.shape, dtype=bool)
    while todo.any():
        x = out[todo]
        left, right = x >> np.uint64(half_bits), x & mask
        for k in keys:
            left, right = right, left ^ (_mix64(right ^ k) & mask)
        x = (left << np.uint64(half_bits)) | right
        out[todo] = x
        todo[todo] = x >= np.uint64(n)  # walk again until we land inside [0, n)
    return out.astype(np.int64)


def _block_quota(weights: np.ndarray) -> np.ndarray:
    raw = weights / weights.sum() * BLOCK
    quota = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - quota), kind="stable")
    quota[order[: BLOCK - quota.sum()]] += 1
    return quota


class MixtureLoader:
    def __init__(
        self,
        sources: Sequence[tuple[str | Path, float]],
        seq_len: int = 4096,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        expected_vocab: Vocab | None = None,
        return_segment_ids: bool = False,
    ):
        if not sources:
            raise PackedDataError("MixtureLoader: no sources")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        for path, w in sources:
            if not (w > 0 and np.isfinite(w)):
                raise PackedDataError(f"MixtureLoader: weight of {path} must be a positive number, got {w}")
        self.datasets = [PackedDataset(p, expected_vocab=expected_vocab) for p, _ in sources]
        self.vocab = self.datasets[0].vocab
        for ds in self.datasets[1:]:
            if ds.vocab.fingerprint != self.vocab.fingerprint:
                raise PackedDataError(
                    f"MixtureLoader: {ds.directory} has vocab {ds.vocab.fingerprint}, "
                    f"{self.datasets[0].directory} has {self.vocab.fingerprint}; all sources must share one layout"
                )
        self.weights = np.array([float(w) for _, w in sources])
        self.seq_len, self.seed, self.rank, self.world_size = seq_len, seed, rank, world_size
        self.return_segment_ids = return_segment_ids
        self.n_windows = np.array([ds.num_windows(seq_len) for ds in self.datasets], dtype=np.int64)
        for ds, n in zip(self.datasets, self.n_windows):
            if n == 0:
                raise PackedDataError(f"{ds.directory}: {ds.num_tokens} tokens is less than one window of {seq_len + 1}")
        self.quota = _block_quota(self.weights)
        self.consumed = 0
        self._plan_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ---- the pure stream ---------------------------------------------------------------------------
    def _block_plan(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """For one block: dataset of each position, and each position's index among that dataset's samples."""
        if block not in self._plan_cache:
            owner = np.repeat(np.arange(len(self.datasets)), self.quota)
            owner = np.random.default_rng([self.seed, 0x5EED, block]).permutation(owner)
            rank_in_ds = np.empty(BLOCK, dtype=np.int64)
            for d in range(len(self.datasets)):
                sel = owner == d
                rank_in_ds[sel] = np.arange(int(sel.sum()))
            if len(self._plan_cache) > 4:
                self._plan_cache.clear()
            self._plan_cache[block] = (owner, rank_in_ds)
        return self._plan_cache[block]

    def locate(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global sample indices -> (dataset index, window index inside that dataset)."""
        samples = np.asarray(samples, dtype=np.int64)
        ds = np.empty_like(samples)
        win = np.empty_like(samples)
        blocks = samples // BLOCK
        for b in np.unique(blocks):
            sel = blocks == b
            owner, rank_in_ds = self._block_plan(int(b))
            pos = samples[sel] % BLOCK
            d = owner[pos]
            j = int(b) * self.quota[d] + rank_in_ds[pos]  # index among dataset d's samples
            ds[sel] = d
            epoch, k = np.divmod(j, self.n_windows[d])
            w = np.empty_like(k)
            for dd in np.unique(d):
                for e in np.unique(epoch[d == dd]):
                    m = (d == dd) & (epoch == e)
                    key = int(_mix64(np.array([self.seed * 1_000_003 + int(dd) * 7919 + int(e)], dtype=np.uint64))[0])
                    w[m] = feistel_permute(k[m], int(self.n_windows[dd]), key)
            win[sel] = w
        return ds, win

    def read_samples(self, samples: np.ndarray) -> np.ndarray:
        ds, win = self.locate(samples)
        out = np.empty((len(samples), self.seq_len + 1), dtype=TOKEN_DTYPE)
        reads = [(self.datasets[d], w * self.seq_len) for d, w in zip(ds.tolist(), win.tolist())]
        for i, (dataset, start) in enumerate(reads):
            dataset.read(start, self.seq_len + 1, out=out[i])
        check_windows(out, reads, self.vocab)
        return out

    # ---- the iterator API ---------------------------------------------------------------------------
    def next_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        """This rank's next `batch_size` windows: tokens [B, seq_len + 1] (int64), optional segment ids."""
        start = self.consumed + self.rank * batch_size
        tokens = self.read_samples(np.arange(start, start + batch_size))
        self.consumed += batch_size * self.world_size
        return self._to_batch(tokens)

    def _to_batch(self, tokens: np.ndarray) -> dict[str, torch.Tensor]:
        batch = {"tokens": torch.from_numpy(tokens.astype(np.int64))}
        if self.return_segment_ids:
            batch["segment_ids"] = torch.from_numpy(segment_ids(tokens, self.vocab.bos_id))
        return batch

    def state_dict(self) -> dict:
        return {
            "version": 1,
            "consumed": int(self.consumed),
            "seed": self.seed,
            "seq_len": self.seq_len,
            "weights": self.weights.tolist(),
            "datasets": [ds.fingerprint for ds in self.datasets],
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "seq_len", "weights", "datasets"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"loader state does not match this loader: {key} was {state.get(key)!r}, now {mine[key]!r}"
                )
        self.consumed = int(state["consumed"])


def check_windows(tokens: np.ndarray, reads: Sequence[tuple[PackedDataset, int]], vocab: Vocab) -> None:
    """Windows [B, L] read from (dataset, start) each: one max over the batch; a corrupt shard's id >= the
    vocabulary size then raises `PackedDataError` naming the shard file and offset."""
    if tokens.size and int(tokens.max()) >= vocab.size:
        for row, (dataset, start) in zip(tokens, reads):
            dataset.check_ids(row, start)


def segment_ids(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """Per-position document index inside each window (BOS starts a new document), int32."""
    return np.cumsum(tokens == bos_id, axis=-1, dtype=np.int32)


def sequential_batches(
    path: str | Path,
    seq_len: int,
    batch_size: int,
    max_batches: int | None = None,
    expected_vocab: Vocab | None = None,
    return_segment_ids: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Held-out evaluation: the dataset's windows in order (the last batch may be smaller)."""
    ds = PackedDataset(path, expected_vocab=expected_vocab)
    n = ds.num_windows(seq_len)
    if n == 0:
        raise PackedDataError(f"{path}: fewer than {seq_len + 1} tokens, no complete window")
    done = 0
    for start in range(0, n, batch_size):
        if max_batches is not None and done >= max_batches:
            return
        count = min(batch_size, n - start)
        out = np.empty((count, seq_len + 1), dtype=TOKEN_DTYPE)
        reads = [(ds, (start + i) * seq_len) for i in range(count)]
        for i, (_, offset) in enumerate(reads):
            ds.read(offset, seq_len + 1, out=out[i])
        check_windows(out, reads, ds.vocab)
        batch = {"tokens": torch.from_numpy(out.astype(np.int64))}
        if return_segment_ids:
            batch["segment_ids"] = torch.from_numpy(segment_ids(out, ds.vocab.bos_id))
        yield batch
        done += 1
