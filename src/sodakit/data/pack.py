"""`sodakit pack`: documents from SODA strings, text corpora or segment shards -> packed token shards.

Inputs (`kind`):
- `soda`: JSONL or Parquet whose `column` holds SODA interleaved strings, one document per row (the
  released SODA datasets' form). BOS is added unless the string starts with `<|begin_of_text|>`, EOS
  unless it ends with `<|end_of_text|>`.
- `text`: plain-text corpora, one document per non-empty line of a `.txt`, or the `column` of
  JSONL/Parquet rows: BOS id, the text, EOS id. Every character of the text is text: a marker or
  special-token string in it (`<|audio_start|>`, `<|end_of_text|>`) becomes ordinary BPE pieces, never
  that token. Text in the audio character range obeys `pua_policy`.
- `segments`: a `sodakit tokenize` output directory; each recording yields one document per `formats`
  entry (default text-first and audio-first, as SODA does).
- `auto`: a directory with a segment manifest is `segments`, `.txt` is `text`, anything else `soda`.

Resumable: after every finished shard a progress file records where the inputs stand; rerunning the same
command continues from there and produces the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sodakit import __version__
from sodakit.config import atomic_write_text, check_ranges, to_dict
from sodakit.data.packed import (
    METADATA_NAME,
    PACKED_FORMAT,
    ShardWriter,
    read_metadata,
    token_counts,
    write_metadata,
)
from sodakit.data.segments import MANIFEST_NAME, SegmentManifest, read_segment_shard, sha256_file
from sodakit.progress import Progress
from sodakit.tokens.documents import DEFAULT_FORMATS, recording_documents, text_document_ids
from sodakit.tokens.soda_tokenizer import SodaTokenizer
from sodakit.tokens.templates import DOC_FORMATS
from sodakit.tokens.vocab import BOS_TEXT, EOS_TEXT, Vocab

PROGRESS_NAME = ".pack-progress.json"
KINDS = ("auto", "soda", "text", "segments")


@dataclass
class PackConfig:
    inputs: list[str] = field(default_factory=list)
    output: str = ""
    kind: str = "auto"
    # Column (Parquet) or field (JSONL) holding the document string / text.
    column: str = "text"
    # tokenizer.json or a directory with one (Llama-3, released SODA, or `sodakit tokenizer train` output).
    tokenizer: str = ""
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    # Copy the audio layout (codebooks, codebook size, codec) from a packed dataset or segment directory,
    # so that e.g. a text-only corpus gets the same vocab fingerprint as the speech it is mixed with.
    vocab_from: str = ""
    # Audio layout when nothing else defines it (SODA: 8 Mimi codebooks of 2048).
    num_codebooks: int = 8
    codebook_size: int = 2048
    pua_policy: str = "error"
    # Transcript rule for segment inputs: "none", or "emilia" (the fixed Emilia release's whitespace rule).
    segment_text_fix: str = "none"
    # 2^28 tokens = 1 GiB per shard: few files, each still cheap to memory-map.
    shard_tokens: int = 1 << 28
    # Documents encoded per tokenizer call: amortises Python overhead without holding much in memory.
    chunk_documents: int = 512
    max_documents: int = 0  # 0 = all
    quiet: bool = False  # no progress output (not part of the job: a quiet rerun resumes a loud one)


class PackError(ValueError):
    pass


@dataclass
class _Source:
    path: Path
    kind: str


def _resolve_sources(cfg: PackConfig) -> list[_Source]:
    if not cfg.inputs:
        raise PackError("pack: no inputs (set inputs=[path, ...])")
    if cfg.kind not in KINDS:
        raise PackError(f"pack: kind must be one of {KINDS}, got {cfg.kind!r}")
    sources = []
    for raw in cfg.inputs:
        path = Path(raw)
        if not path.exists():
            raise PackError(f"pack: input {path} does not exist")
        kind = cfg.kind
        if kind == "auto":
            if path.is_dir() and (path / MANIFEST_NAME).is_file():
                kind = "segments"
            elif path.suffix == ".txt":
                kind = "text"
            else:
                kind = "soda"
        if kind == "segments" and not (path.is_dir() and (path / MANIFEST_NAME).is_file()):
            raise PackError(f"pack: {path} is not a segment directory (no {MANIFEST_NAME})")
        if kind != "segments":
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json", ".parquet", ".txt")) if path.is_dir() else [path]
            if not files:
                raise PackError(f"pack: {path} holds no .jsonl/.parquet/.txt files")
            sources.extend(_Source(f, kind) for f in files)
        else:
            sources.append(_Source(path, kind))
    return sources


def _layout(cfg: PackConfig, tokenizer: SodaTokenizer, sources: list[_Source]) -> tuple[SodaTokenizer, dict | None]:
    """The tokenizer with the right audio layout, and the codec record (if any) for the metadata."""
    codec = None
    layouts = []
    for s in sources:
        if s.kind == "segments":
            m = SegmentManifest.load(s.path)
            layouts.append((m.codec.num_codebooks, m.codec.codebook_size, tuple(m.codec.semantic_codebooks), s.path))
            codec = {k: v for k, v in m.codec.__dict__.items()}
    if cfg.vocab_from:
        ref = Path(cfg.vocab_from)
        if (ref / METADATA_NAME).is_file():
            meta = read_metadata(ref)
            v = Vocab.from_dict(meta["vocab"])
            layouts.append((v.num_codebooks, v.codebook_size, v.semantic_codebooks, ref))
            codec = codec or meta.get("codec")
        elif (ref / MANIFEST_NAME).is_file():
            m = SegmentManifest.load(ref)
            layouts.append((m.codec.num_codebooks, m.codec.codebook_size, tuple(m.codec.semantic_codebooks), ref))
            codec = codec or {k: v for k, v in m.codec.__dict__.items()}
        else:
            raise PackError(f"pack: vocab_from={ref} is neither a packed dataset nor a segment directory")
    if not layouts:
        if tokenizer.vocab.num_codebooks != cfg.num_codebooks or tokenizer.vocab.codebook_size != cfg.codebook_size:
            if tokenizer.text.tokenizer.token_to_id("<|text_start|>") is None:
                return tokenizer.with_audio_layout(cfg.num_codebooks, cfg.codebook_size), None
        return tokenizer, None
    first = layouts[0]
    for other in layouts[1:]:
        if other[:3] != first[:3]:
            raise PackError(f"pack: audio layouts differ: {first[3]} has {first[:3]}, {other[3]} has {other[:3]}")
    return tokenizer.with_audio_layout(first[0], first[1], first[2]), codec


def _source_checksum(s: _Source) -> str:
    if s.kind == "segments":
        return sha256_file(s.path / MANIFEST_NAME)
    return sha256_file(s.path)


def _iter_rows(path: Path, column: str) -> Iterator[str]:
    """Strings of one file: a .txt's non-empty lines, a JSONL field, or a Parquet column."""
    if path.suffix == ".txt":
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.strip():
                    yield line
    elif path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PackError(f"{path}:{n}: not valid JSON ({e})") from e
                if not isinstance(row, dict) or column not in row:
                    raise PackError(f"{path}:{n}: no field {column!r} (set column=...)")
                if not isinstance(row[column], str):
                    raise PackError(f"{path}:{n}: field {column!r} is {type(row[column]).__name__}, expected a string")
                yield row[column]
    elif path.suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            raise PackError(f"{path}: cannot read Parquet ({e})") from e
        names = pf.schema_arrow.names
        if column not in names:
            raise PackError(f"{path}: no column {column!r}; columns are {names} (set column=...)")
        for batch in pf.iter_batches(columns=[column], batch_size=1024):
            for value in batch.column(0).to_pylist():
                if value is None:
                    raise PackError(f"{path}: null in column {column!r}")
                yield value
    else:
        raise PackError(f"{path}: unsupported file type (expected .txt, .jsonl or .parquet)")


