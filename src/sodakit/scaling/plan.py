"""IsoFLOP sweep planner: SODA's sweep rules (docs/soda.md#isoflop-sweep), as data, applied to a list of budgets.

For every budget C and every width d on the grid, one candidate model is built and either kept or
skipped (with the reason recorded):

    width grid     d = min_width, min_width + step, ..., max_width; step = width_step_small when
                   C <= width_step_switch, else width_step_large
    layers         L = round(d / (64 + 4*log2(d) - 7)), at least 1
    heads          h = max(1, d // head_width), kv heads = h, head_dim = d // h
    FFN            4d (SwiGLU)
    batch          B = next power of two of C / (F * target_steps * seq_len)
                   F = training FLOPs per token of the candidate under the plan's convention
    LR             lr = 0.33 * sqrt(B) / d; while lr > 0.01: B //= 2 and recompute
    skip           B < 8
    steps          steps = round(C / (F * B * seq_len))       (see "Steps" below)
    skip           |F * B * seq_len * steps - C| / C > 1%, or steps > 400,000
    optimizer      beta1 0.95, beta2 = 0.98 ** (B / 128), eps 1e-15, weight decay 0.1,
                   WSD: warmup 10% of steps, linear decay over the last 20%, no z-loss
                   (recorded too, from the Marin sweep code: Cautious AdamW, grad clip 1.0, LR to 0)

Interpretation notes (where the paper is terse):

* **Budgets and conventions.** SODA's sweep code works with forward-only budgets (1e18..1e20) and the
  paper labels them x3 (3e18..3e20). Here a budget is always *training* FLOPs in the plan's
  `flop_convention` ("soda" = 3 x forward FLOPs per token, the default). Because both the budget and F
  carry the same factor 3, every ratio above (batch, steps, tolerance) is identical to the forward-only
  rules: the "soda" preset's budgets 3e18..3e20 reproduce the paper's 1e18..1e20 internal budgets.
* **Width step switch.** The published rule says "step 128 for small budgets, 256 above" without the boundary. The
  public Marin IsoFLOP sweep script that SODA's sweep builds on switches when the forward budget
  exceeds 9e18, i.e. 1e18, 3e18 and 6e18 use 128 and 1e19 and up use 256. In training FLOPs that is
  2.7e19 (paper labels 3e18, 9e18, 1.8e19 -> 128; 3e19 .. 3e20 -> 256). Why a switch at all: at large
  budgets the small widths fail the 400k-step limit, and a coarser grid keeps the number of runs per
  budget (hence cost) roughly constant.
* **Layer formula.** The constant 7 in 64 + 4*log2(d) - 7 is log2 of the smallest width (128) in the
  original code; it is kept as a fixed constant (`layer_offset`) for every preset, so the depth-width
  rule is the same function of d everywhere. Depth is clamped to >= 1 layer (only matters for d < 64).
* **Steps.** Steps are rounded to the nearest integer, so the achieved FLOPs F*B*s*steps differ from
  C by at most half a step: the 1% tolerance therefore only rejects runs with fewer than ~50 steps
  (large models at small budgets). Tokens = B * steps * seq_len exactly.
* **Step limit.** "Under 400k steps" is read as steps <= 400,000 (rejects tiny models at large budgets,
  whose LR cap forces a small batch).

The scaled-down "mini" preset keeps every rule *formula* (layers, heads = d // head_width, FFN 4d, the
batch rule, LR = 0.33 sqrt(B) / d with the 0.01 cap, beta2, the 1% tolerance, optimizer and WSD) and
changes only constants, each for a stated reason:

    knob              soda            mini           why
    budgets           3e18..3e20      1.5e12..2.4e13 16x of compute in a ~70 min sweep on one CPU core
    seq_len           4096            256            laptop-sized windows (the data's recordings are short)
    vocab_size        144,644         1540           the laptop data (512 text + 4 markers + 8 x 128 audio)
    target_steps      2^16            2^10           runs need enough optimizer steps to be limited by model
                                                     size and data, not by step count: with 2^7 (the first
                                                     mini preset) runs had 73..1413 steps and every size fell
                                                     on one loss-vs-steps curve (no interior minimum)
    min_batch         8               2              with min_batch = 2 every kept run has >= target/2 steps,
                                                     exactly like SODA's >= 2^15 (min_batch 1 would not:
                                                     next_pow2 gives 1 for any x <= 1, so steps could be tiny)
    min_width         128             48             the smallest width the LR cap admits at batch 2
                                                     (0.33 sqrt(2) / d <= 0.01 needs d >= 46.7); it lies
                                                     below the compute-optimal size of every budget
    width step        128 / 256       32 / 64        switch above 1e14 (every mini budget uses 32)
    max_width         2048            240            wider models are far right of every minimum
    head_width        128             16             every width of the grid 48 + 32k splits into whole heads
    max_steps         400,000         16,384         bounds the wall time of LR-capped small models (SODA's
                                                     limit is ~6x its target; ours 16x, so that the smallest
                                                     width stays in up to 6e12)

Depth: the layer formula gives 1 layer up to d = 112 (48 / 79.3 rounds to 1; below d ~ 40 it would round
to 0, hence the clamp to >= 1). An LR that cannot reach the cap even at batch 1 (possible only with
min_batch = 1) is a skip, never a run above the cap. Measured on the laptop data (README): the LR rule is
within 0.02 nats of the best of 0.5x..4x its value at batch 2 for d = 64 and d = 160.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sodakit.config import atomic_write_text, from_dict, to_dict
from sodakit.fileio import is_plain_file_name
from sodakit.model.config import (
    FLOP_CONVENTIONS,
    SODA_VOCAB_SIZE,
    ModelConfig,
    count_params,
    train_flops_per_token,
)

PLAN_FORMAT = "sodakit.isoflop.plan/1"


@dataclass
class SweepRules:
    """Every constant of the sweep rules; defaults are SODA's (docs/soda.md#isoflop-sweep)."""

    name: str = "soda"
    # Training FLOPs in `flop_convention` (paper labels: 3 x the forward-only internal budgets).
    budgets: list[float] = field(default_factory=lambda: [3e18, 9e18, 1.8e19, 3e19, 9e19, 1.8e20, 3e20])
    flop_convention: str = "soda"
    seq_len: int = 4096
    vocab_size: int = SODA_VOCAB_SIZE
    # Width grid.
    min_width: int = 128
    max_width: int = 2048
    width_step_small: int = 128
    width_step_large: int = 256
    # Budgets strictly above this use width_step_large (Marin: forward budget > 9e18 -> x3 here).
    width_step_switch: float = 2.7e19
    # Depth L = round(d / (layer_base + layer_log_coef * log2(d) - layer_offset)).
    layer_base: float = 64.0
    layer_log_coef: float = 4.0
    layer_offset: float = 7.0
    # heads = max(1, d // head_width), kv heads = heads.
    head_width: int = 128
    ffn_mult: int = 4
    # Batch rule: B = next_pow2(C / (F * target_steps * seq_len)).
    target_steps: int = 2**16
    # LR rule: lr = lr_constant * sqrt(B) / d, halving B while lr > max_lr.
    lr_constant: float = 0.33
    max_lr: float = 0.01
    min_batch: int = 8
    max_steps: int = 400_000
    flop_tolerance: float = 0.01
    # Optimizer and schedule recorded with every run.
    beta1: float = 0.95
    beta2_base: float = 0.98
    beta2_batch_ref: float = 128.0
    eps: float = 1e-15
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    decay_fraction: float = 0.2
    z_loss: float = 0.0
    # Not in the paper's text; the public Marin sweep code SODA builds on trains every run with Cautious
    # AdamW (weight decay scaled with the LR schedule), gradient-norm clip 1.0, LR decayed to 0.
    optimizer: str = "cautious_adamw"
    grad_clip: float = 1.0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.flop_convention not in FLOP_CONVENTIONS:
            raise ValueError(f"SweepRules.flop_convention must be one of {FLOP_CONVENTIONS}, got {self.flop_convention!r}")
        if not self.budgets:
            raise ValueError("SweepRules.budgets: need at least one budget")
        bad = [b for b in self.budgets if not (math.isfinite(b) and b > 0)]
        if bad:
            raise ValueError(f"SweepRules.budgets must be positive finite FLOP counts, got {bad}")
        for name in ("seq_len", "vocab_size", "min_width", "max_width", "width_step_small", "width_step_large",
                     "head_width", "ffn_mult", "target_steps", "min_batch", "max_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SweepRules.{name} must be positive, got {getattr(self, name)}")
        if self.min_width > self.max_width:
            raise ValueError(f"SweepRules: min_width {self.min_width} > max_width {self.max_width}")
        if not 0 < self.flop_tolerance < 1:
            raise ValueError(f"SweepRules.flop_tolerance must be in (0, 1), got {self.flop_tolerance}")


