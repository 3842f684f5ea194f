"""The training loop: packed mixture -> FSDP2 Qwen3 -> Cautious AdamW, with exact resume.

`train(cfg)` is the whole pre-training job (what `sodakit train` runs). Supervised fine-tuning reuses it
by passing its own `source` (any object with `vocab`, `next_batch(n)`, `state_dict()`,
`load_state_dict(d)`) whose batches carry a `loss_mask`, and `model.init_from` for the starting weights.

Batches: {"tokens": [B, L+1] int64, optional "segment_ids": [B, L+1], optional "loss_mask": [B, L+1]};
inputs = tokens[:, :-1], targets = tokens[:, 1:], and loss_mask[:, t] = 0 removes token t as a target
(so loss_mask[:, 0] is unused).

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from sodakit.config import from_dict, save_config, to_dict
from sodakit.errors import UserError
from sodakit.model.config import PRESETS, ModelConfig, train_flops_per_token
from sodakit.model.load import CheckpointError, read_pretrained
from sodakit.model.qwen3 import Qwen3, build_model
from sodakit.tokens.vocab import Vocab
from sodakit.train import checkpoint as C
from sodakit.train import distributed as D
from sodakit.train.config import ModelSpec, TrainConfig, validate_train_config
from sodakit.train.metrics import (
    TOKEN_TYPES,
    MetricsWriter,
    device_peak_flops,
    peak_memory_bytes,
    token_type_sums,
    type_losses,
)
from sodakit.train.optim import DTensor, build_optimizer
from sodakit.train.schedule import lr_multiplier, rule_width, soda_peak_lr

EXIT_DIVERGED = 3  # the command line's exit code for a run stopped by a NaN/Inf


class NonFiniteLossError(UserError, RuntimeError):
    """The loss or gradient norm became NaN/Inf; the run stopped before applying the update."""

    exit_code = EXIT_DIVERGED


class BatchSource(Protocol):
    vocab: Vocab

    def next_batch(self, batch_size: int) -> dict[str, Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float | None
    last_checkpoint: Path | None
    metrics_path: Path
    val: dict[str, float] | None = None
    rank: int = 0


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


def build_source(cfg: TrainConfig, ctx: D.DistContext) -> BatchSource:
    from sodakit.data.loader import MixtureLoader

    if not cfg.data.sources:
        raise ValueError("data.sources is empty: give at least one packed dataset, e.g. "
                         "'data.sources=[{path: data/packed, weight: 1.0}]'")
    return MixtureLoader(
        sources=[(s.path, s.weight) for s in cfg.data.sources],
        seq_len=cfg.data.seq_len,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        return_segment_ids=cfg.data.document_masking,
    )


def source_metadata(source: BatchSource, cfg: TrainConfig) -> tuple[dict | None, str | None]:
    """(codec info, tokenizer.json path) recorded with the data, for the checkpoint sidecar."""
    meta = {}
    datasets = getattr(source, "datasets", None)
    if datasets:
        meta = getattr(datasets[0], "metadata", {}) or {}
    codec = meta.get("codec") or getattr(source, "codec", None)
    tok = cfg.data.tokenizer or (meta.get("tokenizer") or {}).get("path") or getattr(source, "tokenizer", None)
    if tok:
        p = Path(tok)
        p = p / "tokenizer.json" if p.is_dir() else p
        tok = str(p) if p.is_file() else None
        if tok is None and cfg.data.tokenizer:
            raise FileNotFoundError(f"data.tokenizer={cfg.data.tokenizer}: no tokenizer.json there")
    return codec, tok


def val_batches(cfg: TrainConfig, ctx: D.DistContext, vocab: Vocab) -> list[tuple[dict[str, Tensor], float]]:
    """This rank's held-out batches with a weight (0 marks padding slots so every rank runs as many)."""
    if not cfg.data.val_path:
        return []
    from sodakit.data.loader import sequential_batches

    every = list(
        sequential_batches(
            cfg.data.val_path,
            cfg.data.seq_len,
            cfg.micro_batch,
            max_batches=cfg.data.val_batches * ctx.world_size,
            expected_vocab=vocab,
            return_segment_ids=cfg.data.document_masking,
        )
    )
    slots = math.ceil(len(every) / ctx.world_size) * ctx.world_size
    return [(every[i % len(every)], 1.0 if i < len(every) else 0.0) for i in range(ctx.rank, slots, ctx.world_size)]


