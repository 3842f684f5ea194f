"""`sodakit isoflop`: plan, run, fit, predict (the IsoFLOP scaling study).

    sodakit isoflop plan [RULES.yaml] [preset=soda|mini] [budgets=[C, ...]] [out=DIR] [key=value ...]
    sodakit isoflop run [CONFIG.yaml] plan=PLAN data=[PACKED[:WEIGHT], ...] val=PACKED [key=value ...]
    sodakit isoflop fit [CONFIG.yaml] results=RESULTS.csv [out=DIR] [json=true] [approach=[2]] [key=value ...]
    sodakit isoflop predict [CONFIG.yaml] fit=FIT.json flops=[C, ...] [json=true]

Like every stage, each subcommand takes a typed config (`key=value`, optionally over a YAML file;
`sodakit isoflop SUB --help` lists the keys). The positional forms (`run PLAN`, `fit RESULTS.csv`) and
the flags (`--data A B`, `--out DIR`, `--json`, ...) are other spellings of the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from sodakit.config import (
    ConfigArgs,
    ConfigError,
    Flag,
    load_config,
    parse_config_args,
    resolve_config_path,
    split_config_args,
    to_dict,
)
from sodakit.model.config import FLOP_CONVENTIONS
from sodakit.scaling.fit import PARAMS_KINDS, FitSettings, fit_all, format_report, load_fit, write_fit
from sodakit.scaling.plan import PRESETS, SweepRules, format_plan, plan_sweep, plan_to_json, write_plan
from sodakit.scaling.plots import plot_all
from sodakit.scaling.predict import format_prediction, predict
from sodakit.scaling.results import Columns, read_results


# ---------------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------------
@dataclass
class PlanConfig(SweepRules):
    """The sweep rules (defaults: the preset's) and what to do with the plan."""

    preset: str = "soda"  # rule set the fields start from: soda | mini
    out: str | None = None  # write OUT/plan.json and OUT/plan.csv
    json: bool = False  # print the plan as JSON instead of a table


PLAN_FLAGS = (
    Flag("preset", help="rule set to start from: soda | mini"),
    Flag("budgets", nargs="+", help="training FLOP budgets in the plan's convention"),
    Flag("flop_convention", help="FLOP convention: soda | 6N | 6N_nonembedding", name="--convention"),
    Flag("vocab_size", help="vocabulary size of the data the sweep will train on"),
    Flag("seq_len", help="training sequence length"),
    Flag("out", help="write OUT/plan.json and OUT/plan.csv"),
    Flag("json", const=True, help="print the plan as JSON instead of a table"),
)


def _chosen_preset(args: ConfigArgs) -> str:
    """The preset named by the command line or the rules file (the last word wins), before the full merge
    that starts from it."""
    layers = [OmegaConf.create({"preset": "soda"})]
    if args.path is not None:
        try:
            layers.append(OmegaConf.masked_copy(OmegaConf.load(resolve_config_path(args.path)), ["preset"]))
        except Exception:  # a broken file is reported by the full merge, naming it
            pass
    if "preset" in args.values:
        layers.append(OmegaConf.create({"preset": args.values["preset"]}))
    layers.append(OmegaConf.from_dotlist([o for o in args.overrides if o.startswith("preset=")]))
    name = str(OmegaConf.merge(*layers).preset)
    if name not in PRESETS:
        raise ConfigError(f"preset={name}: unknown; choose one of {sorted(PRESETS)}")
    return name


def cmd_plan(argv: list[str]) -> int:
    args = split_config_args(PlanConfig, argv, "sodakit isoflop plan", "Generate an IsoFLOP sweep by SODA's rules "
                             "(CSV + JSON). Rules: see `sodakit.scaling.plan` (module docstring).",
                             flags=PLAN_FLAGS, config_flag="--config")
    base = to_dict(PRESETS[_chosen_preset(args)])
    try:
        cfg = load_config(PlanConfig, args.path, args.overrides, base=base, values=args.values)
    except ValueError as e:  # SweepRules' own checks
        raise ConfigError(str(e)) from e
    rules = SweepRules(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(SweepRules)})
    plan = plan_sweep(rules)
    if cfg.json:
        print(json.dumps(plan_to_json(plan), indent=1))
    else:
        print(format_plan(plan))
    if cfg.out is not None:
        j, c = write_plan(plan, Path(cfg.out))
        print(f"wrote {j} and {c}", file=sys.stderr)
    if not plan.runs:
        raise ConfigError("no run satisfies the sweep rules for any budget")
    return 0


