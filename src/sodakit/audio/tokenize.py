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
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from sodakit.audio.codec import DEFAULT_BATCH_SECONDS, Codec
from sodakit.audio.io import DURATION_TOLERANCE_S, AudioError
from sodakit.audio.registry import load_codec
from sodakit.audio.sources import AudioItem, SourceError, open_source
from sodakit.config import atomic_write_text, check_ranges
from sodakit.data.segments import (
    MANIFEST_NAME,
    CodecInfo,
    Segment,
    SegmentManifest,
    ShardInfo,
    sha256_file,
    write_segment_shard,
)
from sodakit.device import resolve_device
from sodakit.progress import Progress

PLAN_NAME = "plan.json"
ERRORS_NAME = "errors.jsonl"
PLAN_FORMAT = "sodakit.tokenize-plan/1"


@dataclass
class TokenizeConfig:
    input: str = "???"  # LibriSpeech folder, manifest (.jsonl/.csv), HF dataset dir, or audio+.txt folder
    output: str = "???"  # segment-shard directory (created; resumes when it holds the same job)
    codec: str = "kyutai/mimi"  # hub id, local Mimi directory, or an offline codec directory
    kind: str = "auto"  # auto | librispeech | manifest | hf | folder
    audio_field: str | None = None  # manifest field / dataset column with the audio (auto-detected)
    text_field: str | None = None  # manifest field / dataset column with the transcript (auto-detected)
    device: str = "auto"  # auto = cuda (this rank's GPU under torchrun) when present, else cpu
    dtype: str = "float32"
    num_codebooks: int | None = None  # Mimi: first K codebooks (default 8)
    shard_size: int = 1000  # segments per shard (~1-2 h of LibriSpeech): resume granularity
    batch_seconds: float = DEFAULT_BATCH_SECONDS  # padded audio per encoder call
    workers: int = 1  # CPU processes (ignored under torchrun: one process per GPU there)
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
        h.update(json.dumps(asdict(it), sort_keys=True).encode())
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
        raise AudioError(item.path if item.row is None else f"{item.path}[{item.row}]", "duration",
                         f"start/end say {expected:.3f}s but the audio is {seconds:.3f}s")


def segment_end(item: AudioItem, seconds: float) -> float:
    """The end recorded for a segment: the real one (start + decoded duration); a given end within 1 ms
    of it is kept as written."""
    real = item.start + seconds
    return item.end if item.end is not None and abs(item.end - real) < 1e-3 else real


# --- one shard --------------------------------------------------------------------------------------------
def encode_shard(codec: Codec, items: list[AudioItem], batch_seconds: float,
                 on_item: Callable[[int], None] | None = None) -> tuple[list[Segment], list[dict], float]:
    """Segments of the readable items (in item order), error records of the others, audio seconds.
    `on_item(n)` counts items done: each unreadable one as it fails, the others as they are encoded."""
    waves, good, errors = [], [], []
    for it in items:
        try:
            wav = it.load(codec.sample_rate)
            check_duration(it, len(wav) / codec.sample_rate)
        except AudioError as e:
            errors.append({"where": e.path or it.path, "reason": e.reason, "detail": e.detail, "id": it.id})
        except Exception as e:  # a decoder crash on one file must not stop the job
            errors.append({"where": it.path, "reason": "unreadable", "detail": f"{type(e).__name__}: {e}", "id": it.id})
        else:
            waves.append(wav)
            good.append(it)
            continue
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


