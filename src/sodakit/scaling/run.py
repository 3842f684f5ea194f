"""`sodakit isoflop run PLAN`: train every run of a plan with the training engine, one results row per run.

Each planned run becomes a `TrainConfig` for `sodakit.train.trainer.train`: the run's exact model shape
(vocabulary = the plan's), its LR / betas / eps / weight decay / z-loss / grad clip with Cautious AdamW
(weight decay annealed with the LR), its global batch and steps, WSD with the plan's warmup and decay
fractions, the plan's sequence length. Training data is a weighted mixture of packed datasets
(`MixtureLoader`, the same seed for every run, so every run sees the same stream); validation covers
*every* window of one held-out packed dataset, so all runs are scored on exactly the same tokens whatever
their batch size. The loss is recorded overall and per token type (text, marker, audio, semantic).

Restartability:

* A run is finished when its `run_id` has a row in the results CSV; such runs are skipped.
* Rows are added under an exclusive lock (`fcntl.flock` on RESULTS.lock) by rewriting the whole table to a
  temporary file and renaming it: a crash never leaves a half-written row, and two sweeps writing into
  one table do not lose each other's rows.
* Each run trains in RUNS_DIR/<run_id> with `checkpoint.resume=auto`: an interrupted run continues from
  its newest complete checkpoint (a few per run, see `checkpoint_every`) instead of starting over. Once
  the row is written the run's checkpoints are deleted unless `keep_checkpoints` is set (metrics.jsonl
  and config.yaml stay).
* Several processes may sweep one plan: each takes an exclusive `flock` on RUNS_DIR/<run_id>.claim before
  training a run and skips runs held by another process; a lock dies with its process.
* Every row records a fingerprint of the data (packed shard checksums, weights, validation set, seed):
  a table whose finished rows came from other data is refused instead of being silently mixed.

Launchers: a plain process, or every rank of a `torchrun` job. The process group is created once for the
whole sweep; runs go one after another, each using all ranks (the global batch is split into
`micro_batch` x world size x accumulation). Rank 0 reads and writes the table; the set of finished runs is
broadcast so every rank takes the same decisions.

A run that diverges (NaN/Inf loss) is recorded with status `diverged` and loss `nan`: it is not retried
on restart, and `isoflop fit` refuses the table until it is dropped (`--drop-invalid`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sodakit.config import atomic_write_text
from sodakit.data.packed import PackedDataError, PackedDataset
from sodakit.fileio import try_exclusive_lock
from sodakit.model.config import count_params, train_flops_per_token
from sodakit.model.load import list_checkpoints, load_pretrained, resolve
from sodakit.progress import Progress
from sodakit.scaling.plan import Plan, RunSpec, read_plan
from sodakit.train import distributed as D
from sodakit.train import trainer  # called as trainer.train so tests can stand in for it
from sodakit.train.config import (
    CheckpointConfig,
    DataConfig,
    DataSource,
    LogConfig,
    ModelSpec,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from sodakit.train.metrics import TOKEN_TYPES
from sodakit.train.validation import val_batches, validation_losses

STATUS_OK, STATUS_DIVERGED = "ok", "diverged"

RESULT_COLUMNS = [
    "run_id", "budget", "flop_convention", "status",
    "width", "layers", "heads", "kv_heads", "batch", "lr", "steps", "seq_len", "vocab_size",
    "params", "params_nonembedding", "tokens", "flops", "flops_per_token",
    "loss", *(f"loss_{t}" for t in TOKEN_TYPES), "train_loss",
    "wall_time_s", "resumed_from_step", "world_size", "device", "precision", "data_fingerprint", "finished_at",
]


class RunError(ValueError):
    """Bad input to `isoflop run` (data, plan, results table, launcher)."""


@dataclass
class RunSettings:
    # (packed dataset directory, mixture weight) pairs for training.
    data: list[tuple[str, float]]
    # Held-out packed dataset: the validation loss is the NLL over all of its windows.
    val: str
    results: Path
    runs_dir: Path
    device: str = "auto"
    # "auto": fp32 on CPU (bf16 matmuls are slower there and never used for fp16-like shortcuts), bf16 on GPU.
    precision: str = "auto"
    micro_batch: int = 0  # sequences per rank per forward; 0 = global batch / world size (no accumulation)
    seed: int = 0  # model init and data order; the same for every run of the sweep
    checkpoint_every: int = 0  # steps; 0 = about 4 checkpoints per run (resume granularity vs. write cost)
    keep_checkpoints: bool = False
    compile: bool = False
    only: list[str] = field(default_factory=list)  # restrict to these run ids (empty: all)
    max_runs: int = 0  # train at most this many runs in this invocation (0: all)
    progress: bool = False  # per-step progress of the engine (each run's training steps)
    quiet: bool = False  # no per-run progress of the sweep


@dataclass
class RunOutcome:
    trained: list[str]
    skipped: list[str]
    diverged: list[str]
    taken: list[str] = field(default_factory=list)  # being trained (or just finished) by another process


# ---------------------------------------------------------------------------------------------------
# Data checks
# ---------------------------------------------------------------------------------------------------
def parse_data_arg(value: str) -> tuple[str, float]:
    """`PATH` or `PATH:WEIGHT` (weight defaults to 1)."""
    if ":" in value:
        path, _, w = value.rpartition(":")
        try:
            weight = float(w)
        except ValueError:
            return value, 1.0
        if not (weight > 0 and math.isfinite(weight)):
            raise RunError(f"--data {value}: the weight must be a positive number, got {w!r}")
        return path, weight
    return value, 1.0


def check_data(plan: Plan, settings: RunSettings) -> tuple[Any, str, int]:
    """Open the training and validation data; refuse a vocabulary other than the plan's.

    Returns (vocab, data fingerprint, number of validation windows at the plan's sequence length).
    """
    if not settings.data:
        raise RunError("no training data: give --data PACKED_DIR[:WEIGHT] ...")
    if not settings.val:
        raise RunError("no validation data: give --val PACKED_DIR (held-out packed data)")
    opened = []
    for path, _ in [*settings.data, (settings.val, 0.0)]:
        try:
            opened.append(PackedDataset(path))
        except (PackedDataError, FileNotFoundError, OSError) as e:
            raise RunError(f"cannot open packed dataset {path}: {e}") from e
    want = plan.rules.vocab_size
    for ds in opened:
        if ds.vocab.size != want:
            raise RunError(
                f"{ds.directory}: vocabulary of {ds.vocab.size} ids, but the plan was made for vocab_size {want}; "
                f"its FLOPs and parameter counts would be wrong. Re-plan with vocab_size={ds.vocab.size}"
            )
    bad = [r.run_id for r in plan.runs if r.vocab_size != want]
    if bad:
        raise RunError(f"plan runs {bad[:5]} have a vocab_size other than the plan's rules ({want})")
    first = opened[0]
    for ds in opened[1:]:
        if ds.vocab.fingerprint != first.vocab.fingerprint:
            raise RunError(
                f"{ds.directory} has vocabulary layout {ds.vocab.fingerprint} but {first.directory} has "
                f"{first.vocab.fingerprint}: training and validation data must share one layout"
            )
    seq = plan.rules.seq_len
    for ds in opened:
        if ds.num_windows(seq) == 0:
            raise RunError(f"{ds.directory}: {ds.num_tokens} tokens, fewer than one window of {seq + 1}")
    record = {
        "train": [[ds.fingerprint, w] for ds, (_, w) in zip(opened[:-1], settings.data)],
        "val": opened[-1].fingerprint,
        "seed": settings.seed,
        "seq_len": seq,
    }
    fingerprint = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return first.vocab, fingerprint, opened[-1].num_windows(seq)


# ---------------------------------------------------------------------------------------------------
# Results table
# ---------------------------------------------------------------------------------------------------
def read_finished(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an existing results table by run id (empty when the file does not exist)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if header != RESULT_COLUMNS:
        missing = [c for c in RESULT_COLUMNS if c not in header]
        extra = [c for c in header if c not in RESULT_COLUMNS]
        raise RunError(
            f"results file {path}: not an `isoflop run` table (missing columns {missing}, unexpected {extra}); "
            "choose another --results"
        )
    rows = {}
    for i, row in enumerate(reader, start=1):
        rid = row.get("run_id") or ""
        if not rid or None in row.values():
            raise RunError(f"results file {path}: row {i} is incomplete ({row}); fix or remove it")
        rows[rid] = row
    return rows


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Add one row: lock, read the table, write table + row to a temp file, fsync, rename."""
    missing = [c for c in RESULT_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"results row lacks columns {missing}")
    with _locked(path):
        existing = read_finished(path)
        if row["run_id"] in existing:
            raise RunError(f"results file {path}: run {row['run_id']} already has a row (another process ran it?)")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in existing.values():
            writer.writerow(r)
        writer.writerow({k: _fmt(row[k]) for k in RESULT_COLUMNS})
        atomic_write_text(path, buf.getvalue())


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ---------------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------------
def train_config(spec: RunSpec, settings: RunSettings, world_size: int, n_val_windows: int, device_type: str):
    """The engine's TrainConfig for one planned run."""
    micro = settings.micro_batch or spec.batch // world_size
    if micro <= 0 or spec.batch % (micro * world_size):
        raise RunError(
            f"run {spec.run_id}: global batch {spec.batch} is not a multiple of micro_batch x world size = "
            f"{micro} x {world_size}; use a world size / --micro-batch that divides it"
        )
    precision = settings.precision
    if precision == "auto":
        precision = "bf16" if device_type == "cuda" else "fp32"
    every = settings.checkpoint_every or max(1, math.ceil(spec.steps / 4))
    m = spec.model_config()
    shape = {k: getattr(m, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads",
                                        "head_dim", "d_ff", "max_seq_len")}
    return TrainConfig(
        run_dir=str(settings.runs_dir / spec.run_id),
        seed=settings.seed,
        steps=spec.steps,
        global_batch=spec.batch,
        micro_batch=micro,
        precision=precision,
        device=settings.device,
        compile=settings.compile,
        data=DataConfig(
            sources=[DataSource(path=str(p), weight=float(w)) for p, w in settings.data],
            seq_len=spec.seq_len,
            val_path=str(settings.val),
            # Every validation window, whatever the micro batch: the same tokens score every run.
            val_batches=math.ceil(n_val_windows / micro),
        ),
        # "135M" only supplies the non-shape fields (RoPE, norm eps, init, untied), which the sweep shares.
        model=ModelSpec(preset="135M", overrides=shape),
        optim=OptimConfig(
            name=spec.optimizer, lr=spec.lr, beta1=spec.beta1, beta2=spec.beta2, eps=spec.eps,
            weight_decay=spec.weight_decay, grad_clip=spec.grad_clip, z_loss=spec.z_loss,
        ),
        schedule=ScheduleConfig(kind="wsd", warmup_frac=spec.warmup_fraction, decay_frac=spec.decay_fraction,
                                min_lr_ratio=spec.min_lr_ratio),
        checkpoint=CheckpointConfig(every=every, keep_last=1, resume="auto"),
        log=LogConfig(every=max(1, min(10, spec.steps // 10)), val_every=0, tensorboard=False,
                      progress=settings.progress),
    )


def _final_val_from_metrics(run_dir: Path, steps: int) -> dict[str, float] | None:
    """The validation record the engine wrote at the last step (kept in metrics.jsonl across a resume)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    found = None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line after a crash
        if rec.get("step") == steps and "val_loss" in rec:
            found = {k: v for k, v in rec.items() if k.startswith("val_loss")}
    return found


def _evaluate_checkpoint(cfg, ctx, vocab) -> dict[str, float]:
    """Score the run's final checkpoint on the validation data (all ranks; no metrics record existed)."""
    model, _ = load_pretrained(resolve(cfg.run_dir), device=ctx.device)
    return validation_losses(model, val_batches(cfg, ctx, vocab), vocab, ctx)


def _last_train_loss(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    last = None
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if "loss" in rec:
                last = rec["loss"]
    return last


def _resume_step(run_dir: Path) -> int:
    ckpts = list_checkpoints(run_dir)
    return int(ckpts[-1].name.split("_")[-1]) if ckpts else 0


def result_row(spec: RunSpec, cfg, val: dict[str, float] | None, status: str, train_loss: float | None,
               wall: float, resumed_from: int, world_size: int, device: str, fingerprint: str) -> dict[str, Any]:
    m = spec.model_config()
    counts = count_params(m)
    tokens = spec.steps * spec.batch * spec.seq_len
    f_tok = train_flops_per_token(m, spec.seq_len, spec.flop_convention)
    val = val or {}
    return {
        "run_id": spec.run_id, "budget": spec.budget, "flop_convention": spec.flop_convention, "status": status,
        "width": spec.width, "layers": spec.layers, "heads": spec.heads, "kv_heads": spec.kv_heads,
        "batch": spec.batch, "lr": spec.lr, "steps": spec.steps, "seq_len": spec.seq_len,
        "vocab_size": spec.vocab_size, "params": counts.total, "params_nonembedding": counts.non_embedding,
        "tokens": tokens, "flops": f_tok * tokens, "flops_per_token": f_tok,
        "loss": val.get("val_loss", float("nan")),
        **{f"loss_{t}": val.get(f"val_loss_{t}") for t in TOKEN_TYPES},
        "train_loss": train_loss, "wall_time_s": round(wall, 2), "resumed_from_step": resumed_from,
        "world_size": world_size, "device": device, "precision": cfg.precision, "data_fingerprint": fingerprint,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _check_spec(spec: RunSpec) -> None:
    """The plan row must describe the model it names (guards hand-edited plans)."""
    m = spec.model_config()
    counts = count_params(m)
    if counts.total != spec.params or counts.non_embedding != spec.params_nonembedding:
        raise RunError(
            f"plan run {spec.run_id}: params {spec.params}/{spec.params_nonembedding} do not match its shape "
            f"({counts.total}/{counts.non_embedding}); was the plan edited by hand? Re-plan it"
        )
    if spec.tokens != spec.steps * spec.batch * spec.seq_len:
        raise RunError(f"plan run {spec.run_id}: tokens {spec.tokens} != steps x batch x seq_len")


# ---------------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------------
def run_plan(plan_path: str | Path, settings: RunSettings, log: Callable[[str], None] | None = None) -> RunOutcome:
    """Train every unfinished run of the plan (collective under torchrun: every rank calls it).

    Rank 0 shows the sweep's progress per run (sodakit.progress, stderr) and writes its messages to `log`,
    by default to stderr above that progress.
    """
    plan = read_plan(plan_path)
    runs = plan.runs
    if settings.only:
        known = {r.run_id for r in runs}
        unknown = [r for r in settings.only if r not in known]
        if unknown:
            raise RunError(f"--only: run ids {unknown} are not in the plan {plan_path}")
        runs = [r for r in runs if r.run_id in set(settings.only)]
    for spec in runs:
        _check_spec(spec)
    vocab, fingerprint, n_val = check_data(plan, settings)

    ctx = D.setup(settings.device)
    try:
        finished = None
        if ctx.is_main:
            finished = {rid: row["data_fingerprint"] for rid, row in read_finished(settings.results).items()}
        finished = D.broadcast_object(finished)
        foreign = sorted(rid for rid, fp in finished.items() if fp != fingerprint and rid in {r.run_id for r in runs})
        if foreign:
            raise RunError(
                f"results file {settings.results}: runs {foreign[:5]} were trained on other data (fingerprint "
                f"{finished[foreign[0]]}, now {fingerprint}); use another --results or the original data"
            )
        outcome = RunOutcome([], [], [])
        todo = [r for r in runs if r.run_id not in finished]
        outcome.skipped = [r.run_id for r in runs if r.run_id in finished]
        bar = Progress("isoflop run", total=len(todo), unit="run", quiet=settings.quiet or not ctx.is_main)
        say = log if log is not None else bar.write
        if ctx.is_main:
            say(f"isoflop run: {len(runs)} runs in {plan_path}, {len(outcome.skipped)} already finished in "
                f"{settings.results}, {len(todo)} to train (world size {ctx.world_size}, device {ctx.device})")
        for i, spec in enumerate(bar.each(todo), 1):
            if settings.max_runs and len(outcome.trained) + len(outcome.diverged) >= settings.max_runs:
                break
            claim = _claim_run(settings.runs_dir, spec.run_id) if ctx.is_main else None
            # Another `isoflop run` on this plan is training it, or finished it after this one started.
            busy = ctx.is_main and (claim is None or spec.run_id in read_finished(settings.results))
            if D.broadcast_object(busy):
                if claim is not None:
                    claim.close()
                if ctx.is_main:
                    say(f"[{i}/{len(todo)}] {spec.run_id}: taken by another process, skipped")
                outcome.taken.append(spec.run_id)
                continue
            with claim or contextlib.nullcontext():  # the claim is released once the row is written
                cfg = train_config(spec, settings, ctx.world_size, n_val, ctx.device.type)
                model_cfg = trainer.resolve_model_config(cfg.model, vocab)
                if model_cfg != spec.model_config():
                    raise RunError(f"run {spec.run_id}: engine model config {model_cfg} != planned {spec.model_config()}")
                run_dir = Path(cfg.run_dir)
                resumed_from = _resume_step(run_dir)
                if ctx.is_main:
                    say(f"[{i}/{len(todo)}] {spec.run_id}: d={spec.width} L={spec.layers} B={spec.batch} "
                        f"steps={spec.steps} lr={spec.lr:.4g} N={spec.params:.3e}"
                        + (f" (resuming from step {resumed_from})" if resumed_from else ""))
                t0 = time.perf_counter()
                status, val = STATUS_OK, None
                try:
                    result = trainer.train(cfg)
                    val = result.val
                except trainer.NonFiniteLossError as e:
                    status = STATUS_DIVERGED
                    if ctx.is_main:
                        say(f"  {spec.run_id} diverged: {e}")
                wall = time.perf_counter() - t0
                if status == STATUS_OK and val is None:
                    # The run had already reached its last step before this invocation.
                    val = D.broadcast_object(_final_val_from_metrics(run_dir, spec.steps) if ctx.is_main else None)
                    if val is None:
                        val = _evaluate_checkpoint(cfg, ctx, vocab)
                if ctx.is_main:
                    row = result_row(spec, cfg, val, status, _last_train_loss(run_dir), wall, resumed_from,
                                     ctx.world_size, str(ctx.device), fingerprint)
                    append_row(settings.results, row)
                    if not settings.keep_checkpoints:
                        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
                    say(f"  {spec.run_id}: val loss {row['loss']:.4f} "
                        + " ".join(f"{t} {row[f'loss_{t}']:.3f}" for t in TOKEN_TYPES if row[f"loss_{t}"] is not None)
                        + f" ({wall:.1f} s)")
                D.barrier()
                (outcome.diverged if status == STATUS_DIVERGED else outcome.trained).append(spec.run_id)
        bar.close()
        return outcome
    finally:
        D.teardown(ctx)


def _claim_run(runs_dir: Path, run_id: str):
    """An open file holding an exclusive lock on RUNS_DIR/RUN_ID.claim, or None if another process holds it.
    The lock lasts while the file is open and dies with its process, so a crash never strands a run."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    return try_exclusive_lock(runs_dir / f"{run_id}.claim")  # the caller closes it (releasing the lock)


def default_paths(plan_path: str | Path) -> tuple[Path, Path]:
    """(results CSV, runs directory) next to the plan."""
    p = Path(plan_path)
    base = p if p.is_dir() else p.parent
    return base / "results.csv", base / "runs"
