"""The training loop: packed mixture -> FSDP2 Qwen3 -> Cautious AdamW, with exact resume.

`train(cfg)` is the whole pre-training job (what `sodakit train` runs): it takes the run directory's
lock and runs a `Trainer`. Supervised fine-tuning reuses it by passing its own `source` (any
`BatchSource`, see batches.py) whose batches carry a `loss_mask`, and `model.init_from` for the
starting weights.

`Trainer` builds everything in `__init__` (model shape, resume point, sharded model, optimizer, loggers)
and `Trainer.train()` runs the steps: `train_step`, then on their schedules a metrics record,
`validate` and `save_checkpoint`.

One optimizer step = `accum` micro-batches per rank. The loss of every micro-batch is its token-loss
sum divided by (global number of scored tokens / world size) and FSDP averages gradients over ranks,
so the gradient is the mean over every scored token of the global batch, whatever the split into
ranks and micro-batches.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sodakit.config import from_dict, save_config, to_dict
from sodakit.errors import UserError
from sodakit.model.config import PRESETS, ModelConfig, train_flops_per_token
from sodakit.model.load import CheckpointError, read_pretrained
from sodakit.model.qwen3 import Qwen3, build_model
from sodakit.progress import Progress
from sodakit.tokens.vocab import Vocab
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.batches import BatchSource, build_source, source_metadata, split_batch
from sodakit.train.config import ModelSpec, TrainConfig, validate_train_config
from sodakit.train.cpu import tune_cpu_allocator
from sodakit.train.full_state import load_full_weights
from sodakit.train.metrics import (
    TOKEN_TYPES,
    MetricsWriter,
    ThroughputWindow,
    device_peak_flops,
    peak_memory_bytes,
    token_type_sums,
    type_losses,
)
from sodakit.train.optim import build_optimizer, clip_grad_norm
from sodakit.train.schedule import lr_multiplier, rule_width, soda_peak_lr
from sodakit.train.validation import val_batches, validation_losses

EXIT_DIVERGED = 3  # the command line's exit code for a run stopped by a NaN/Inf


class NonFiniteLossError(UserError, RuntimeError):
    """The loss or gradient norm became NaN/Inf; the run stopped before applying the update."""

    exit_code = EXIT_DIVERGED


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float | None
    last_checkpoint: Path | None
    metrics_path: Path
    val: dict[str, float] | None = None
    rank: int = 0


@dataclass
class StepResult:
    """What one optimizer step measured."""

    step: int  # steps done, this one included
    loss: float  # mean cross-entropy over the global batch's scored tokens
    grad_norm: float  # before clipping
    lr: float
    scored_tokens: float  # scored targets in the global batch (at least 1)
    input_tokens: int  # input positions this rank processed (the real ones when a source pads)
    # This rank's [z-loss sum, (nll sum, count) per token type]; only when the step was asked for them.
    type_sums: Tensor | None = None


# ---------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------
def resolve_model_config(spec: ModelSpec, vocab: Vocab) -> ModelConfig:
    """Preset + overrides; the vocabulary size defaults to the data's layout."""
    if spec.preset not in PRESETS:
        raise ValueError(f"model.preset {spec.preset!r} unknown; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(spec.overrides) - fields)
    if unknown:
        raise ValueError(f"model.overrides: unknown ModelConfig fields {unknown}; known: {sorted(fields)}")
    overrides = dict(spec.overrides)
    overrides.setdefault("vocab_size", vocab.size)
    cfg = PRESETS[spec.preset].replace(**overrides)
    if cfg.vocab_size < vocab.size:
        raise ValueError(f"model vocab_size {cfg.vocab_size} is smaller than the data's vocabulary ({vocab.size} ids)")
    return cfg


def _config_changes(old: dict, new: dict, prefix: str = "") -> dict[str, list]:
    """Leaves that differ between the checkpoint's config and this run's: {key: [then, now]}."""
    out: dict[str, list] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_config_changes(a, b, f"{prefix}{key}."))
        elif a != b and f"{prefix}{key}" != "checkpoint.resume":
            out[f"{prefix}{key}"] = [a, b]
    return out