# ---------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------
EPILOG_RUN = """examples:
  sodakit isoflop run runs/mini --data packed/speech:0.95 packed/text:0.05 --val packed/val
  sodakit isoflop run plan=runs/mini 'data=[packed/speech:0.95, packed/text:0.05]' val=packed/val
  torchrun --nproc-per-node 8 -m sodakit isoflop run runs/soda --data soda:1 --val dev_clean --micro-batch 16

Finished runs (rows of the results CSV) are skipped; an interrupted run resumes from its own checkpoint.
Results columns: run_id, budget, flop_convention, status, shape, batch, lr, steps, params,
params_nonembedding, tokens, flops, loss (validation NLL, all tokens), loss_text/marker/audio/semantic,
train_loss, wall_time_s, ... (the input of `isoflop fit`).
"""


@dataclass
class RunConfig:
    plan: str = "???"  # plan.json written by `isoflop plan out=...` (or its directory)
    data: list[str] = field(default_factory=list)  # training data: PACKED[:WEIGHT] (default weight 1)
    val: str = ""  # held-out packed dataset; the validation loss covers all of it
    results: str | None = None  # results CSV (default: results.csv next to the plan)
    runs_dir: str | None = None  # one directory per run (default: runs/ next to the plan)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (fp32 on CPU, bf16 on GPU) | bf16 | fp32
    micro_batch: int = 0  # sequences per rank per forward (0: global batch / world size)
    seed: int = 0  # init and data-order seed shared by all runs
    checkpoint_every: int = 0  # steps between checkpoints (0: about 4 per run)
    keep_checkpoints: bool = False  # keep each run's final checkpoint
    compile: bool = False  # torch.compile each decoder block (GPU)
    threads: int = 0  # torch CPU threads (0: torch's default)
    # Train only these run ids (several `isoflop run` processes on one plan share the runs anyway: each
    # claims a run before training it).
    only: list[str] = field(default_factory=list)
    max_runs: int = 0  # stop after this many runs (0: all)
    progress: bool = False  # per-step progress of each run's training
    quiet: bool = False  # no per-run progress of the sweep


RUN_FLAGS = (
    Flag("data", nargs="+", help="training data: packed datasets with mixture weights, PACKED[:WEIGHT]"),
    Flag("val", help="held-out packed dataset"),
    Flag("results", help="results CSV"),
    Flag("runs_dir", help="one directory per run"),
    Flag("device", help="auto | cpu | cuda"),
    Flag("precision", help="auto | bf16 | fp32"),
    Flag("micro_batch", help="sequences per rank per forward"),
    Flag("seed", help="init and data-order seed"),
    Flag("checkpoint_every", help="steps between checkpoints"),
    Flag("keep_checkpoints", const=True, help="keep each run's final checkpoint"),
    Flag("compile", const=True, help="torch.compile each decoder block (GPU)"),
    Flag("threads", help="torch CPU threads"),
    Flag("only", nargs="+", help="train only these run ids"),
    Flag("max_runs", help="stop after this many runs"),
    Flag("progress", const=True, help="per-step progress of each run's training"),
    Flag("quiet", const=True, help="no per-run progress of the sweep"),
)