# The scaled-down preset: same rules, laptop scale (see the module docstring for why each knob differs).
MINI_RULES = SweepRules(
    name="mini",
    # 27 runs (3, 5, 7, 6, 6 per budget) over 16x of compute, 2.8e14 FLOPs: about 70 min on one shared
    # CPU core, half that with two sweep processes (docs/scaling.md).
    budgets=[1.5e12, 3e12, 6e12, 1.2e13, 2.4e13],
    seq_len=256,
    vocab_size=1540,  # the laptop study's data (512 text + 4 markers + 8 x 128 audio); set to your data's
    # 48 is the smallest width the LR cap admits at the minimum batch of 2 (0.33*sqrt(2)/d <= 0.01).
    min_width=48,
    # Step 32 at every mini budget (64 only above 1e14); max 240: wider models are far right of every minimum.
    max_width=240,
    width_step_small=32,
    width_step_large=64,
    width_step_switch=1e14,
    # Heads of 16 dims so that every width of the grid (48 + 32k) splits into whole heads.
    head_width=16,
    # 2^10 target steps (SODA 2^16): with a minimum batch of 2 every run has >= 512 optimizer steps.
    target_steps=2**10,
    min_batch=2,
    # Bounds the wall time of the smallest, LR-capped models (SODA's 400k is ~6 x its target).
    max_steps=16384,
)