# ---------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------
class Trainer:
    """One rank's share of a training job. Every rank of a torchrun job builds one and calls `train()`;
    the methods marked collective must run on every rank in the same order."""

    def __init__(
        self,
        cfg: TrainConfig,
        ctx: D.DistContext,
        source: BatchSource | None = None,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg, self.ctx, self.on_step = cfg, ctx, on_step
        self.run_dir = Path(cfg.run_dir)
        self.seed_rngs()
        self.source = source or build_source(cfg, ctx)
        self.vocab = self.source.vocab
        codec, tokenizer = source_metadata(self.source, cfg)

        self.model_cfg, pretrained_sd = self.build_model_config()
        choice = C.choose_resume(self.run_dir, cfg.checkpoint.resume, ctx)
        self.resume_from = choice.path
        resume_state = (
            C.check_compatible(self.resume_from, self.model_cfg, self.vocab) if self.resume_from is not None else None
        )
        self.accum = self.accumulation_steps(resume_state)
        self.model = self.build_model(pretrained_sd if resume_state is None else None)
        del pretrained_sd
        self.peak_lr = self.peak_learning_rate()
        self.optimizer = build_optimizer(self.model, cfg.optim, self.peak_lr)
        self.start_step = self.maybe_resume(resume_state)
        for group in self.optimizer.param_groups:
            group["max_lr"] = self.peak_lr

        self.flops_per_token = train_flops_per_token(self.model_cfg, cfg.data.seq_len, "soda")
        compute_dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
        self.peak_flops, peak_source = device_peak_flops(ctx.device, compute_dtype)
        self.writer = self.build_metrics_writer()
        self.log_start(choice.skipped, resume_state, peak_source)
        self.val_data = val_batches(cfg, ctx, self.vocab)
        self.save_info = C.SaveInfo(vocab=self.vocab, codec=codec, tokenizer=tokenizer, config=to_dict(cfg))
        self.checkpointer = C.Checkpointer(self.run_dir, cfg.checkpoint, ctx, on_commit=self.checkpoint_committed)
        self.bar = self.build_progress_bar()

        self.last_checkpoint = self.resume_from
        self.last_loss: float | None = None
        self.last_val: dict[str, float] | None = None

    # ---- setup ------------------------------------------------------------------------------------
    def seed_rngs(self) -> None:
        # The global generators (torch incl. CUDA, Python's random) start from the config's seed, so the RNG
        # state a checkpoint saves is a function of the config and the step: an uninterrupted run and a
        # resumed one save the same state (torch otherwise seeds itself differently in every process).
        torch.manual_seed(self.cfg.seed + self.ctx.rank)
        random.seed(self.cfg.seed + self.ctx.rank)

    def accumulation_steps(self, resume_state: dict[str, Any] | None = None) -> int:
        """Micro-batches per rank in one optimizer step."""
        per_step = self.cfg.micro_batch * self.ctx.world_size
        if self.cfg.global_batch % per_step:
            saved = resume_state["world_size"] if resume_state else self.ctx.world_size
            hint = (f"; resuming {self.resume_from} (written by {saved} ranks) on {self.ctx.world_size} keeps the "
                    f"global batch, so choose a micro_batch that divides {self.cfg.global_batch} / {self.ctx.world_size}, "
                    f"or a world size that divides {self.cfg.global_batch} / {self.cfg.micro_batch}"
                    if saved != self.ctx.world_size else "")
            raise ValueError(
                f"global_batch {self.cfg.global_batch} is not a multiple of micro_batch x world_size = "
                f"{self.cfg.micro_batch} x {self.ctx.world_size}{hint}"
            )
        return self.cfg.global_batch // per_step

    def build_model_config(self) -> tuple[ModelConfig, dict[str, Tensor] | None]:
        """The model's shape, and on rank 0 the starting weights of `model.init_from` (collective)."""
        cfg = self.cfg
        if not cfg.model.init_from:
            model_cfg = resolve_model_config(cfg.model, self.vocab)
            pretrained_sd = None
        else:
            model_cfg, pretrained_sd = self.read_init_from()
        if cfg.data.seq_len > model_cfg.max_seq_len:
            raise ValueError(
                f"data.seq_len {cfg.data.seq_len} exceeds the model's max_seq_len {model_cfg.max_seq_len} "
                f"(raise it with model.overrides.max_seq_len=..., which also goes into the exported config)"
            )
        return model_cfg, pretrained_sd

    def read_init_from(self) -> tuple[ModelConfig, dict[str, Tensor] | None]:
        """Rank 0 reads the weights; every rank gets the config, or the error, so none waits forever."""
        cfg, vocab = self.cfg, self.vocab
        if cfg.model.overrides:
            raise ValueError("model.overrides cannot be combined with model.init_from (the weights fix the shape)")
        pretrained_sd = None
        payload: dict[str, Any] | None = None
        if self.ctx.is_main:
            try:
                pretrained_sd, info = read_pretrained(cfg.model.init_from)
                for note in info.notes:
                    print(f"sodakit train: model.init_from: {note}", file=sys.stderr)
                if info.vocab is not None and info.vocab.fingerprint != vocab.fingerprint:
                    raise CheckpointError(
                        f"model.init_from={cfg.model.init_from}: its vocabulary layout {info.vocab.fingerprint} "
                        f"differs from the data's {vocab.fingerprint}"
                    )
                if info.model_config.vocab_size < vocab.size:
                    raise CheckpointError(
                        f"model.init_from: vocab_size {info.model_config.vocab_size} < data vocabulary {vocab.size}"
                    )
                payload = {"model": to_dict(info.model_config)}
            except (OSError, ValueError) as e:
                payload = {"error": f"{type(e).__name__}: {e}"}
        payload = D.broadcast_object(payload)
        assert payload is not None
        if "error" in payload:
            raise CheckpointError(f"model.init_from={cfg.model.init_from}: {payload['error']}")
        return from_dict(ModelConfig, payload["model"]), pretrained_sd

    def build_model(self, init_weights: dict[str, Tensor] | None) -> Qwen3:
        """The model, sharded with FSDP2; `init_weights` (rank 0's `model.init_from`, none on a resume,
        which restores the weights from its checkpoint) loaded into it (collective)."""
        cfg = self.cfg
        model = build_model(self.model_cfg, self.ctx.device, seed=cfg.seed)
        model.activation_checkpointing = cfg.activation_checkpointing
        model.ce_chunk_elements = cfg.ce_chunk_elements
        D.shard_model(model, self.ctx, bf16=cfg.precision == "bf16", compile_blocks=cfg.compile)
        if cfg.model.init_from and self.resume_from is None:
            load_full_weights(model, init_weights or {}, self.ctx)
        return model

    def peak_learning_rate(self) -> float:
        """optim.lr, else SODA's rule for the global batch and the model's width."""
        cfg = self.cfg
        width = rule_width(cfg.model.preset if not cfg.model.init_from else "", self.model_cfg.d_model,
                           cfg.optim.lr_rule_width)
        return cfg.optim.lr if cfg.optim.lr is not None else soda_peak_lr(cfg.global_batch, width)

    def maybe_resume(self, state: dict[str, Any] | None) -> int:
        """Restore model, optimizer, loader and RNG state from the resume checkpoint; the step to start at."""
        if self.resume_from is None:
            return 0
        assert state is not None
        loader_state = C.load_checkpoint(self.resume_from, self.model, self.optimizer, state, self.ctx)
        self.source.load_state_dict(loader_state)
        return int(state["step"])

    def build_metrics_writer(self) -> MetricsWriter | None:
        """Rank 0: the run's config.yaml, and metrics.jsonl (+ TensorBoard) cut back to the resume step."""
        if not self.ctx.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.yaml")
        resumed = self.start_step if self.resume_from is not None else None
        return MetricsWriter(self.run_dir, self.cfg.log.tensorboard, resumed)

    def log_start(self, skipped: list[str], resume_state: dict[str, Any] | None, peak_source: str) -> None:
        if self.writer is None:
            return
        resume = self.resume_from
        self.writer.write(
            {
                "step": self.start_step,
                "event": "resume" if resume is not None else "start",
                "checkpoint": str(resume) if resume else None,
                "skipped_checkpoints": skipped or None,
                "config_changes": _config_changes(resume_state["config"], to_dict(self.cfg)) if resume_state else None,
                "world_size": self.ctx.world_size,
                "resized_from": (resume_state["world_size"]
                                 if resume_state and resume_state["world_size"] != self.ctx.world_size else None),
                "device": str(self.ctx.device),
                "peak_lr": self.peak_lr,
                "accumulation": self.accum,
                "flops_per_token": self.flops_per_token,
                "peak_flops_per_device": self.peak_flops,
                "peak_flops_source": peak_source,
                "params": sum(p.numel() for p in self.model.parameters()),
            }
        )

    def build_progress_bar(self) -> Progress | None:
        """Rank 0's progress: a bar on a terminal, a status line every so often in a log (sodakit.progress)."""
        if not self.ctx.is_main:
            return None
        bar = Progress("train", total=self.cfg.steps, initial=self.start_step, unit="step",
                       quiet=self.cfg.quiet or not self.cfg.log.progress)
        what = f"resuming at step {self.start_step} of {self.cfg.steps}" if self.start_step else f"{self.cfg.steps} steps"
        bar.write(f"train: {sum(p.numel() for p in self.model.parameters()):,} parameters on {self.ctx.device} "
                  f"(device={self.cfg.device}, {self.ctx.world_size} rank(s), {self.cfg.precision}), {what}")
        return bar

    # ---- the loop ---------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run the remaining steps (collective); the result of the job."""
        cfg = self.cfg
        window = ThroughputWindow()
        self.model.train()
        try:
            for step in range(self.start_step, cfg.steps):
                done = step + 1
                log_now = done % cfg.log.every == 0 or done == cfg.steps
                result = self.train_step(step, with_type_sums=log_now)
                window.add(result.input_tokens)
                window.step_done()
                self.last_loss = result.loss
                self.update_progress(result)
                record = self.step_record(result, window) if log_now else None
                if self.val_data and ((cfg.log.val_every and done % cfg.log.val_every == 0) or done == cfg.steps):
                    with window.paused():  # validation is not training time
                        self.last_val = self.validate()
                    self.log_validation(done, self.last_val)
                    record = {**(record or {"step": done}), **self.last_val}
                if record is not None and self.writer is not None:
                    self.writer.write(record)
                if self.on_step is not None:
                    self.on_step(done, record or {"step": done, "loss": result.loss})
                if done % cfg.checkpoint.every == 0 or done == cfg.steps:
                    with window.paused():  # nor is checkpoint writing
                        self.save_checkpoint(done)
        finally:
            self.close()
        return TrainResult(self.run_dir, cfg.steps, self.last_loss, self.last_checkpoint,
                           self.run_dir / "metrics.jsonl", self.last_val, self.ctx.rank)

    def train_step(self, step: int, with_type_sums: bool = False) -> StepResult:
        """One optimizer step on the next global batch (collective). Raises NonFiniteLossError, before
        the update touches the weights, when the loss or the gradient norm is NaN/Inf on any rank."""
        cfg, ctx = self.cfg, self.ctx
        lr = self.peak_lr * lr_multiplier(step, cfg.steps, cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loader_before = self.source.state_dict()
        raw = [self.source.next_batch(cfg.micro_batch) for _ in range(self.accum)]
        # Sources that pad (fine-tuning) say how many positions are real; packed data has no padding.
        input_tokens = sum(int(r["real_tokens"]) if "real_tokens" in r else cfg.micro_batch * cfg.data.seq_len
                           for r in raw)
        micro = [split_batch(r, ctx.device) for r in raw]
        n_scored = torch.stack([m["weights"].sum() for m in micro]).sum()
        D.all_reduce_sum(n_scored)
        normalizer = n_scored.clamp_min(1.0) / ctx.world_size
        type_sums = torch.zeros(1 + 2 * len(TOKEN_TYPES), device=ctx.device)  # z, per-type: on log steps
        ce_total = torch.zeros((), device=ctx.device)
        finite = []
        for m in micro:
            out = self.model(
                m["inputs"],
                m["targets"],
                loss_mask=m["weights"],
                z_loss_weight=cfg.optim.z_loss,
                normalizer=normalizer,
                segment_ids=m["segment_ids"],
            )
            finite.append(torch.isfinite(out.loss))
            # Backward even through a non-finite loss: every rank must run the same collectives.
            # The step is abandoned below before the update touches the weights.
            out.loss.backward()
            ce_total += out.ce_sum.float()
            if with_type_sums:
                type_sums[0] += out.z_sum.float()
                type_sums[1:] += token_type_sums(out.token_nll, m["targets"], m["weights"], self.vocab)
        bad_local = ~torch.stack(finite)
        head = torch.stack([ce_total, bad_local.sum().float()])
        D.all_reduce_sum(head)
        grad_norm = clip_grad_norm(self.model.parameters(), cfg.optim.grad_clip)
        # The one host-device synchronisation of a step: is the update safe to apply?
        ce_sum, n_bad, gnorm, n_tok = torch.cat(
            [head, grad_norm.reshape(1).float(), n_scored.reshape(1).float()]
        ).tolist()
        if n_bad > 0 or not math.isfinite(gnorm):
            self.raise_non_finite(step + 1, lr, gnorm, bad_local, loader_before)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        n_tok = max(n_tok, 1.0)
        return StepResult(step=step + 1, loss=ce_sum / n_tok, grad_norm=gnorm, lr=lr, scored_tokens=n_tok,
                          input_tokens=input_tokens, type_sums=type_sums if with_type_sums else None)

    def raise_non_finite(self, done: int, lr: float, gnorm: float, bad_local: Tensor, loader_before: dict) -> None:
        """Name the ranks and micro-batches whose loss was not finite (collective), then stop the run."""
        bad_micro = bad_local.nonzero().flatten().tolist()
        reports = D.all_gather_object({"rank": self.ctx.rank, "micro_batches": bad_micro})
        where = "; ".join(f"rank {r['rank']} micro-batch(es) {r['micro_batches']}" for r in reports if r["micro_batches"])
        what = f"loss at {where}" if where else f"gradient norm ({gnorm})"
        raise NonFiniteLossError(
            f"non-finite {what} at step {done} (lr {lr:.3g}); the batch is the one after loader "
            f"state {loader_before}; the update was not applied. Last good checkpoint: "
            f"{self.last_checkpoint if self.last_checkpoint else 'none'}"
        )

    # ---- logging, validation, checkpoints -----------------------------------------------------------
    def update_progress(self, result: StepResult) -> None:
        if self.bar is not None:
            self.bar.update(1, loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}")

    def log_validation(self, step: int, val: dict[str, float]) -> None:
        """The validation losses as one console line (also when quiet: they are results, not progress)."""
        if self.bar is not None:
            per_type = ", ".join(f"{k.removeprefix('val_loss_')} {v:.4f}" for k, v in val.items() if k != "val_loss")
            self.bar.write(f"train: step {step} validation loss {val['val_loss']:.4f}"
                           + (f" ({per_type})" if per_type else ""))

    def step_record(self, result: StepResult, window: ThroughputWindow) -> dict[str, Any]:
        """The metrics record of a log step: loss per token type, throughput and MFU since the last
        record (collective); starts a new throughput window."""
        ctx = self.ctx
        assert result.type_sums is not None, "a log step collects its per-type sums"
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        elapsed = window.elapsed()
        counted = torch.tensor(float(window.tokens), device=ctx.device)
        D.all_reduce_sum(counted)
        tps = counted.item() / max(elapsed, 1e-9)
        stats = result.type_sums
        D.all_reduce_sum(stats)
        z_sum, n_tok = stats[0].item(), result.scored_tokens
        record = {
            "step": result.step,
            "loss": result.loss,
            "z_loss": self.cfg.optim.z_loss * z_sum / n_tok,  # its contribution to the loss
            "logz_sq": z_sum / n_tok,  # mean squared log-partition (what z-loss pushes to 0)
            **type_losses(stats[1:]),
            "lr": result.lr,
            "grad_norm": result.grad_norm,
            "tokens": result.step * self.cfg.global_batch * self.cfg.data.seq_len,
            "tokens_per_s": tps,
            "mfu": tps * self.flops_per_token / (self.peak_flops * ctx.world_size),
            "peak_mem_gb": peak_memory_bytes(ctx.device) / 2**30,
            "step_time_s": elapsed / window.steps,
        }
        window.reset()
        return record

    def validate(self) -> dict[str, float]:
        """Validation losses over the held-out batches (collective)."""
        return validation_losses(self.model, self.val_data, self.vocab, self.ctx)

    def save_checkpoint(self, step: int) -> None:
        """Checkpoint `step` (collective): committed on return, or, with checkpoint.async_save, being written
        in the background (`last_checkpoint` follows once it is committed)."""
        cfg = self.cfg
        self.checkpointer.save(step, step * cfg.global_batch * cfg.data.seq_len, self.model, self.optimizer,
                               self.model_cfg, self.source.state_dict(), self.save_info)

    def checkpoint_committed(self, report: C.SaveReport) -> None:
        self.last_checkpoint = report.path
        if self.writer is not None:
            self.writer.write(report.record())

    def close(self) -> None:
        """Wait for a checkpoint still being written (collective), then close the loggers."""
        try:
            self.checkpointer.close()
        finally:
            if self.bar is not None:
                self.bar.close()
            if self.writer is not None:
                self.writer.close()


def train(
    cfg: TrainConfig,
    source: BatchSource | None = None,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Run (or resume) a training job; every rank of a torchrun job calls this."""
    if cfg.precision not in ("bf16", "fp32"):
        raise ValueError(f"precision {cfg.precision!r} unknown; choose 'bf16' or 'fp32'")
    validate_train_config(cfg)
    ctx = D.setup(cfg.device)
    if ctx.device.type == "cpu":
        tune_cpu_allocator()
    try:
        with C.run_directory(Path(cfg.run_dir), ctx):
            return Trainer(cfg, ctx, source, on_step).train()
    finally:
        D.teardown(ctx)