def cmd_run(argv: list[str]) -> int:
    # The training engine (torch, FSDP) is imported here only: plan, fit and predict start in a second.
    import torch

    from sodakit.scaling.run import RunSettings, default_paths, parse_data_arg, run_plan

    cfg, _ = parse_config_args(RunConfig, argv, "sodakit isoflop run", "Train every run of a plan (resumable; "
                               "torchrun works), append results.\n\n" + EPILOG_RUN, flags=RUN_FLAGS,
                               positionals=("plan",))
    for key, allowed in (("device", ("auto", "cpu", "cuda")), ("precision", ("auto", "bf16", "fp32"))):
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"{key}={getattr(cfg, key)}: choose one of {', '.join(allowed)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    results, runs_dir = default_paths(cfg.plan)
    settings = RunSettings(
        data=[parse_data_arg(d) for d in cfg.data], val=cfg.val,
        results=Path(cfg.results) if cfg.results else results, runs_dir=Path(cfg.runs_dir) if cfg.runs_dir else runs_dir,
        device=cfg.device, precision=cfg.precision, micro_batch=cfg.micro_batch, seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every, keep_checkpoints=cfg.keep_checkpoints, compile=cfg.compile,
        only=list(cfg.only), max_runs=cfg.max_runs, progress=cfg.progress, quiet=cfg.quiet,
    )
    out = run_plan(cfg.plan, settings)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {len(out.trained)}, skipped {len(out.skipped)} finished, diverged {len(out.diverged)}"
              + (f", left {len(out.taken)} to other processes" if out.taken else "")
              + f"; results in {settings.results}")
    return 0


# ---------------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------------
EPILOG_FIT = """results CSV columns (rename with *_col=NAME or --*-col NAME):
  flops, params, loss        required; finite and > 0
  tokens                     optional; else tokens = flops / (6 * params)
  budget                     optional; else runs are grouped by flops (within 5%)
  flop_convention            optional; one value per table (soda | 6N | 6N_nonembedding)
  run_id                     optional; named in messages
"""


@dataclass
class FitConfig:
    results: str = "???"  # results CSV (`isoflop run` writes one)
    out: str | None = None  # directory for fit.json and the plots (default: next to the results)
    json: bool = False  # print every fitted value as JSON
    approach: list[int] = field(default_factory=lambda: [2, 3])  # 2: IsoFLOP minima, 3: parametric law
    bootstrap: int = 200  # bootstrap samples for the intervals
    seed: int = 0
    confidence: float = 0.95
    convention: str | None = None  # FLOP convention of the table (checked against its flop_convention column)
    params: str = "total"  # which parameter count N is: total | non_embedding (reads params_nonembedding)
    flops_col: str | None = None
    params_col: str | None = None
    tokens_col: str | None = None
    loss_col: str | None = None
    budget_col: str | None = None
    convention_col: str | None = None  # column holding the FLOP convention (default flop_convention)
    plots: bool = True
    strict: bool = False  # treat every fit warning as an error
    drop_invalid: bool = False  # drop rows with NaN/negative/missing values (with a warning) instead of failing


FIT_FLAGS = (
    Flag("out", help="directory for fit.json and the plots"),
    Flag("json", const=True, help="print every fitted value as JSON"),
    Flag("approach", nargs="+", help="2 and/or 3"),
    Flag("bootstrap", help="bootstrap samples for the intervals"),
    Flag("seed", help="bootstrap seed"),
    Flag("confidence", help="interval confidence"),
    Flag("convention", help="FLOP convention of the table"),
    Flag("params", help="total | non_embedding"),
    *(Flag(f"{col}_col", help=f"column holding {col}")
      for col in ("flops", "params", "tokens", "loss", "budget", "convention")),
    Flag("plots", const=False, help="write no plots", name="--no-plots"),
    Flag("strict", const=True, help="treat every fit warning as an error"),
    Flag("drop_invalid", const=True, help="drop invalid rows (with a warning) instead of failing"),
)


def fit_columns(cfg: FitConfig) -> Columns:
    """The results table's column names: the defaults, params_nonembedding for params=non_embedding,
    and any *_col renames."""
    cols = Columns()
    if cfg.params == "non_embedding":
        cols.params = "params_nonembedding"
    for name in ("flops", "params", "tokens", "loss", "budget"):
        if getattr(cfg, f"{name}_col"):
            setattr(cols, name, getattr(cfg, f"{name}_col"))
    if cfg.convention_col:
        cols.flop_convention = cfg.convention_col
    return cols


