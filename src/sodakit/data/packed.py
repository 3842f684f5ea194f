"""Packed token data: documents concatenated into raw uint32 shards that `np.memmap` reads directly.

A packed dataset is a directory:

    metadata.json            format, vocab layout + fingerprint, tokenizer hash, codec, counts, shards, sources
    tokens-00000.bin         little-endian uint32 token ids, documents back to back
    tokens-00000.docs.npy    int64 start offset of every document in that shard

Every document starts with BOS and ends with EOS. A shard only appears under its final name once it is
complete (temp file + rename, or one upload to an object store), and `metadata.json` is written last, so
a directory with metadata is a complete dataset.

The directory may be a URL (`s3://bucket/packed/speech`, see sodakit.storage). Reading one, each shard
is copied on first use into a content-addressed local cache (`<cache>/objects/<sha256>.bin`, checked
against the sha256 in the metadata while it downloads) and memory-mapped from there, so training reads
remote data at local speed after the first touch and never copies a corpus by hand; with `cache=False`
every read is a ranged GET instead (no local disk, much slower: for inspection, not training). Readers check every shard against the metadata (size always, sha256 on request), and
the loaders check that every token they serve is inside the vocabulary (`PackedDataset.check_ids`), so a
corrupt shard fails at the read that meets it, not later inside the embedding or as a device assert.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from sodakit import storage
from sodakit.fileio import sha256_file, temp_file, writing
from sodakit.tokens.vocab import Vocab

PACKED_FORMAT = "sodakit.packed/1"
METADATA_NAME = "metadata.json"
TOKEN_DTYPE = np.dtype("<u4")


class PackedDataError(ValueError):
    """A packed dataset that is missing, corrupt, or does not match what the caller expects."""


def token_counts(ids: np.ndarray, vocab: Vocab) -> dict[str, int]:
    """Counts by token type: text (BPE, no BOS/EOS), bos_eos, marker, audio, and semantic (audio subset)."""
    ids = ids.astype(np.int64, copy=False)
    bos_eos = int(np.count_nonzero((ids == vocab.bos_id) | (ids == vocab.eos_id)))
    return {
        "text": int(np.count_nonzero(vocab.is_text(ids))) - bos_eos,
        "bos_eos": bos_eos,
        "marker": int(np.count_nonzero(vocab.is_marker(ids))),
        "audio": int(np.count_nonzero(vocab.is_audio(ids))),
        "semantic": int(np.count_nonzero(vocab.is_semantic(ids))),
    }


class ShardWriter:
    """Writes one shard: tokens stream to a temp file; `finish` fsyncs and renames both files (a remote
    `directory`: the temp files sit in the local staging cache and are uploaded, the token file last)."""

    def __init__(self, directory: str | os.PathLike, index: int):
        self.directory = directory
        self.remote = storage.is_remote(directory)
        self.stage = storage.cache_dir("staging") if self.remote else storage.local_path(directory)
        self.name = f"tokens-{index:05d}.bin"
        fd, self.tmp = temp_file(self.stage, prefix=f".{self.name}.", suffix=".tmp")
        self.file = os.fdopen(fd, "wb")
        self.sha = hashlib.sha256()
        self.num_tokens = 0
        self.doc_offsets: list[int] = []

    def add(self, doc: np.ndarray) -> None:
        data = np.ascontiguousarray(doc, dtype=TOKEN_DTYPE).tobytes()
        self.doc_offsets.append(self.num_tokens)
        with writing(storage.join(self.directory, self.name)):
            self.file.write(data)
        self.sha.update(data)
        self.num_tokens += len(doc)

    def finish(self) -> dict:
        with writing(storage.join(self.directory, self.name)):
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        docs_name = self.name.replace(".bin", ".docs.npy")
        fd, docs_tmp = temp_file(self.stage, prefix=f".{docs_name}.", suffix=".tmp")
        with writing(storage.join(self.directory, docs_name)), os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(self.doc_offsets, dtype=np.int64))
            f.flush()
            os.fsync(f.fileno())
        if self.remote:
            try:
                storage.put_file(docs_tmp, storage.join(self.directory, docs_name))
                storage.put_file(self.tmp, storage.join(self.directory, self.name))
            finally:
                Path(docs_tmp).unlink(missing_ok=True)
                Path(self.tmp).unlink(missing_ok=True)
        else:
            os.replace(docs_tmp, self.stage / docs_name)
            os.replace(self.tmp, self.stage / self.name)
        return {
            "file": self.name,
            "docs_file": docs_name,
            "num_tokens": self.num_tokens,
            "num_docs": len(self.doc_offsets),
            "sha256": self.sha.hexdigest(),
        }

    def abort(self) -> None:
        try:
            self.file.close()
        except OSError:  # the write that failed (e.g. a full disk) fails again on close's flush
            pass
        Path(self.tmp).unlink(missing_ok=True)


def write_metadata(directory: str | os.PathLike, metadata: dict) -> None:
    storage.write_text(storage.join(directory, METADATA_NAME), json.dumps(metadata, indent=2))


def read_metadata(directory: str | os.PathLike) -> dict:
    path = storage.join(directory, METADATA_NAME)
    if not storage.isfile(path):
        if not storage.isdir(directory):
            raise PackedDataError(f"{directory}: packed dataset directory does not exist")
        raise PackedDataError(f"{directory}: no {METADATA_NAME} (not a packed dataset, or `sodakit pack` did not finish)")
    try:
        meta = json.loads(storage.read_text(path))
    except json.JSONDecodeError as e:
        raise PackedDataError(f"{path}: not valid JSON ({e})") from e
    if meta.get("format") != PACKED_FORMAT:
        raise PackedDataError(f"{path}: format {meta.get('format')!r}, expected {PACKED_FORMAT!r}")
    for key in ("vocab", "shards", "num_tokens", "num_documents"):
        if key not in meta:
            raise PackedDataError(f"{path}: missing field {key!r}")
    return meta


class _Shard:
    """One shard of the stream: memory-mapped from its local file (or cached copy), or read by ranges."""

    def __init__(self, location: str | Path, info: dict, start: int, cache: bool):
        self.location, self.info, self.start = location, info, start
        self.num_tokens = int(info["num_tokens"])
        self.remote, self.cache = storage.is_remote(location), cache
        self._tokens: np.ndarray | None = None

    @property
    def path(self) -> str | Path:
        return self.location

    def expected_bytes(self) -> int:
        return self.num_tokens * TOKEN_DTYPE.itemsize

    def check_size(self, size: int) -> None:
        if size != self.expected_bytes():
            raise PackedDataError(
                f"{self.location}: {size} bytes but {METADATA_NAME} says {self.num_tokens} tokens "
                f"({self.expected_bytes()} bytes): truncated or from another pack run"
            )

    @property
    def tokens(self) -> np.ndarray | None:
        """The shard's tokens, memory-mapped (a remote shard: its cached copy, fetched on first use);
        None for a remote shard read by ranges."""
        if self._tokens is None and not (self.remote and not self.cache):
            path = Path(self.location)
            if self.remote:
                try:
                    path = storage.cached_object(str(self.location), self.info["sha256"], ".bin")
                except storage.StorageError as e:
                    raise PackedDataError(f"{e}: corrupt shard") from e
            self.check_size(path.stat().st_size)
            self._tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r") if self.num_tokens else np.zeros(0, TOKEN_DTYPE)
        return self._tokens

    def read(self, lo: int, n: int, out: np.ndarray) -> None:
        tokens = self.tokens
        if tokens is not None:
            out[:n] = tokens[lo : lo + n]
            return
        data = storage.read_range(str(self.location), lo * TOKEN_DTYPE.itemsize, (lo + n) * TOKEN_DTYPE.itemsize)
        if len(data) != n * TOKEN_DTYPE.itemsize:
            raise PackedDataError(f"{self.location}: short read at token {lo}: truncated shard")
        out[:n] = np.frombuffer(data, dtype=TOKEN_DTYPE)


class PackedDataset:
    """Read-only view of a packed dataset as one token stream (shards concatenated in order).

    `directory` is a local path or a URL; a remote dataset's shards are cached locally on first use
    (`cache=True`) or read with ranged GETs (`cache=False`), see the module docstring."""

    def __init__(self, directory: str | Path, expected_vocab: Vocab | None = None, verify_checksums: bool = False,
                 cache: bool = True):
        self.remote = storage.is_remote(directory)
        self.directory: str | Path = str(directory).rstrip("/") if self.remote else storage.local_path(directory)
        self.metadata = read_metadata(self.directory)
        try:
            self.vocab = Vocab.from_dict(self.metadata["vocab"])
        except (TypeError, ValueError) as e:
            raise PackedDataError(f"{storage.join(self.directory, METADATA_NAME)}: invalid vocab record ({e})") from e
        recorded = self.metadata["vocab"].get("fingerprint")
        if recorded is not None and recorded != self.vocab.fingerprint:
            raise PackedDataError(f"{self.directory}: vocab fingerprint {recorded} does not match its own layout")
        if expected_vocab is not None and expected_vocab.fingerprint != self.vocab.fingerprint:
            raise PackedDataError(
                f"{self.directory}: vocab fingerprint {self.vocab.fingerprint} differs from the expected "
                f"{expected_vocab.fingerprint} (layout {self.vocab} vs {expected_vocab}); re-pack with the same "
                f"tokenizer and codec layout"
            )
        self.shards: list[_Shard] = []
        start = 0
        for info in self.metadata["shards"]:
            location = storage.join(self.directory, info["file"]) if self.remote else self.directory / info["file"]
            shard = _Shard(location, info, start, cache)
            if not self.remote:  # a local shard is checked now; a remote one when first fetched
                if not Path(location).is_file():
                    raise PackedDataError(f"{location}: shard listed in {METADATA_NAME} is missing")
                shard.check_size(Path(location).stat().st_size)
            if verify_checksums:
                self._verify(shard)
            if not self.remote:
                _ = shard.tokens
            self.shards.append(shard)
            start += shard.num_tokens
        self.num_tokens = start
        if self.num_tokens != self.metadata["num_tokens"]:
            raise PackedDataError(f"{self.directory}: shard token counts do not add up to num_tokens")
        if self.num_tokens == 0:
            raise PackedDataError(f"{self.directory}: empty dataset (0 tokens)")
        self._starts = np.array([s.start for s in self.shards], dtype=np.int64)

    def _verify(self, shard: _Shard) -> None:
        if shard.remote and shard.cache:
            _ = shard.tokens  # the copy is verified against the sha256 while it downloads
            return
        digest = storage.sha256(str(shard.location)) if shard.remote else sha256_file(shard.location)
        if digest != shard.info["sha256"]:
            raise PackedDataError(f"{shard.location}: sha256 differs from {METADATA_NAME}: corrupt shard")

    @property
    def fingerprint(self) -> str:
        """Identifies the data: the shard checksums in order."""
        blob = "".join(s["sha256"] for s in self.metadata["shards"]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def num_windows(self, seq_len: int) -> int:
        """Windows of seq_len + 1 tokens with stride seq_len (every token a target once)."""
        return max(0, (self.num_tokens - 1) // seq_len)

    def read(self, start: int, length: int, out: np.ndarray | None = None) -> np.ndarray:
        """Tokens [start, start + length) of the stream, across shard boundaries."""
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"read [{start}, {start + length}) outside {self.directory} ({self.num_tokens} tokens)")
        if out is None:
            out = np.empty(length, dtype=TOKEN_DTYPE)
        i = int(np.searchsorted(self._starts, start, side="right")) - 1
        done = 0
        while done < length:
            shard = self.shards[i]
            lo = start + done - shard.start
            n = min(length - done, shard.num_tokens - lo)
            shard.read(lo, n, out[done : done + n])
            done += n
            i += 1
        return out

    def locate(self, offset: int) -> tuple[str | Path, int]:
        """The shard file holding token `offset` of the stream, and the token's offset inside that file."""
        i = int(np.searchsorted(self._starts, offset, side="right")) - 1
        return self.shards[i].path, offset - self.shards[i].start

    def check_ids(self, tokens: np.ndarray, start: int) -> None:
        """Refuse tokens [start, start + len(tokens)) of the stream if one is outside the vocabulary.

        One max over the tokens; the culprit is searched for only when that fails."""
        tokens, size = np.asarray(tokens).reshape(-1), self.vocab.size
        if tokens.size == 0 or int(tokens.max()) < size:
            return
        pos = int(np.argmax(tokens >= size))
        path, offset = self.locate(start + pos)
        raise PackedDataError(
            f"{path}: token id {int(tokens[pos])} at token offset {offset} (byte {offset * TOKEN_DTYPE.itemsize}) is "
            f"outside the vocabulary of size {size}: corrupt shard; open the dataset with verify_checksums=True "
            f"(`sodakit inspect {self.directory} --verify`) to check every shard against {METADATA_NAME}"
        )

    def documents(self, shard_index: int) -> np.ndarray:
        info = self.metadata["shards"][shard_index]
        if not self.remote:
            return np.load(self.directory / info["docs_file"], allow_pickle=False)
        return np.load(io.BytesIO(storage.read_bytes(storage.join(self.directory, info["docs_file"]))),
                       allow_pickle=False)

