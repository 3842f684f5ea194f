"""Encode an audio dataset into segment shards: parallel, resumable, tolerant of bad files.

The job is planned first, deterministically: items are sorted (recording, start, id) and cut into
shards of about `shard_size` segments that never split a recording unless it alone is larger. The
plan (with a fingerprint of the listing and of the codec) is saved as `plan.json`; a restarted job
checks it is the same job and skips every shard whose Parquet file exists (shards are written to a
temporary name and renamed, so an existing file is complete). A shard's bad items are recorded in its
`errors/shard-NNNNN.jsonl`, written before the shard itself. When every shard is present, the
`manifest.json` (codec info + config hash, shard checksums) and `errors.jsonl` are written: both depend
only on the plan and the codes, so a killed-and-restarted job ends byte-identical to an uninterrupted one.

Parallelism: `workers=N` CPU processes take shards from a queue; under `torchrun` each rank takes
every WORLD_SIZE-th shard on its own GPU (LOCAL_RANK), and whichever rank finishes last writes the
manifest. Progress is reported in audio hours per wall second.

Input and output may be URLs (sodakit.storage): shards are uploaded as they complete (each one PUT,
so an existing object is complete) and the manifest last, and a rerun resumes from the objects there.

A Hugging Face dataset read with `streaming=True` (a corpus that does not fit on disk) cannot be listed
up front: its rows are encoded in the stream's order, shard i holding rows [i * shard_size, (i + 1) *
shard_size), in one process; a rerun skips the rows of the finished shards. Everything else is listed,
sorted and planned as above.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from sodakit import storage
from sodakit.audio.codec import DEFAULT_BATCH_SECONDS, Codec
from sodakit.audio.io import DURATION_TOLERANCE_S, AudioError
from sodakit.audio.registry import load_codec
from sodakit.audio.sources import AudioItem, SourceError, iter_hf_stream, open_source, refuse_untranscribed
from sodakit.config import check_ranges
from sodakit.data.segments import (
    MANIFEST_NAME,
    CodecInfo,
    Segment,
    SegmentManifest,
    ShardInfo,
    read_table,
    write_segment_shard,
)
from sodakit.device import resolve_device
from sodakit.progress import Progress

PLAN_NAME = "plan.json"
ERRORS_NAME = "errors.jsonl"
PLAN_FORMAT = "sodakit.tokenize-plan/1"


@dataclass
class TokenizeConfig:
    # LibriSpeech folder, manifest (.jsonl/.csv), HF dataset (save_to_disk folder, Parquet snapshot or hub
    # id), or audio+.txt folder; a local path or a URL (s3://, gs://, ...)
    input: str = "???"
    output: str = "???"  # segment-shard directory or URL (created; resumes when it holds the same job)
    codec: str = "kyutai/mimi"  # hub id, local Mimi directory, or an offline codec directory
    kind: str = "auto"  # auto | librispeech | manifest | hf | folder
    audio_field: str | None = None  # manifest field / dataset column with the audio (auto-detected)
    text_field: str | None = None  # manifest field / dataset column with the transcript (auto-detected)
    split: str | None = None  # HF dataset split (required when it has several)
    streaming: bool = False  # HF datasets: read rows as a stream (corpora that do not fit on disk)
    # Items without a transcript are errors (true), or kept without text for audio-only documents (false).
    require_text: bool = True
    device: str = "auto"  # auto = cuda (this rank's GPU under torchrun) when present, else cpu
    dtype: str = "float32"
    num_codebooks: int | None = None  # Mimi: first K codebooks (default 8)
    shard_size: int = 1000  # segments per shard (~1-2 h of LibriSpeech): resume granularity
    batch_seconds: float = DEFAULT_BATCH_SECONDS  # padded audio per encoder call
    workers: int = 1  # CPU processes (ignored under torchrun: one process per GPU there)
    # Audio files read at once per process: an object store answers each GET after tens of ms, so reading
    # a shard's thousand clips one by one would wait minutes on latency alone.
    read_threads: int = 8
    limit: int = 0  # encode only the first N segments (0 = all), for a trial run
    shard_delay_s: float = 0.0  # pause after each shard; only for testing kill/resume
    quiet: bool = False  # no progress output (per-shard lines and the summary still print)


class TokenizeError(ValueError):
    pass


def plan_shards(items: list[AudioItem], shard_size: int) -> list[list[int]]:
    """Consecutive item indices per shard; a recording stays in one shard unless it alone exceeds the size."""
    if shard_size < 1:
        raise TokenizeError(f"shard_size must be >= 1, got {shard_size}")
    shards: list[list[int]] = []
    current: list[int] = []
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j].recording_id == items[i].recording_id:
            j += 1
        rec = list(range(i, j))
        if current and len(current) + len(rec) > shard_size:
            shards.append(current)
            current = []
        while len(rec) > shard_size:
            shards.append(rec[:shard_size])
            rec = rec[shard_size:]
        current.extend(rec)
        if len(current) >= shard_size:
            shards.append(current)
            current = []
        i = j
    if current:
        shards.append(current)
    return shards


def shard_name(i: int) -> str:
    return f"segments-{i:05d}.parquet"


def _listing_fingerprint(items: list[AudioItem]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps(it.record(), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def _error_record(e: SourceError | dict) -> dict:
    return asdict(e) if isinstance(e, SourceError) else e


def check_duration(item: AudioItem, seconds: float) -> None:
    """A segment whose own start/end (a dataset row's, LibriSpeech's from the headers) disagree with the
    audio it decodes to by more than DURATION_TOLERANCE_S: its transcript cannot be trusted to match."""
    if item.end is None or item.clip:  # clips are cut to [start, end) and checked while reading
        return
    expected = item.end - item.start
    if abs(seconds - expected) > DURATION_TOLERANCE_S:
        raise AudioError(item.where, "duration", f"start/end say {expected:.3f}s but the audio is {seconds:.3f}s")


def segment_end(item: AudioItem, seconds: float) -> float:
    """The end recorded for a segment: the real one (start + decoded duration); a given end within 1 ms
    of it is kept as written."""
    real = item.start + seconds
    return item.end if item.end is not None and abs(item.end - real) < 1e-3 else real


# --- one shard --------------------------------------------------------------------------------------------
def _read_item(it: AudioItem, sample_rate: int) -> tuple[np.ndarray | None, dict | None]:
    """One item's waveform, or the error record that replaces it."""
    try:
        wav = it.load(sample_rate)
        check_duration(it, len(wav) / sample_rate)
    except AudioError as e:
        return None, {"where": e.path or it.path, "reason": e.reason, "detail": e.detail, "id": it.id}
    except Exception as e:  # a decoder crash on one file must not stop the job
        return None, {"where": it.path, "reason": "unreadable", "detail": f"{type(e).__name__}: {e}", "id": it.id}
    return wav, None