def split_batch(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor | None]:
    tokens = batch["tokens"].to(device, non_blocking=True)
    out: dict[str, Tensor | None] = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": None}
    if "segment_ids" in batch:
        out["segment_ids"] = batch["segment_ids"][:, :-1].to(device)
    mask = batch.get("loss_mask")
    if mask is not None:
        if mask.shape != tokens.shape:
            raise ValueError(f"batch loss_mask shape {tuple(mask.shape)} != tokens shape {tuple(tokens.shape)}")
        out["weights"] = mask[:, 1:].to(device=device, dtype=torch.float32)
    else:
        out["weights"] = torch.ones(out["targets"].shape, device=device, dtype=torch.float32)
    return out


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


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


@torch.no_grad()
def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Global L2 norm of the (sharded) gradients, then scale them down to max_norm (0: no clipping)."""
    grads = [_local(p.grad) for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    sq = torch.stack(torch._foreach_norm(grads)).float().square().sum()
    D.all_reduce_sum(sq)
    norm = sq.sqrt()
    if max_norm > 0:
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, coef.to(grads[0].dtype))
    return norm


def evaluate(
    model: nn.Module, batches: list[tuple[dict[str, Tensor], float]], vocab: Vocab, ctx: D.DistContext
) -> dict[str, float]:
    """Validation NLL over all scored tokens and per token type (collective)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(2 + 2 * len(TOKEN_TYPES), device=ctx.device)
    with torch.no_grad():
        for batch, weight in batches:
            b = split_batch(batch, ctx.device)
            w = b["weights"] * weight
            out = model(b["inputs"], b["targets"], loss_mask=w, segment_ids=b["segment_ids"])
            sums[0] += out.ce_sum.float()
            sums[1] += out.num_tokens.float()
            sums[2:] += token_type_sums(out.token_nll, b["targets"], w, vocab)
    D.all_reduce_sum(sums)
    model.train(was_training)
    vals = sums.tolist()
    res = {"val_loss": vals[0] / max(vals[1], 1.0)}
    res.update(type_losses(sums[2:], prefix="val_loss"))
    return res


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------
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
        from sodakit.train.cpu import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        with C.run_directory(Path(cfg.run_dir), ctx):
            return _train(cfg, ctx, source, on_step)
    finally:
        D.teardown(ctx)