def _iter_items(s: _Source, cfg: PackConfig) -> Iterator[object]:
    """Document-producing items of one source, in a fixed order: strings, or a recording's segments."""
    if s.kind != "segments":
        yield from _iter_rows(s.path, cfg.column)
        return
    manifest = SegmentManifest.load(s.path)
    # A recording is emitted once the last shard holding any of its segments has been read; only
    # recordings spread over several shards are buffered.
    last_shard: dict[str, int] = {}
    for i, shard in enumerate(manifest.shards):
        path = s.path / shard.file
        try:
            rec_ids = pq.read_table(path, columns=["recording_id"]).column(0).to_pylist()
        except Exception as e:
            raise PackError(f"{path}: cannot read segment shard ({e})") from e
        for rec in rec_ids:
            last_shard[rec] = i
    pending: dict[str, list] = {}
    for i, shard in enumerate(manifest.shards):
        for seg in read_segment_shard(s.path / shard.file, cfg.segment_text_fix):
            pending.setdefault(seg.recording_id, []).append(seg)
        for rec in [r for r in pending if last_shard[r] == i]:
            yield sorted(pending.pop(rec), key=lambda g: (g.start, g.end, g.id))


def _encode_chunk(items: list, kind: str, cfg: PackConfig, tok: SodaTokenizer, where: str) -> list[np.ndarray]:
    v = tok.vocab
    if kind == "soda":
        docs = []
        for s, ids in zip(items, tok.encode_batch(items, add_bos=False)):
            if not s.startswith(BOS_TEXT):
                ids = np.concatenate([[v.bos_id], ids]).astype(np.uint32)
            if not s.endswith(EOS_TEXT):
                ids = np.concatenate([ids, [v.eos_id]]).astype(np.uint32)
            docs.append(ids)
        return docs
    if kind == "text":
        # Web text is text: marker and special-token strings in it stay ordinary pieces (see docs).
        encoded = tok.encode_plain_texts(items, where=where)
        return [text_document_ids(t, tok, e) for t, e in zip(items, encoded)]
    out = []
    for segs in items:
        out.extend(recording_documents(segs, cfg.formats, tok))
    return out