PRESETS: dict[str, SweepRules] = {"soda": SweepRules(), "mini": MINI_RULES}


def next_pow2(x: float) -> int:
    """Smallest power of two >= x (1 for x <= 1)."""
    if x <= 1:
        return 1
    return 2 ** math.ceil(math.log2(x))


def num_layers(d: int, rules: SweepRules) -> int:
    return max(1, round(d / (rules.layer_base + rules.layer_log_coef * math.log2(d) - rules.layer_offset)))


def model_for_width(d: int, rules: SweepRules) -> ModelConfig:
    """The sweep's model at width d (SODA: Qwen3-style, kv heads = heads, FFN 4d)."""
    heads = max(1, d // rules.head_width)
    if d % heads:
        raise ValueError(
            f"width {d} is not divisible by its {heads} heads (head_width {rules.head_width}); "
            "choose widths that are multiples of head_width"
        )
    return ModelConfig(
        vocab_size=rules.vocab_size,
        d_model=d,
        n_layers=num_layers(d, rules),
        n_heads=heads,
        n_kv_heads=heads,
        head_dim=d // heads,
        d_ff=rules.ffn_mult * d,
        max_seq_len=rules.seq_len,
    )


def learning_rate(batch: int, d: int, rules: SweepRules) -> float:
    return rules.lr_constant * math.sqrt(batch) / d


def beta2(batch: int, rules: SweepRules) -> float:
    return rules.beta2_base ** (batch / rules.beta2_batch_ref)


def widths_for_budget(budget: float, rules: SweepRules) -> list[int]:
    step = rules.width_step_small if budget <= rules.width_step_switch else rules.width_step_large
    return list(range(rules.min_width, rules.max_width + 1, step))


def run_id(budget: float, cfg: ModelConfig, batch: int) -> str:
    return f"C{budget:.1e}-d{cfg.d_model}-L{cfg.n_layers}-B{batch}".replace("+", "")


@dataclass
class RunSpec:
    """One planned training run (a row of the plan table)."""

    run_id: str
    budget: float
    flop_convention: str
    width: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    seq_len: int
    vocab_size: int
    batch: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    warmup_fraction: float
    decay_fraction: float
    z_loss: float
    optimizer: str
    grad_clip: float
    min_lr_ratio: float
    steps: int
    tokens: int
    params: int  # all parameters (both embedding matrices; SODA models are untied)
    params_nonembedding: int
    flops_per_token: float  # training FLOPs per token in flop_convention
    achieved_flops: float
    budget_error: float  # (achieved - budget) / budget

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size,
            d_model=self.width,
            n_layers=self.layers,
            n_heads=self.heads,
            n_kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            d_ff=self.ffn,
            max_seq_len=self.seq_len,
        )

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_fraction * self.steps)

    @property
    def decay_steps(self) -> int:
        return round(self.decay_fraction * self.steps)