def encode_shard(codec: Codec, items: list[AudioItem], batch_seconds: float,
                 on_item: Callable[[int], None] | None = None,
                 read_threads: int = 1) -> tuple[list[Segment], list[dict], float]:
    """Segments of the readable items (in item order), error records of the others, audio seconds.
    `on_item(n)` counts items done: each unreadable one as it fails, the others as they are encoded.
    `read_threads` items are read at once (object stores answer each request after tens of ms)."""
    waves, good, errors = [], [], []
    with ThreadPoolExecutor(max(1, read_threads), thread_name_prefix="sodakit-read") as pool:
        for it, (wav, error) in zip(items, pool.map(lambda it: _read_item(it, codec.sample_rate), items)):
            if error is None:
                waves.append(wav)
                good.append(it)
                continue
            errors.append(error)
            if on_item is not None:
                on_item(1)
    codes = (codec.encode_audio(waves, codec.sample_rate, batch_seconds=batch_seconds, on_encoded=on_item)
             if waves else [])
    segments = []
    for it, wav, c in zip(good, waves, codes):
        duration = len(wav) / codec.sample_rate
        end = segment_end(it, duration)
        segments.append(Segment(id=it.id, recording_id=it.recording_id, start=float(it.start), end=float(end),
                                text=it.text, codes=c.astype(np.uint16), speaker=it.speaker))
    seconds = float(sum(len(w) for w in waves)) / codec.sample_rate
    return segments, errors, seconds


def _errors_path(out: str, index: int, suffix: str) -> str:
    return storage.join(out, "errors", f"shard-{index:05d}{suffix}")


def _run_shard(out: str, index: int, items: list[AudioItem], codec: Codec, cfg: TokenizeConfig,
               extra_errors: list[dict] = (), on_item: Callable[[int], None] | None = None) -> dict:
    segments, errors, seconds = encode_shard(codec, items, cfg.batch_seconds, on_item, cfg.read_threads)
    errors = [*extra_errors, *errors]
    stats = {"shard": index, "segments": len(segments), "errors": len(errors), "audio_seconds": seconds,
             "untranscribed": sum(s.text is None for s in segments)}

    def record(info: ShardInfo) -> None:
        # Errors and stats first: the shard file's existence is what marks the shard done.
        stats.update(num_frames=info.num_frames, sha256=info.sha256)
        storage.write_text(_errors_path(out, index, ".jsonl"), "".join(json.dumps(e) + "\n" for e in errors))
        storage.write_text(_errors_path(out, index, ".stats.json"), json.dumps(stats))

    write_segment_shard(storage.join(out, shard_name(index)), segments, before_commit=record)
    if cfg.shard_delay_s > 0:
        time.sleep(cfg.shard_delay_s)
    return stats


