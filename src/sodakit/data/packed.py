"""Packed token data: documents concatenated into raw uint32 shards that `np.memmap` reads directly.

A packed dataset is a directory:

    metadata.json            format, vocab layout + fingerprint, tokenizer hash, codec, counts, shards, sources
    tokens-00000.bin         little-endian uint32 token ids, documents back to back
    tokens-00000.docs.npy    int64 start offset of every document in that shard

Every document starts with BOS and ends with EOS. A shard only appears under its final name once it is
complete (temp file + rename), and `metadata.json` is written last, so a directory with metadata is a
complete dataset. Readers check every shard against the metadata (size always, sha256 on request), and
the loaders check that every token they serve is inside the vocabulary (`PackedDataset.check_ids`), so a
corrupt shard fails at the read that meets it, not later inside the embedding or as a device assert.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sodakit.fileio import atomic_write_text, sha256_file, writing
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
    """Writes one shard: tokens stream to a temp file; `finish` fsyncs and renames both files."""

    def __init__(self, directory: Path, index: int):
        self.directory = Path(directory)
        self.name = f"tokens-{index:05d}.bin"
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".tmp", dir=self.directory)
        self.file = os.fdopen(fd, "wb")
        self.sha = hashlib.sha256()
        self.num_tokens = 0
        self.doc_offsets: list[int] = []

    def add(self, doc: np.ndarray) -> None:
        data = np.ascontiguousarray(doc, dtype=TOKEN_DTYPE).tobytes()
        self.doc_offsets.append(self.num_tokens)
        with writing(self.directory / self.name):
            self.file.write(data)
        self.sha.update(data)
        self.num_tokens += len(doc)

    def finish(self) -> dict:
        with writing(self.directory / self.name):
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        docs_name = self.name.replace(".bin", ".docs.npy")
        fd, docs_tmp = tempfile.mkstemp(prefix=f".{docs_name}.", suffix=".tmp", dir=self.directory)
        with writing(self.directory / docs_name), os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(self.doc_offsets, dtype=np.int64))
            f.flush()
            os.fsync(f.fileno())
        os.replace(docs_tmp, self.directory / docs_name)
        os.replace(self.tmp, self.directory / self.name)
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


def write_metadata(directory: Path, metadata: dict) -> None:
    atomic_write_text(Path(directory) / METADATA_NAME, json.dumps(metadata, indent=2))


def read_metadata(directory: Path) -> dict:
    directory = Path(directory)
    path = directory / METADATA_NAME
    if not directory.is_dir():
        raise PackedDataError(f"{directory}: packed dataset directory does not exist")
    if not path.is_file():
        raise PackedDataError(f"{directory}: no {METADATA_NAME} (not a packed dataset, or `sodakit pack` did not finish)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PackedDataError(f"{path}: not valid JSON ({e})") from e
    if meta.get("format") != PACKED_FORMAT:
        raise PackedDataError(f"{path}: format {meta.get('format')!r}, expected {PACKED_FORMAT!r}")
    for key in ("vocab", "shards", "num_tokens", "num_documents"):
        if key not in meta:
            raise PackedDataError(f"{path}: missing field {key!r}")
    return meta


@dataclass
class _Shard:
    path: Path
    tokens: np.memmap
    start: int  # global offset of its first token


class PackedDataset:
    """Read-only view of a packed dataset as one token stream (shards concatenated in order)."""

    def __init__(self, directory: str | Path, expected_vocab: Vocab | None = None, verify_checksums: bool = False):
        self.directory = Path(directory)
        self.metadata = read_metadata(self.directory)
        try:
            self.vocab = Vocab.from_dict(self.metadata["vocab"])
        except (TypeError, ValueError) as e:
            raise PackedDataError(f"{self.directory / METADATA_NAME}: invalid vocab record ({e})") from e
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
            path = self.directory / info["file"]
            if not path.is_file():
                raise PackedDataError(f"{path}: shard listed in {METADATA_NAME} is missing")
            size = path.stat().st_size
            if size != info["num_tokens"] * TOKEN_DTYPE.itemsize:
                raise PackedDataError(
                    f"{path}: {size} bytes but {METADATA_NAME} says {info['num_tokens']} tokens "
                    f"({info['num_tokens'] * TOKEN_DTYPE.itemsize} bytes): truncated or from another pack run"
                )
            if verify_checksums and sha256_file(path) != info["sha256"]:
                raise PackedDataError(f"{path}: sha256 differs from {METADATA_NAME}: corrupt shard")
            tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r") if size else np.zeros(0, TOKEN_DTYPE)
            self.shards.append(_Shard(path, tokens, start))  # type: ignore[arg-type]
            start += info["num_tokens"]
        self.num_tokens = start
        if self.num_tokens != self.metadata["num_tokens"]:
            raise PackedDataError(f"{self.directory}: shard token counts do not add up to num_tokens")
        if self.num_tokens == 0:
            raise PackedDataError(f"{self.directory}: empty dataset (0 tokens)")
        self._starts = np.array([s.start for s in self.shards], dtype=np.int64)

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
            n = min(length - done, len(shard.tokens) - lo)
            out[done : done + n] = shard.tokens[lo : lo + n]
            done += n
            i += 1
        return out

    def locate(self, offset: int) -> tuple[Path, int]:
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
        return np.load(self.directory / info["docs_file"], allow_pickle=False)