@dataclass
class Skipped:
    budget: float
    width: int
    layers: int
    batch: int
    steps: int
    reason: str


@dataclass
class Plan:
    rules: SweepRules
    runs: list[RunSpec]
    skipped: list[Skipped]

    @property
    def total_flops(self) -> float:
        return sum(r.achieved_flops for r in self.runs)

    def runs_for(self, budget: float) -> list[RunSpec]:
        return [r for r in self.runs if r.budget == budget]


def plan_budget(budget: float, rules: SweepRules) -> tuple[list[RunSpec], list[Skipped]]:
    runs: list[RunSpec] = []
    skipped: list[Skipped] = []
    for d in widths_for_budget(budget, rules):
        cfg = model_for_width(d, rules)
        f_tok = train_flops_per_token(cfg, rules.seq_len, rules.flop_convention)
        batch = next_pow2(budget / (f_tok * rules.target_steps * rules.seq_len))
        lr = learning_rate(batch, d, rules)
        while lr > rules.max_lr and batch > 1:
            batch //= 2
            lr = learning_rate(batch, d, rules)
        if batch < rules.min_batch:
            skipped.append(Skipped(budget, d, cfg.n_layers, batch, 0, f"batch {batch} < {rules.min_batch}"))
            continue
        if lr > rules.max_lr:  # only with min_batch 1: even one sequence per step exceeds the LR cap
            skipped.append(Skipped(budget, d, cfg.n_layers, batch, 0,
                                   f"lr {lr:.4g} > {rules.max_lr} even at batch {batch}"))
            continue
        steps = round(budget / (f_tok * batch * rules.seq_len))
        achieved = f_tok * batch * rules.seq_len * steps
        error = (achieved - budget) / budget
        if abs(error) > rules.flop_tolerance:
            skipped.append(Skipped(budget, d, cfg.n_layers, batch, steps,
                                   f"achieved FLOPs off budget by {error:+.2%} (> {rules.flop_tolerance:.0%})"))
            continue
        if steps > rules.max_steps:
            skipped.append(Skipped(budget, d, cfg.n_layers, batch, steps, f"steps {steps} > {rules.max_steps}"))
            continue
        counts = count_params(cfg)
        runs.append(RunSpec(
            run_id=run_id(budget, cfg, batch),
            budget=float(budget),
            flop_convention=rules.flop_convention,
            width=d,
            layers=cfg.n_layers,
            heads=cfg.n_heads,
            kv_heads=cfg.n_kv_heads,
            head_dim=cfg.head_dim,
            ffn=cfg.d_ff,
            seq_len=rules.seq_len,
            vocab_size=rules.vocab_size,
            batch=batch,
            lr=lr,
            beta1=rules.beta1,
            beta2=beta2(batch, rules),
            eps=rules.eps,
            weight_decay=rules.weight_decay,
            warmup_fraction=rules.warmup_fraction,
            decay_fraction=rules.decay_fraction,
            z_loss=rules.z_loss,
            optimizer=rules.optimizer,
            grad_clip=rules.grad_clip,
            min_lr_ratio=rules.min_lr_ratio,
            steps=steps,
            tokens=batch * steps * rules.seq_len,
            params=counts.total,
            params_nonembedding=counts.non_embedding,
            flops_per_token=f_tok,
            achieved_flops=achieved,
            budget_error=error,
        ))
    return runs, skipped