def _check_document_ids(doc: np.ndarray, vocab: Vocab, cfg: PackConfig, where: str) -> None:
    """No id outside the layout may reach a shard (e.g. a tokenizer whose added audio tokens exceed it)."""
    try:
        vocab.check_ids(doc, where)
    except ValueError as e:
        raise PackError(
            f"pack: {e}; the tokenizer {cfg.tokenizer} yields ids that the audio layout "
            f"({vocab.num_codebooks} codebooks of {vocab.codebook_size}, {vocab.size} ids) does not hold: pack with "
            f"the layout the tokenizer was built for (check vocab_from and the codec of the inputs)"
        ) from e


def _chunked(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def pack(cfg: PackConfig, progress: bool = True) -> dict:
    """Run the pack job; returns the dataset metadata. Safe to rerun after an interruption.

    progress=False prints nothing (library use); cfg.quiet keeps the messages and drops the progress.
    """
    check_ranges(cfg, positive=("num_codebooks", "codebook_size", "shard_tokens", "chunk_documents"),
                 non_negative=("max_documents",))
    if not cfg.output:
        raise PackError("pack: output=DIR is required")
    if not cfg.tokenizer:
        raise PackError("pack: tokenizer=PATH is required (a tokenizer.json or a directory holding one)")
    bad = [f for f in cfg.formats if f not in DOC_FORMATS]
    if bad or not cfg.formats:
        raise PackError(f"pack: formats {cfg.formats} invalid; choose from {DOC_FORMATS}")
    out = Path(cfg.output)
    sources = _resolve_sources(cfg)
    tok, codec = _layout(cfg, SodaTokenizer.from_pretrained(cfg.tokenizer, pua_policy=cfg.pua_policy), sources)
    vocab = tok.vocab
    checksums = [_source_checksum(s) for s in sources]
    settings = {k: v for k, v in to_dict(cfg).items() if k != "quiet"}
    job_hash = hashlib.sha256(
        json.dumps([settings, checksums, tok.text.sha256, vocab.fingerprint], sort_keys=True).encode()
    ).hexdigest()[:16]

    if (out / METADATA_NAME).is_file():
        meta = read_metadata(out)
        if meta.get("job_hash") == job_hash:
            if progress:
                print(f"pack: {out} is already complete ({meta['num_documents']} documents, {meta['num_tokens']} tokens)")
            return meta
        raise PackError(f"pack: {out} already holds a different packed dataset; choose another output or delete it")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".tokens-*.tmp"):
        stale.unlink()

    state = {"job_hash": job_hash, "shards": [], "source": 0, "item": 0, "num_documents": 0,
             "counts": {k: 0 for k in ("text", "bos_eos", "marker", "audio", "semantic")}}
    progress_path = out / PROGRESS_NAME
    if progress_path.is_file():
        saved = json.loads(progress_path.read_text())
        if saved.get("job_hash") == job_hash:
            state = saved
            if progress:
                print(f"pack: resuming at input {state['source']} item {state['item']} ({len(state['shards'])} shards done)")
        else:
            for info in saved.get("shards", []):  # leftovers of a different job
                (out / info["file"]).unlink(missing_ok=True)
                (out / info["docs_file"]).unlink(missing_ok=True)

    t0 = time.time()
    bar = Progress("pack", unit="doc", initial=state["num_documents"], quiet=cfg.quiet or not progress)
    writer: ShardWriter | None = None
    pending_counts = {k: 0 for k in state["counts"]}
    pending_docs = 0

    def finish_shard(next_pos: tuple[int, int]) -> None:
        nonlocal writer, pending_counts, pending_docs
        assert writer is not None
        state["shards"].append(writer.finish())
        for k in pending_counts:
            state["counts"][k] += pending_counts[k]
        state["num_documents"] += pending_docs
        state["source"], state["item"] = next_pos
        atomic_write_text(progress_path, json.dumps(state))
        writer, pending_counts, pending_docs = None, {k: 0 for k in state["counts"]}, 0

    total_docs = state["num_documents"]
    stop = False
    try:
        for si in range(state["source"], len(sources)):
            src = sources[si]
            skip = state["item"] if si == state["source"] else 0
            per_item = len(cfg.formats) if src.kind == "segments" else 1
            numbered = ((i, item) for i, item in enumerate(_iter_items(src, cfg)) if i >= skip)
            for chunk in _chunked(numbered, cfg.chunk_documents):
                docs = _encode_chunk([item for _, item in chunk], src.kind, cfg, tok, where=str(src.path))
                for n, (index, _) in enumerate(chunk):
                    for doc in docs[n * per_item : (n + 1) * per_item]:
                        _check_document_ids(doc, vocab, cfg, f"{src.path} item {index}")
                        if writer is None:
                            writer = ShardWriter(out, len(state["shards"]))
                        writer.add(doc)
                        for k, c in token_counts(doc, vocab).items():
                            pending_counts[k] += c
                        pending_docs += 1
                        total_docs += 1
                        bar.update(1, shards=len(state["shards"]))
                    if writer is not None and writer.num_tokens >= cfg.shard_tokens:
                        finish_shard((si, index + 1))
                    if cfg.max_documents and total_docs >= cfg.max_documents:
                        stop = True
                        break
                if stop:
                    break
            if stop:
                break
        if writer is not None:
            finish_shard((len(sources), 0))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    if state["num_documents"] == 0:
        raise PackError(f"pack: the inputs {cfg.inputs} produced no documents (empty dataset)")

    meta = {
        "format": PACKED_FORMAT,
        "created_by": f"sodakit {__version__}",
        "job_hash": job_hash,
        "vocab": vocab.to_dict(),
        "tokenizer": {"path": str(cfg.tokenizer), "sha256": tok.text.sha256},
        "codec": codec,
        "num_documents": state["num_documents"],
        "num_tokens": int(sum(s["num_tokens"] for s in state["shards"])),
        "counts": state["counts"],
        "shards": state["shards"],
        "sources": [{"path": str(s.path), "kind": s.kind, "sha256": c} for s, c in zip(sources, checksums)],
        "config": settings,
    }
    write_metadata(out, meta)
    progress_path.unlink(missing_ok=True)
    if progress:
        print(f"pack: wrote {out}: {meta['num_documents']} documents, {meta['num_tokens']} tokens "
              f"in {len(meta['shards'])} shard(s), {time.time() - t0:.1f}s")
    return meta