def _run_shard(out: Path, index: int, items: list[AudioItem], codec: Codec, cfg: TokenizeConfig,
               on_item: Callable[[int], None] | None = None) -> dict:
    segments, errors, seconds = encode_shard(codec, items, cfg.batch_seconds, on_item)
    stats = {"shard": index, "segments": len(segments), "errors": len(errors), "audio_seconds": seconds}
    # Errors and stats first: the shard file's existence is what marks the shard done.
    atomic_write_text(out / "errors" / f"shard-{index:05d}.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
    atomic_write_text(out / "errors" / f"shard-{index:05d}.stats.json", json.dumps(stats))
    write_segment_shard(out / shard_name(index), segments)
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
    return _run_shard(Path(out), index, items, _WORKER["codec"], _WORKER["cfg"])


# --- the job ----------------------------------------------------------------------------------------------
def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def _prepare_plan(cfg: TokenizeConfig, out: Path, codec: Codec, items: list[AudioItem],
                  source_errors: list[SourceError], shards: list[list[int]]) -> dict:
    plan = {
        "format": PLAN_FORMAT,
        "input": str(Path(cfg.input).resolve()) if Path(cfg.input).exists() else cfg.input,
        "kind": cfg.kind,
        "listing": _listing_fingerprint(items),
        "codec": asdict(codec.info()),
        "shard_size": cfg.shard_size,
        "limit": cfg.limit,
        "shards": [[items[i].id for i in s] for s in shards],
        "source_errors": [_error_record(e) for e in source_errors],
    }
    path = out / PLAN_NAME
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("listing", "codec", "shard_size", "limit", "shards"):
            if old.get(key) != plan[key]:
                raise TokenizeError(
                    f"{out} holds a different tokenize job ({key} differs: the input, codec or sharding changed); "
                    "use a new output directory or delete this one"
                )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(plan, indent=1))
    return plan