def _train(
    cfg: TrainConfig,
    ctx: D.DistContext,
    source: BatchSource | None,
    on_step: Callable[[int, dict[str, Any]], None] | None,
) -> TrainResult:
    run_dir = Path(cfg.run_dir)
    # The global generators (torch incl. CUDA, Python's random) start from the config's seed, so the RNG
    # state a checkpoint saves is a function of the config and the step: an uninterrupted run and a
    # resumed one save the same state (torch otherwise seeds itself differently in every process).
    torch.manual_seed(cfg.seed + ctx.rank)
    random.seed(cfg.seed + ctx.rank)
    per_step = cfg.micro_batch * ctx.world_size
    if cfg.global_batch % per_step:
        raise ValueError(
            f"global_batch {cfg.global_batch} is not a multiple of micro_batch x world_size = "
            f"{cfg.micro_batch} x {ctx.world_size}"
        )
    accum = cfg.global_batch // per_step
    source = source or build_source(cfg, ctx)
    vocab = source.vocab
    codec, tokenizer = source_metadata(source, cfg)

    # ---- model config, resume target ----
    pretrained_sd = None
    if cfg.model.init_from:
        if cfg.model.overrides:
            raise ValueError("model.overrides cannot be combined with model.init_from (the weights fix the shape)")
        # Rank 0 reads the weights; every rank gets the config, or the error, so none waits forever.
        payload: dict[str, Any] | None = None
        if ctx.is_main:
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
        model_cfg = from_dict(ModelConfig, payload["model"])
    else:
        model_cfg = resolve_model_config(cfg.model, vocab)
    if cfg.data.seq_len > model_cfg.max_seq_len:
        raise ValueError(
            f"data.seq_len {cfg.data.seq_len} exceeds the model's max_seq_len {model_cfg.max_seq_len} "
            f"(raise it with model.overrides.max_seq_len=..., which also goes into the exported config)"
        )
    choice = C.choose_resume(run_dir, cfg.checkpoint.resume, ctx)
    resume = choice.path
    state = C.check_compatible(resume, model_cfg, vocab, ctx.world_size) if resume is not None else None

    # ---- model, optimizer ----
    bf16 = cfg.precision == "bf16"
    model: Qwen3 = build_model(model_cfg, ctx.device, seed=cfg.seed)
    model.activation_checkpointing = cfg.activation_checkpointing
    model.ce_chunk_elements = cfg.ce_chunk_elements
    D.shard_model(model, ctx, bf16=bf16, compile_blocks=cfg.compile)
    if cfg.model.init_from and state is None:  # (a resume restores the weights from its checkpoint)
        C.load_weights(model, pretrained_sd or {}, ctx)
    del pretrained_sd
    width = rule_width(cfg.model.preset if not cfg.model.init_from else "", model_cfg.d_model, cfg.optim.lr_rule_width)
    peak_lr = cfg.optim.lr if cfg.optim.lr is not None else soda_peak_lr(cfg.global_batch, width)
    optimizer = build_optimizer(model, cfg.optim, peak_lr)
    start_step = 0
    if resume is not None:
        assert state is not None
        loader_state = C.load_checkpoint(resume, model, optimizer, state, ctx)
        source.load_state_dict(loader_state)
        start_step = int(state["step"])
    for group in optimizer.param_groups:
        group["max_lr"] = peak_lr

    # ---- observability ----
    seq_len = cfg.data.seq_len
    flops_per_token = train_flops_per_token(model_cfg, seq_len, "soda")
    compute_dtype = torch.bfloat16 if bf16 else torch.float32
    peak_flops, peak_source = device_peak_flops(ctx.device, compute_dtype)
    writer = None
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        writer = MetricsWriter(run_dir, cfg.log.tensorboard, start_step if resume is not None else None)
        writer.write(
            {
                "step": start_step,
                "event": "resume" if resume is not None else "start",
                "checkpoint": str(resume) if resume else None,
                "skipped_checkpoints": choice.skipped or None,
                "config_changes": _config_changes(state["config"], to_dict(cfg)) if state else None,
                "world_size": ctx.world_size,
                "device": str(ctx.device),
                "peak_lr": peak_lr,
                "accumulation": accum,
                "flops_per_token": flops_per_token,
                "peak_flops_per_device": peak_flops,
                "peak_flops_source": peak_source,
                "params": sum(p.numel() for p in model.parameters()),
            }
        )
    val_data = val_batches(cfg, ctx, vocab)
    save_info = C.SaveInfo(vocab=vocab, codec=codec, tokenizer=tokenizer, config=to_dict(cfg))
    bar = None
    if ctx.is_main and cfg.log.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start_step, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)

    tokens_per_step = cfg.global_batch * seq_len
    local_tokens_per_micro = cfg.micro_batch * seq_len
    window_tokens = 0  # input positions this rank processed since the last log (real ones when a source pads)
    last_ckpt = resume
    last_loss = None
    val_result = None
    window_t0, window_steps = time.perf_counter(), 0
    model.train()
    try:
        for step in range(start_step, cfg.steps):
            lr = peak_lr * lr_multiplier(step, cfg.steps, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loader_before = source.state_dict()
            raw = [source.next_batch(cfg.micro_batch) for _ in range(accum)]
            # Sources that pad (fine-tuning) say how many positions are real; packed data has no padding.
            window_tokens += sum(int(r["real_tokens"]) if "real_tokens" in r else local_tokens_per_micro for r in raw)
            micro = [split_batch(r, ctx.device) for r in raw]
            n_scored = torch.stack([m["weights"].sum() for m in micro]).sum()
            D.all_reduce_sum(n_scored)
            normalizer = n_scored.clamp_min(1.0) / ctx.world_size
            done = step + 1
            log_now = done % cfg.log.every == 0 or done == cfg.steps
            stats = torch.zeros(1 + 2 * len(TOKEN_TYPES), device=ctx.device)  # z, per-type: on log steps
            ce_total = torch.zeros((), device=ctx.device)
            finite = []
            for m in micro:
                out = model(
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
                if log_now:
                    stats[0] += out.z_sum.float()
                    stats[1:] += token_type_sums(out.token_nll, m["targets"], m["weights"], vocab)
            bad_local = ~torch.stack(finite)
            head = torch.stack([ce_total, bad_local.sum().float()])
            D.all_reduce_sum(head)
            grad_norm = clip_grad_norm(model.parameters(), cfg.optim.grad_clip)
            # The one host-device synchronisation of a step: is the update safe to apply?
            ce_sum, n_bad, gnorm, n_tok = torch.cat(
                [head, grad_norm.reshape(1).float(), n_scored.reshape(1).float()]
            ).tolist()
            if n_bad > 0 or not math.isfinite(gnorm):
                bad_micro = bad_local.nonzero().flatten().tolist()
                reports = D.all_gather_object({"rank": ctx.rank, "micro_batches": bad_micro})
                where = "; ".join(f"rank {r['rank']} micro-batch(es) {r['micro_batches']}" for r in reports if r["micro_batches"])
                what = f"loss at {where}" if where else f"gradient norm ({gnorm})"
                raise NonFiniteLossError(
                    f"non-finite {what} at step {done} (lr {lr:.3g}); the batch is the one after loader "
                    f"state {loader_before}; the update was not applied. Last good checkpoint: "
                    f"{last_ckpt if last_ckpt else 'none'}"
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window_steps += 1
            n_tok = max(n_tok, 1.0)
            last_loss = ce_sum / n_tok
            if bar is not None:
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
            record: dict[str, Any] | None = None
            if log_now:
                if ctx.device.type == "cuda":
                    torch.cuda.synchronize(ctx.device)
                elapsed = time.perf_counter() - window_t0
                counted = torch.tensor(float(window_tokens), device=ctx.device)
                D.all_reduce_sum(counted)
                tps = counted.item() / max(elapsed, 1e-9)
                D.all_reduce_sum(stats)
                s = stats.tolist()
                record = {
                    "step": done,
                    "loss": last_loss,
                    "z_loss": cfg.optim.z_loss * s[0] / n_tok,  # its contribution to the loss
                    "logz_sq": s[0] / n_tok,  # mean squared log-partition (what z-loss pushes to 0)
                    **type_losses(stats[1:]),
                    "lr": lr,
                    "grad_norm": gnorm,
                    "tokens": done * tokens_per_step,
                    "tokens_per_s": tps,
                    "mfu": tps * flops_per_token / (peak_flops * ctx.world_size),
                    "peak_mem_gb": peak_memory_bytes(ctx.device) / 2**30,
                    "step_time_s": elapsed / window_steps,
                }
                window_t0, window_steps, window_tokens = time.perf_counter(), 0, 0
            if val_data and ((cfg.log.val_every and done % cfg.log.val_every == 0) or done == cfg.steps):
                t_val = time.perf_counter()
                val_result = evaluate(model, val_data, vocab, ctx)
                window_t0 += time.perf_counter() - t_val  # validation is not training time
                record = {**(record or {"step": done}), **val_result}
            if record is not None and writer is not None:
                writer.write(record)
            if on_step is not None:
                on_step(done, record or {"step": done, "loss": last_loss})
            if done % cfg.checkpoint.every == 0 or done == cfg.steps:
                t_ckpt = time.perf_counter()
                path = C.save_checkpoint(
                    run_dir,
                    done,
                    done * tokens_per_step,
                    model,
                    optimizer,
                    model_cfg,
                    source.state_dict(),
                    save_info,
                    cfg.checkpoint.keep_last,
                    ctx,
                )
                last_ckpt = path or last_ckpt
                # Checkpoint time is not training time; the window keeps its steps and tokens.
                window_t0 += time.perf_counter() - t_ckpt
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    return TrainResult(run_dir, cfg.steps, last_loss, last_ckpt, run_dir / "metrics.jsonl", val_result, ctx.rank)
