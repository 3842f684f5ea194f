"""`sodakit isoflop`: plan, run, fit, predict (the IsoFLOP scaling study).

    sodakit isoflop plan [--preset soda|mini] [--config RULES.yaml] [--budgets C ...] [--out DIR] [key=value ...]
    sodakit isoflop run PLAN --data PACKED[:WEIGHT] ... --val PACKED [--results CSV] [--runs-dir DIR] ...
    sodakit isoflop fit RESULTS.csv [--out DIR] [--json] [--approach 2 3] [--bootstrap N] ...
    sodakit isoflop predict --fit FIT.json --flops C [C ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sodakit.config import ConfigError, from_dict, resolve_config_path, to_dict

EPILOG_FIT = """results CSV columns (rename with --*-col):
  flops, params, loss        required; finite and > 0
  tokens                     optional; else tokens = flops / (6 * params)
  budget                     optional; else runs are grouped by flops (within 5%)
  flop_convention            optional; one value per table (soda | 6N | 6N_nonembedding)
  run_id                     optional; named in messages
"""


def _plan_parser(sub) -> None:
    from sodakit.scaling.plan import PRESETS

    p = sub.add_parser("plan", help="generate an IsoFLOP sweep by SODA's rules (CSV + JSON)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Generate the sweep table. Rules: see `sodakit.scaling.plan` (module docstring).",
                       epilog="any SweepRules field can be set as key=value, e.g. vocab_size=4096 max_width=1024")
    p.add_argument("--preset", default="soda", choices=sorted(PRESETS), help="rule set to start from (default soda)")
    p.add_argument("--config", type=Path, help="YAML file of SweepRules fields merged over the preset")
    p.add_argument("--budgets", type=float, nargs="+", help="training FLOP budgets in the plan's convention")
    p.add_argument("--convention", choices=("soda", "6N", "6N_nonembedding"), help="FLOP convention")
    p.add_argument("--vocab-size", type=int, help="vocabulary size of the data the sweep will train on")
    p.add_argument("--seq-len", type=int, help="training sequence length")
    p.add_argument("--out", type=Path, help="write OUT/plan.json and OUT/plan.csv")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.add_argument("overrides", nargs="*", help="SweepRules overrides key=value")


EPILOG_RUN = """examples:
  sodakit isoflop run runs/mini --data packed/speech:0.95 packed/text:0.05 --val packed/val
  torchrun --nproc-per-node 8 -m sodakit isoflop run runs/soda --data soda:1 --val dev_clean --micro-batch 16