def _finalize(out: Path, plan: dict, cfg: TokenizeConfig, codec_info: dict) -> dict | None:
    """Write manifest.json and errors.jsonl once every shard exists; None while some are missing."""
    n = len(plan["shards"])
    if any(not (out / shard_name(i)).is_file() for i in range(n)):
        return None
    shards, errors, seconds, segments = [], list(plan["source_errors"]), 0.0, 0
    for i in range(n):
        stats = json.loads((out / "errors" / f"shard-{i:05d}.stats.json").read_text())
        frames = pq.read_table(out / shard_name(i), columns=["num_frames"]).column(0).to_numpy()
        shards.append(ShardInfo(file=shard_name(i), num_segments=int(stats["segments"]),
                                num_frames=int(frames.sum()) if len(frames) else 0,
                                sha256=sha256_file(out / shard_name(i))))
        for line in (out / "errors" / f"shard-{i:05d}.jsonl").read_text().splitlines():
            errors.append(json.loads(line))
        seconds += stats["audio_seconds"]
        segments += stats["segments"]
    summary = {
        "segments": segments,
        "errors": len(errors),
        "audio_hours": round(seconds / 3600, 6),
        "shards": n,
        "source": plan["input"],
        "kind": plan["kind"],
        "listing": plan["listing"],
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("output", "workers", "shard_delay_s", "device", "quiet")},
    }
    atomic_write_text(out / ERRORS_NAME, "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))
    SegmentManifest(codec=CodecInfo.from_dict(codec_info), shards=shards, extra=summary).save(out)
    return summary


def _remove_stale_temps(out: Path, todo: list[int], whole_job: bool) -> None:
    """Temp files a killed run left behind for the shards this rank is about to write (no other rank writes
    them); the manifest's and the error list's only when this process is the whole job."""
    patterns = [p for i in todo for p in (f".{shard_name(i)}.*.tmp", f"errors/.shard-{i:05d}.*.tmp")]
    if whole_job:
        patterns += [f".{MANIFEST_NAME}.*.tmp", f".{ERRORS_NAME}.*.tmp"]
    for pattern in patterns:
        for stale in out.glob(pattern):
            stale.unlink(missing_ok=True)


def tokenize(cfg: TokenizeConfig, log=None) -> dict:
    """Run (or resume) a tokenize job; returns the summary (segments, errors, audio hours, shards...).

    Messages go to `log` (default stderr); progress per utterance to a `sodakit.progress` bar on stderr
    unless cfg.quiet or a `log` is given (a caller with its own log shows its own progress).
    Under torchrun a rank that is not the last to finish returns {"finished": False, ...}.
    """
    own_log = log is not None
    quiet = cfg.quiet or own_log
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    for name in ("input", "output"):
        if getattr(cfg, name) in ("???", "", None):
            raise TokenizeError(f"tokenize: `{name}=` is required (see `sodakit tokenize --help`)")
    check_ranges(cfg, positive=("num_codebooks", "shard_size", "batch_seconds", "workers"),
                 non_negative=("limit", "shard_delay_s"))
    out = Path(cfg.output)
    rank, world, local = _dist_env()
    device = cfg.device
    if world > 1 and resolve_device(device).type == "cuda":  # a rank takes the GPU of its local rank
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    items, source_errors = open_source(cfg.input, cfg.kind, cfg.audio_field, cfg.text_field)
    codec = load_codec(cfg.codec, device=device, dtype=cfg.dtype, num_codebooks=cfg.num_codebooks)
    if cfg.limit:
        items = items[: cfg.limit]
    shards = plan_shards(items, cfg.shard_size)
    plan = _prepare_plan(cfg, out, codec, items, source_errors, shards)
    codec_info = plan["codec"]
    mine = [i for i in range(len(shards)) if i % world == rank]
    todo = [i for i in mine if not (out / shard_name(i)).is_file()]
    _remove_stale_temps(out, todo, whole_job=world == 1)
    if len(todo) < len(mine):
        log(f"resuming: {len(mine) - len(todo)} of {len(mine)} shards already done, skipped")
    log(f"tokenize: {len(items)} segments in {len(shards)} shards, codec {codec.name} ({codec.config_hash}) on "
        f"{getattr(codec, 'device', 'cpu')}, {len(todo)} shards to encode"
        + (f" (rank {rank}/{world})" if world > 1 else "") + f", {len(source_errors)} listing errors")
    t0 = time.perf_counter()
    done_s = 0.0
    done_n = 0
    bar = Progress("tokenize", total=sum(len(shards[i]) for i in todo), unit="utt", quiet=quiet)

    def shard_done(stats: dict) -> None:
        nonlocal done_s, done_n
        done_s += stats["audio_seconds"]
        done_n += 1
        rate = done_s / 3600 / max(time.perf_counter() - t0, 1e-9)
        eta = (len(todo) - done_n) * (time.perf_counter() - t0) / done_n
        say(f"[{done_n}/{len(todo)}] shard {stats['shard']}: {stats['segments']} segments, {stats['errors']} "
            f"errors; {done_s / 3600:.3f} h encoded, {rate:.4f} audio h/s, ETA {eta:.0f}s")

    say = log if own_log else bar.write  # shard lines above the bar on a terminal
    workers = 1 if world > 1 else max(1, cfg.workers)
    with bar:
        if workers > 1 and todo:
            threads = max(1, (os.cpu_count() or 1) // workers)
            ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch/OpenMP state
            jobs = [(str(out), i, [items[j] for j in shards[i]]) for i in todo]
            with ctx.Pool(workers, initializer=_worker_init, initargs=(asdict(cfg), threads)) as pool:
                for stats in pool.imap_unordered(_worker_shard, jobs):
                    bar.update(stats["segments"] + stats["errors"])  # workers report whole shards
                    shard_done(stats)
        else:
            for i in todo:
                shard_done(_run_shard(out, i, [items[j] for j in shards[i]], codec, cfg, on_item=bar.update))
    summary = _finalize(out, plan, cfg, codec_info)
    if summary is None:
        log(f"rank {rank}: my shards are done; the last rank to finish writes the manifest")
        return {"finished": False, "rank": rank}
    wall = time.perf_counter() - t0
    log(f"done: {summary['segments']} segments, {summary['audio_hours']:.3f} h, {summary['errors']} errors "
        f"(see {out / ERRORS_NAME}); {done_s / 3600 / max(wall, 1e-9):.4f} audio h/s this run")
    return {"finished": True, **summary, "wall_seconds": round(wall, 2),
            "audio_hours_per_second": done_s / 3600 / max(wall, 1e-9) if done_s else 0.0}