# --- worker processes -------------------------------------------------------------------------------------
_WORKER: dict = {}


def _worker_init(cfg_dict: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    cfg = TokenizeConfig(**cfg_dict)
    _WORKER["cfg"] = cfg
    _WORKER["codec"] = load_codec(cfg.codec, device="cpu", dtype=cfg.dtype, num_codebooks=cfg.num_codebooks)


def _worker_shard(args: tuple[str, int, list[AudioItem]]) -> dict:
    out, index, items = args
    return _run_shard(out, index, items, _WORKER["codec"], _WORKER["cfg"])


# --- the job ----------------------------------------------------------------------------------------------
def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def _input_reference(cfg: TokenizeConfig) -> str:
    """The input as the plan and manifest record it: a local path made absolute, a URL or hub id as given."""
    if storage.is_remote(cfg.input) or not storage.exists(cfg.input):
        return cfg.input
    return str(storage.local_path(cfg.input).resolve())


# Keys of plan.json that must match for a rerun to continue the same job.
PLAN_KEYS = ("listing", "codec", "shard_size", "limit", "shards")
STREAM_PLAN_KEYS = ("input", "reference", "split", "codec", "shard_size", "limit", "streaming")


def _prepare_plan(cfg: TokenizeConfig, out: str, plan: dict, keys: tuple[str, ...]) -> dict:
    path = storage.join(out, PLAN_NAME)
    if storage.isfile(path):
        old = json.loads(storage.read_text(path))
        for key in keys:
            if old.get(key) != plan[key]:
                raise TokenizeError(
                    f"{out} holds a different tokenize job ({key} differs: the input, codec or sharding changed); "
                    "use a new output directory or delete this one"
                )
    else:
        storage.makedirs(out)
        storage.write_text(path, json.dumps(plan, indent=1))
    return plan


def _shard_stats(out: str, i: int) -> tuple[dict, ShardInfo]:
    stats = json.loads(storage.read_text(_errors_path(out, i, ".stats.json")))
    shard = storage.join(out, shard_name(i))
    if "sha256" not in stats:  # written by an older sodakit: read the shard itself
        frames = read_table(shard, columns=["num_frames"]).column(0).to_numpy()
        stats.update(num_frames=int(frames.sum()) if len(frames) else 0, sha256=storage.sha256(shard))
    return stats, ShardInfo(file=shard_name(i), num_segments=int(stats["segments"]),
                            num_frames=int(stats["num_frames"]), sha256=stats["sha256"])


def _finalize(out: str, n: int, source_errors: list[dict], header: dict, cfg: TokenizeConfig,
              codec_info: dict) -> dict | None:
    """Write manifest.json and errors.jsonl once shards 0..n-1 exist; None while some are missing."""
    if any(not storage.isfile(storage.join(out, shard_name(i))) for i in range(n)):
        return None
    shards, errors, seconds, segments, untranscribed = [], list(source_errors), 0.0, 0, 0
    for i in range(n):
        stats, info = _shard_stats(out, i)
        shards.append(info)
        for line in storage.read_text(_errors_path(out, i, ".jsonl")).splitlines():
            errors.append(json.loads(line))
        seconds += stats["audio_seconds"]
        segments += stats["segments"]
        untranscribed += stats.get("untranscribed", 0)
    summary = {
        "segments": segments,
        "errors": len(errors),
        "audio_hours": round(seconds / 3600, 6),
        "shards": n,
        **header,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("output", "workers", "shard_delay_s", "device", "quiet")
                   and not (k in ("split", "streaming", "require_text") and v == getattr(TokenizeConfig, k))},
    }
    if untranscribed:
        summary["untranscribed"] = untranscribed
    storage.write_text(storage.join(out, ERRORS_NAME), "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))
    SegmentManifest(codec=CodecInfo.from_dict(codec_info), shards=shards, extra=summary).save(out)
    return summary


def _remove_stale_temps(out: str, todo: list[int], whole_job: bool) -> None:
    """Temp files a killed run left behind for the shards this rank is about to write (no other rank writes
    them); the manifest's and the error list's only when this process is the whole job. (A remote output
    has none: its files are staged in the local cache.)"""
    if storage.is_remote(out):
        return
    patterns = [p for i in todo for p in (f".{shard_name(i)}.*.tmp", f"errors/.shard-{i:05d}.*.tmp")]
    if whole_job:
        patterns += [f".{MANIFEST_NAME}.*.tmp", f".{ERRORS_NAME}.*.tmp"]
    for pattern in patterns:
        for stale in Path(out).glob(pattern):
            stale.unlink(missing_ok=True)


class _Progress:
    """Shards done, audio hours per second and an ETA, one log line per shard."""

    def __init__(self, total: int | None, log):
        self.total, self.log = total, log
        self.t0, self.seconds, self.done = time.perf_counter(), 0.0, 0

    def __call__(self, stats: dict) -> None:
        self.seconds += stats["audio_seconds"]
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        rate = self.seconds / 3600 / max(elapsed, 1e-9)
        eta = f", ETA {(self.total - self.done) * elapsed / self.done:.0f}s" if self.total is not None else ""
        of = f"/{self.total}" if self.total is not None else ""
        self.log(f"[{self.done}{of}] shard {stats['shard']}: {stats['segments']} segments, {stats['errors']} errors; "
                 f"{self.seconds / 3600:.3f} h encoded, {rate:.4f} audio h/s{eta}")


def _check_config(cfg: TokenizeConfig) -> None:
    for name in ("input", "output"):
        if getattr(cfg, name) in ("???", "", None):
            raise TokenizeError(f"tokenize: `{name}=` is required (see `sodakit tokenize --help`)")
    check_ranges(cfg, positive=("num_codebooks", "shard_size", "batch_seconds", "workers", "read_threads"),
                 non_negative=("limit", "shard_delay_s"))
    if cfg.streaming and cfg.kind not in ("auto", "hf"):
        raise TokenizeError(f"tokenize: streaming=true reads Hugging Face datasets (kind=hf), not kind={cfg.kind}")


def tokenize(cfg: TokenizeConfig, log=None) -> dict:
    """Run (or resume) a tokenize job; returns the summary (segments, errors, audio hours, shards...).

    Messages go to `log` (default stderr); progress per utterance to a `sodakit.progress` bar on stderr
    unless cfg.quiet or a `log` is given (a caller with its own log shows its own progress).
    Under torchrun a rank that is not the last to finish returns {"finished": False, ...}.
    """
    own_log = log is not None
    quiet = cfg.quiet or own_log
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _check_config(cfg)
    out = storage.as_location(cfg.output)
    rank, world, local = _dist_env()
    device = cfg.device
    if world > 1 and resolve_device(device).type == "cuda":  # a rank takes the GPU of its local rank
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if cfg.streaming:
        if world > 1 or cfg.workers > 1:
            raise TokenizeError("tokenize: streaming=true encodes the stream in one process (workers=1, no torchrun); "
                                "without streaming, the dataset is listed and its shards shared out")
        return _tokenize_stream(cfg, out, load_codec(cfg.codec, device=device, dtype=cfg.dtype,
                                                     num_codebooks=cfg.num_codebooks), log, quiet, own_log)
    items, source_errors = open_source(cfg.input, cfg.kind, cfg.audio_field, cfg.text_field, cfg.split,
                                       cfg.require_text)
    codec = load_codec(cfg.codec, device=device, dtype=cfg.dtype, num_codebooks=cfg.num_codebooks)
    if cfg.limit:
        items = items[: cfg.limit]
    shards = plan_shards(items, cfg.shard_size)
    plan = _prepare_plan(cfg, out, {
        "format": PLAN_FORMAT,
        "input": _input_reference(cfg),
        "kind": cfg.kind,
        "listing": _listing_fingerprint(items),
        "codec": asdict(codec.info()),
        "shard_size": cfg.shard_size,
        "limit": cfg.limit,
        "shards": [[items[i].id for i in s] for s in shards],
        "source_errors": [_error_record(e) for e in source_errors],
    }, PLAN_KEYS)
    codec_info = plan["codec"]
    mine = [i for i in range(len(shards)) if i % world == rank]
    todo = [i for i in mine if not storage.isfile(storage.join(out, shard_name(i)))]
    _remove_stale_temps(out, todo, whole_job=world == 1)
    if len(todo) < len(mine):
        log(f"resuming: {len(mine) - len(todo)} of {len(mine)} shards already done, skipped")
    log(f"tokenize: {len(items)} segments in {len(shards)} shards, codec {codec.name} ({codec.config_hash}) on "
        f"{getattr(codec, 'device', 'cpu')}, {len(todo)} shards to encode"
        + (f" (rank {rank}/{world})" if world > 1 else "") + f", {len(source_errors)} listing errors")
    bar = Progress("tokenize", total=sum(len(shards[i]) for i in todo), unit="utt", quiet=quiet)
    progress = _Progress(len(todo), log if own_log else bar.write)  # shard lines above the bar on a terminal
    workers = 1 if world > 1 else max(1, cfg.workers)
    with bar:
        if workers > 1 and todo:
            threads = max(1, (os.cpu_count() or 1) // workers)
            ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch/OpenMP state
            jobs = [(out, i, [items[j] for j in shards[i]]) for i in todo]
            with ctx.Pool(workers, initializer=_worker_init, initargs=(asdict(cfg), threads)) as pool:
                for stats in pool.imap_unordered(_worker_shard, jobs):
                    bar.update(stats["segments"] + stats["errors"])  # workers report whole shards
                    progress(stats)
        else:
            for i in todo:
                progress(_run_shard(out, i, [items[j] for j in shards[i]], codec, cfg, on_item=bar.update))
    header = {"source": plan["input"], "kind": plan["kind"], "listing": plan["listing"]}
    summary = _finalize(out, len(shards), plan["source_errors"], header, cfg, codec_info)
    return _done(summary, progress, out, rank, log)


def _done(summary: dict | None, progress: _Progress, out: str, rank: int, log) -> dict:
    if summary is None:
        log(f"rank {rank}: my shards are done; the last rank to finish writes the manifest")
        return {"finished": False, "rank": rank}
    wall = time.perf_counter() - progress.t0
    rate = progress.seconds / 3600 / max(wall, 1e-9)
    untranscribed = f", {summary['untranscribed']} without transcript" if summary.get("untranscribed") else ""
    log(f"done: {summary['segments']} segments{untranscribed}, {summary['audio_hours']:.3f} h, {summary['errors']} "
        f"errors (see {storage.join(out, ERRORS_NAME)}); {rate:.4f} audio h/s this run")
    return {"finished": True, **summary, "wall_seconds": round(wall, 2),
            "audio_hours_per_second": rate if progress.seconds else 0.0}


def _tokenize_stream(cfg: TokenizeConfig, out: str, codec: Codec, log, quiet: bool, own_log: bool) -> dict:
    """The streaming job (module docstring): shards of `shard_size` consecutive rows, in stream order."""
    plan = {"format": PLAN_FORMAT, "input": _input_reference(cfg), "kind": "hf", "split": cfg.split,
            "streaming": True, "codec": asdict(codec.info()), "shard_size": cfg.shard_size, "limit": cfg.limit}
    done = 0
    if storage.isfile(storage.join(out, PLAN_NAME)):  # a rerun: the shards written so far are a prefix
        while storage.isfile(storage.join(out, shard_name(done))):
            done += 1
    skip = done * cfg.shard_size
    src, rows = iter_hf_stream(cfg.input, cfg.audio_field, cfg.text_field, cfg.split, cfg.require_text, skip=skip)
    plan["split"], plan["reference"] = src.split, src.reference
    _prepare_plan(cfg, out, plan, STREAM_PLAN_KEYS)  # refuses another job's output before anything is read
    if done:
        log(f"resuming: {done} shards already done, skipping their {skip} rows")
    log(f"tokenize: streaming {src.reference} ({src.split}), {cfg.shard_size} rows per shard, codec {codec.name} "
        f"({codec.config_hash}) on {getattr(codec, 'device', 'cpu')}")
    if cfg.limit:
        rows = islice(rows, max(0, cfg.limit - skip))
    bar = Progress("tokenize", unit="utt", quiet=quiet)  # no total: the stream's length is unknown
    progress = _Progress(None, log if own_log else bar.write)
    index = done
    with bar:
        for chunk in _chunks(rows, cfg.shard_size):
            items = [r for r in chunk if isinstance(r, AudioItem)]
            errors = [r for r in chunk if isinstance(r, SourceError)]
            if index == 0:  # a stream whose first rows all lack transcripts is one without them
                refuse_untranscribed(src.reference, items, errors)
            bar.update(len(errors))
            progress(_run_shard(out, index, items, codec, cfg, extra_errors=[_error_record(e) for e in errors],
                                on_item=bar.update))
            index += 1
    if index == 0:
        raise TokenizeError(f"tokenize: {src.reference} ({src.split}) yielded no rows")
    header = {"source": plan["input"], "kind": "hf", "listing": None, "split": src.split, "streaming": True}
    return _done(_finalize(out, index, [], header, cfg, plan["codec"]), progress, out, 0, log)


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(rows, size)):
        yield chunk
