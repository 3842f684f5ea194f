#!/usr/bin/env python
"""Check the sweep's LR rule on your data: rerun a few planned runs with their LR scaled by given factors.

    python scripts/isoflop_lr_probe.py runs/isoflop-mini/plan --budget 3e12 --widths 48 144 \\
        --factors 0.5 2 --data PACKED[:WEIGHT] ... --val PACKED [--out DIR]

SODA's rule LR = 0.33 sqrt(B) / d was set for batches of 8..128 sequences of 4096 tokens and widths of
128..2048. A scaled-down sweep uses it at batches of 2..8 short sequences and widths down to 48, so it
is worth checking that the rule's LR is near the best one there: if larger models were starved by a too
small LR (or small ones destabilised by a too large one), the IsoFLOP minima would move for a reason
that has nothing to do with scaling.

For every chosen run of the plan (one budget, the given widths) and every factor, a copy of the run with
LR x factor (same model, batch, steps, data, seed) goes into OUT/plan.json, with run id
`<run id>-lrx<factor>` (a later call with other widths or factors adds to the same probe plan);
`sodakit isoflop run` trains them (resumable: finished probes are skipped) and
the table of validation losses, next to the factor-1 losses from the plan's own results CSV, is printed
and written to OUT/lr_probe.json. The probe plan is a copy of the planned rows with only the LR changed;
it is not a plan of the rules and is kept apart from the sweep's results.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sodakit.config import atomic_write_text  # noqa: E402
from sodakit.scaling.plan import read_plan  # noqa: E402


def probe_plan(plan_path: Path, budget: float, widths: list[int], factors: list[float]) -> dict:
    """plan.json content with one LR-scaled copy of each chosen run per factor."""
    data = json.loads((plan_path / "plan.json" if plan_path.is_dir() else plan_path).read_text())
    plan = read_plan(plan_path)
    chosen = [r for r in plan.runs if abs(r.budget - budget) <= 1e-6 * budget and r.width in widths]
    missing = sorted(set(widths) - {r.width for r in chosen})
    if missing:
        have = sorted(r.width for r in plan.runs if abs(r.budget - budget) <= 1e-6 * budget)
        raise SystemExit(f"{plan_path}: no run of width {missing} at budget {budget:.3g} (widths there: {have})")
    runs = []
    for r in chosen:
        for f in factors:
            row = dict(vars(r))
            row.update(lr=r.lr * f, run_id=f"{r.run_id}-lrx{f:g}")
            runs.append(row)
    data.update(runs=runs, skipped=[], total_flops=sum(r["achieved_flops"] for r in runs),
                lr_probe={"source_plan": str(plan_path), "probes": [r["run_id"] for r in runs]})
    return data


def _rows(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path) as f:
        return {r["run_id"]: r for r in csv.DictReader(f)}


def probe_table(base: dict[str, dict], probed: dict[str, dict]) -> list[dict]:
    """Every probed run next to its sweep run (factor 1), ordered by budget, width and factor."""
    table = []
    for rid, row in probed.items():
        src, _, factor = rid.rpartition("-lrx")
        for f, r in ((1.0, base.get(src)), (float(factor), row)):
            if r and not any(t["run_id"] == r["run_id"] for t in table):
                table.append({"run_id": r["run_id"], "budget": float(r["budget"]), "width": int(r["width"]),
                              "batch": int(r["batch"]), "factor": f, "lr": float(r["lr"]),
                              "loss": float(r["loss"]), "loss_audio": float(r["loss_audio"])})
    return sorted(table, key=lambda t: (t["budget"], t["width"], t["factor"]))


def best_lr_results(base_path: Path, probed: dict[str, dict], loss_col: str) -> tuple[str, int]:
    """The sweep's results table with each probed run replaced by its variant (rule LR or probe) of lowest
    `loss_col`: a sensitivity check of the fit to per-size LR tuning (selected on the validation loss,
    so slightly optimistic). Returns (CSV text, number of rows replaced)."""
    with open(base_path) as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    replaced = 0
    for i, row in enumerate(rows):
        variants = [p for rid, p in probed.items() if rid.rpartition("-lrx")[0] == row["run_id"]]
        best = min([row, *variants], key=lambda r: float(r[loss_col]))
        if best is not row:
            rows[i], replaced = best, replaced + 1
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue(), replaced


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan", type=Path, help="the sweep's plan.json (or its directory)")
    ap.add_argument("--budget", type=float, help="budget of the runs to probe (omit to only report)")
    ap.add_argument("--widths", type=int, nargs="+", help="widths to probe at that budget")
    ap.add_argument("--factors", type=float, nargs="+", default=[0.5, 2.0], help="LR multipliers (1 = the sweep)")
    ap.add_argument("--data", nargs="+", metavar="PACKED[:WEIGHT]", help="training data (as for isoflop run)")
    ap.add_argument("--val", help="validation data (as for isoflop run)")
    ap.add_argument("--out", type=Path, help="probe directory (default: lr_probe next to the plan)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--best-results", type=Path,
                    help="also write the sweep's results with each probed run replaced by its best LR variant")
    ap.add_argument("--loss-col", default="loss_audio", help="loss that picks the best variant (default loss_audio)")
    args = ap.parse_args()
    if any(not f > 0 for f in args.factors):
        raise SystemExit(f"--factors must be positive, got {args.factors}")
    if (args.budget is None) != (args.widths is None):
        raise SystemExit("give --budget and --widths together (or neither, to only report)")

    plan_dir = args.plan if args.plan.is_dir() else args.plan.parent
    out = args.out or plan_dir.parent / "lr_probe"
    if args.budget is not None:
        if not (args.data and args.val):
            raise SystemExit("probing needs --data and --val")
        probe = probe_plan(args.plan, args.budget, args.widths, args.factors)
        if (out / "plan.json").exists():  # a later call adds probes: keep the earlier ones in the plan
            earlier = json.loads((out / "plan.json").read_text())
            if earlier.get("lr_probe", {}).get("source_plan") != str(args.plan):
                raise SystemExit(f"{out} holds probes of another plan ({earlier.get('lr_probe')}); choose another --out")
            ids = {r["run_id"] for r in probe["runs"]}
            probe["runs"] = [r for r in earlier["runs"] if r["run_id"] not in ids] + probe["runs"]
            probe["total_flops"] = sum(r["achieved_flops"] for r in probe["runs"])
            probe["lr_probe"] = {"source_plan": str(args.plan), "probes": sorted(r["run_id"] for r in probe["runs"])}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "plan.json", json.dumps(probe, indent=1) + "\n")
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, "-m", "sodakit", "isoflop", "run", str(out), "--data", *args.data, "--val", args.val,
               "--threads", str(args.threads)]
        if subprocess.run(cmd, env=env, cwd=REPO).returncode != 0:
            raise SystemExit(f"command failed: {' '.join(cmd)}")

    probed = _rows(out / "results.csv")
    if not probed:
        raise SystemExit(f"{out}: no probe results yet; give --budget and --widths to run some")
    table = probe_table(_rows(plan_dir / "results.csv"), probed)
    print(f"{'budget':>8} {'width':>5} {'batch':>5} {'factor':>6} {'lr':>8} {'loss':>7} {'audio':>7}")
    for t in table:
        print(f"{t['budget']:8.2g} {t['width']:5d} {t['batch']:5d} {t['factor']:6g} {t['lr']:8.5f} "
              f"{t['loss']:7.4f} {t['loss_audio']:7.4f}")
    atomic_write_text(out / "lr_probe.json", json.dumps({"source_plan": str(args.plan), "results": table}, indent=1) + "\n")
    if args.best_results:
        text, replaced = best_lr_results(plan_dir / "results.csv", probed, args.loss_col)
        atomic_write_text(args.best_results, text)
        print(f"wrote {args.best_results}: {replaced} runs replaced by a probed LR with lower {args.loss_col}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