Finished runs (rows of the results CSV) are skipped; an interrupted run resumes from its own checkpoint.
Results columns: run_id, budget, flop_convention, status, shape, batch, lr, steps, params,
params_nonembedding, tokens, flops, loss (validation NLL, all tokens), loss_text/marker/audio/semantic,
train_loss, wall_time_s, ... (the input of `isoflop fit`).
"""


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="train every run of a plan (resumable; torchrun works), append results",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_RUN)
    p.add_argument("plan", type=Path, help="plan.json written by `isoflop plan --out` (or its directory)")
    p.add_argument("--data", nargs="+", required=True, metavar="PACKED[:WEIGHT]",
                   help="training data: packed datasets with mixture weights (default weight 1)")
    p.add_argument("--val", required=True, help="held-out packed dataset; the validation loss covers all of it")
    p.add_argument("--results", type=Path, help="results CSV (default: results.csv next to the plan)")
    p.add_argument("--runs-dir", type=Path, help="one directory per run (default: runs/ next to the plan)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: fp32 on CPU, bf16 on GPU")
    p.add_argument("--micro-batch", type=int, default=0,
                   help="sequences per rank per forward (default: global batch / world size)")
    p.add_argument("--seed", type=int, default=0, help="init and data-order seed shared by all runs")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (default ~4 per run)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's final checkpoint")
    p.add_argument("--compile", action="store_true", help="torch.compile each decoder block (GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--only", nargs="+", default=[], metavar="RUN_ID",
                   help="train only these runs (several `isoflop run` processes on one plan share the runs "
                        "anyway: each claims a run before training it)")
    p.add_argument("--max-runs", type=int, default=0, help="stop after this many runs (0: all)")
    p.add_argument("--progress", action="store_true", help="per-step progress bar")


def _fit_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit Approach 2 and 3 scaling laws to a results CSV",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_FIT)
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path, help="directory for fit.json and the plots (default: next to RESULTS)")
    p.add_argument("--json", action="store_true", help="print every fitted value as JSON")
    p.add_argument("--approach", type=int, nargs="+", default=[2, 3], choices=(2, 3))
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap samples for the intervals (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--convention", choices=("soda", "6N", "6N_nonembedding"),
                   help="FLOP convention of the table (checked against its flop_convention column)")
    p.add_argument("--params", choices=("total", "non_embedding"), default="total",
                   help="which parameter count N is (default total; non_embedding reads params_nonembedding)")
    for col in ("flops", "params", "tokens", "loss", "budget"):
        p.add_argument(f"--{col}-col", help=f"column holding {col}")
    p.add_argument("--convention-col", help="column holding the FLOP convention (default flop_convention)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--strict", action="store_true", help="treat every fit warning as an error")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop rows with NaN/negative/missing values (with a warning) instead of failing")


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="compute-optimal N*, D* and loss for a compute budget")
    p.add_argument("--fit", type=Path, required=True, help="fit.json written by `isoflop fit` (or its directory)")
    p.add_argument("--flops", type=float, nargs="+", required=True, help="compute budget(s) C in the fit's convention")
    p.add_argument("--vocab-size", type=int, help="count preset parameters with this vocabulary (default: preset's)")
    p.add_argument("--json", action="store_true")


def _cmd_plan(args) -> int:
    from omegaconf import OmegaConf

    from sodakit.scaling.plan import PRESETS, SweepRules, format_plan, plan_sweep, plan_to_json, write_plan

    layers = [OmegaConf.create(to_dict(PRESETS[args.preset]))]
    if args.config is not None:
        layers.append(OmegaConf.load(resolve_config_path(args.config)))
    cli = {}
    if args.budgets:
        cli["budgets"] = [float(b) for b in args.budgets]
    if args.convention:
        cli["flop_convention"] = args.convention
    if args.vocab_size:
        cli["vocab_size"] = args.vocab_size
    if args.seq_len:
        cli["seq_len"] = args.seq_len
    layers.append(OmegaConf.create(cli))
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    layers.append(OmegaConf.from_dotlist(list(args.overrides)))
    merged = OmegaConf.to_container(OmegaConf.merge(*layers))
    try:
        rules = from_dict(SweepRules, merged)  # type: ignore[arg-type]
    except ValueError as e:
        raise ConfigError(str(e)) from e
    plan = plan_sweep(rules)
    if args.json:
        print(json.dumps(plan_to_json(plan), indent=1))
    else:
        print(format_plan(plan))
    if args.out is not None:
        j, c = write_plan(plan, args.out)
        print(f"wrote {j} and {c}", file=sys.stderr)
    if not plan.runs:
        raise ConfigError("no run satisfies the sweep rules for any budget")
    return 0


def _cmd_run(args) -> int:
    from sodakit.scaling.run import RunSettings, default_paths, parse_data_arg, run_plan

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results, runs_dir = default_paths(args.plan)
    settings = RunSettings(
        data=[parse_data_arg(d) for d in args.data], val=args.val,
        results=args.results or results, runs_dir=args.runs_dir or runs_dir,
        device=args.device, precision=args.precision, micro_batch=args.micro_batch, seed=args.seed,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, compile=args.compile,
        only=list(args.only), max_runs=args.max_runs, progress=args.progress,
    )
    out = run_plan(args.plan, settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {len(out.trained)}, skipped {len(out.skipped)} finished, diverged {len(out.diverged)}"
              + (f", left {len(out.taken)} to other processes" if out.taken else "")
              + f"; results in {settings.results}")
    return 0


def _cmd_fit(args) -> int:
    from sodakit.scaling.fit import FitSettings, fit_all, format_report, write_fit
    from sodakit.scaling.results import Columns, read_results

    cols = Columns()
    if args.params == "non_embedding":
        cols.params = "params_nonembedding"
    for name in ("flops", "params", "tokens", "loss", "budget"):
        v = getattr(args, f"{name}_col")
        if v:
            setattr(cols, name, v)
    if args.convention_col:
        cols.flop_convention = args.convention_col
    settings = FitSettings(
        approaches=tuple(sorted(set(args.approach))), bootstrap=args.bootstrap, seed=args.seed,
        confidence=args.confidence, params_kind=args.params, strict=args.strict,
    )
    obs = read_results(args.results, cols, args.convention, args.drop_invalid)
    report = fit_all(obs, settings, cols)
    out = args.out if args.out is not None else args.results.parent
    plots = [] if args.no_plots else [str(p) for p in _plots(report, out)]
    record = write_fit(report, out / "fit.json", {"plots": plots})
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        print(format_report(report))
        print(f"wrote {out / 'fit.json'}" + (f" and {len(plots)} plots" if plots else ""))
    for w in report.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


def _plots(report, out: Path) -> list[Path]:
    from sodakit.scaling.plots import plot_all

    return plot_all(report, out)


def _cmd_predict(args) -> int:
    import dataclasses

    from sodakit.scaling.fit import load_fit
    from sodakit.scaling.predict import format_prediction, predict

    fit = load_fit(args.fit)
    preds = [predict(fit, c, args.vocab_size) for c in args.flops]
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in preds], indent=1))
    else:
        print("\n".join(format_prediction(p) for p in preds))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sodakit isoflop", description="IsoFLOP scaling study: plan, run, fit, predict")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _plan_parser(sub)
    _run_parser(sub)
    _fit_parser(sub)
    _predict_parser(sub)
    args = parser.parse_args(argv)
    return {"plan": _cmd_plan, "run": _cmd_run, "fit": _cmd_fit, "predict": _cmd_predict}[args.cmd](args)