def plan_sweep(rules: SweepRules) -> Plan:
    runs: list[RunSpec] = []
    skipped: list[Skipped] = []
    for budget in sorted(rules.budgets):
        r, s = plan_budget(budget, rules)
        runs += r
        skipped += s
    return Plan(rules=rules, runs=runs, skipped=skipped)


# ---- serialisation ---------------------------------------------------------------------------------
CSV_COLUMNS = [f.name for f in RunSpec.__dataclass_fields__.values()]


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format": PLAN_FORMAT,
        "flop_convention": plan.rules.flop_convention,
        "rules": to_dict(plan.rules),
        "total_flops": plan.total_flops,
        "runs": [dict(vars(r)) for r in plan.runs],
        "skipped": [dict(vars(s)) for s in plan.skipped],
    }


def plan_to_csv(plan: Plan) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in plan.runs:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in vars(r).items()})
    return buf.getvalue()


def write_plan(plan: Plan, out_dir: str | Path) -> tuple[Path, Path]:
    """Write plan.json (rules + runs + skipped, the input of `isoflop run`) and plan.csv (runs)."""
    out = Path(out_dir)
    json_path, csv_path = out / "plan.json", out / "plan.csv"
    atomic_write_text(json_path, json.dumps(plan_to_json(plan), indent=1) + "\n")
    atomic_write_text(csv_path, plan_to_csv(plan))
    return json_path, csv_path


def read_plan(path: str | Path) -> Plan:
    """Read plan.json (or the plan.json inside a directory), checking its format and consistency."""
    path = Path(path)
    if path.is_dir():
        path = path / "plan.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"plan file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"plan file {path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise ValueError(f"plan file {path}: expected format {PLAN_FORMAT!r}, got {data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
    rules = from_dict(SweepRules, data["rules"])
    try:
        runs = [RunSpec(**r) for r in data["runs"]]
        skipped = [Skipped(**s) for s in data.get("skipped", [])]
    except TypeError as e:
        raise ValueError(f"plan file {path}: malformed run record ({e})") from e
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"plan file {path}: duplicate run ids")
    # Each id names a run directory under the runs folder: a path in it would train elsewhere.
    bad = [i for i in ids if not is_plain_file_name(str(i)) or str(i).startswith(".")]
    if bad:
        raise ValueError(f"plan file {path}: run id {bad[0]!r} is not a plain directory name")
    return Plan(rules=rules, runs=runs, skipped=skipped)


def format_plan(plan: Plan) -> str:
    """A human-readable table of the plan."""
    lines = [
        f"IsoFLOP plan '{plan.rules.name}': {len(plan.runs)} runs over {len(plan.rules.budgets)} budgets "
        f"(FLOP convention {plan.rules.flop_convention}, seq {plan.rules.seq_len}, vocab {plan.rules.vocab_size}); "
        f"total {plan.total_flops:.3e} FLOPs",
        f"{'budget':>9} {'width':>5} {'L':>3} {'heads':>5} {'batch':>5} {'lr':>8} {'beta2':>7} {'steps':>7} "
        f"{'tokens':>10} {'N':>10} {'N_nonemb':>10} {'FLOPs':>10} {'err':>7}",
    ]
    for r in plan.runs:
        lines.append(
            f"{r.budget:9.2e} {r.width:5d} {r.layers:3d} {r.heads:5d} {r.batch:5d} {r.lr:8.5f} {r.beta2:7.4f} "
            f"{r.steps:7d} {r.tokens:10.3e} {r.params:10.3e} {r.params_nonembedding:10.3e} "
            f"{r.achieved_flops:10.3e} {r.budget_error:+7.2%}"
        )
    for b in sorted(plan.rules.budgets):
        n = len(plan.runs_for(b))
        if n == 0:
            lines.append(f"WARNING: budget {b:.2e} has no feasible run under these rules")
        elif n < 3:
            lines.append(f"WARNING: budget {b:.2e} has only {n} feasible run(s); an IsoFLOP parabola needs >= 3")
    return "\n".join(lines)