def cmd_fit(argv: list[str]) -> int:
    cfg, _ = parse_config_args(FitConfig, argv, "sodakit isoflop fit", "Fit Approach 2 and 3 scaling laws to a "
                               "results CSV.\n\n" + EPILOG_FIT, flags=FIT_FLAGS, positionals=("results",))
    if cfg.convention is not None and cfg.convention not in FLOP_CONVENTIONS:
        raise ConfigError(f"convention={cfg.convention}: choose one of {', '.join(FLOP_CONVENTIONS)}")
    if cfg.params not in PARAMS_KINDS:
        raise ConfigError(f"params={cfg.params}: choose one of {', '.join(PARAMS_KINDS)}")
    cols = fit_columns(cfg)
    settings = FitSettings(
        approaches=tuple(sorted(set(cfg.approach))), bootstrap=cfg.bootstrap, seed=cfg.seed,
        confidence=cfg.confidence, params_kind=cfg.params, strict=cfg.strict,
    )
    results = Path(cfg.results)
    obs = read_results(results, cols, cfg.convention, cfg.drop_invalid)
    report = fit_all(obs, settings, cols)
    out = Path(cfg.out) if cfg.out is not None else results.parent
    plots = [str(p) for p in plot_all(report, out)] if cfg.plots else []
    record = write_fit(report, out / "fit.json", {"plots": plots})
    if cfg.json:
        print(json.dumps(record, indent=1))
    else:
        print(format_report(report))
        print(f"wrote {out / 'fit.json'}" + (f" and {len(plots)} plots" if plots else ""))
    for w in report.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------------
@dataclass
class PredictConfig:
    fit: str = "???"  # fit.json written by `isoflop fit` (or its directory)
    flops: list[float] = field(default_factory=list)  # compute budget(s) C in the fit's convention
    vocab_size: int | None = None  # count preset parameters with this vocabulary (default: the preset's)
    json: bool = False


PREDICT_FLAGS = (
    Flag("fit", help="fit.json written by `isoflop fit` (or its directory)"),
    Flag("flops", nargs="+", help="compute budget(s) C in the fit's convention"),
    Flag("vocab_size", help="count preset parameters with this vocabulary"),
    Flag("json", const=True, help="print the predictions as JSON"),
)


def cmd_predict(argv: list[str]) -> int:
    cfg, _ = parse_config_args(PredictConfig, argv, "sodakit isoflop predict", "Compute-optimal N*, D* and loss "
                               "for a compute budget.", flags=PREDICT_FLAGS)
    if not cfg.flops:
        raise ConfigError("flops=[C, ...] (or --flops C ...) is required: the compute budget(s) to predict for")
    fit = load_fit(cfg.fit)
    preds = [predict(fit, c, cfg.vocab_size) for c in cfg.flops]
    if cfg.json:
        print(json.dumps([dataclasses.asdict(p) for p in preds], indent=1))
    else:
        print("\n".join(format_prediction(p) for p in preds))
    return 0


SUBCOMMANDS = {
    "plan": (cmd_plan, "generate an IsoFLOP sweep by SODA's rules (CSV + JSON)"),
    "run": (cmd_run, "train every run of a plan (resumable; torchrun works), append results"),
    "fit": (cmd_fit, "fit Approach 2 and 3 scaling laws to a results CSV"),
    "predict": (cmd_predict, "compute-optimal N*, D* and loss for a compute budget"),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sodakit isoflop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n" + "\n".join(f"  {name:<8} {text}" for name, (_, text) in SUBCOMMANDS.items()))
    parser.add_argument("cmd", choices=sorted(SUBCOMMANDS), help="see `sodakit isoflop CMD --help`")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the subcommand's config")
    ns = parser.parse_args(argv)
    return SUBCOMMANDS[ns.cmd][0](ns.args)
