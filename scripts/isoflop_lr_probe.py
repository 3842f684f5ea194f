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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan", type=Path, help="the sweep's plan.json (or its directory)")
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--widths", type=int, nargs="+", required=True)
    ap.add_argument("--factors", type=float, nargs="+", default=[0.5, 2.0], help="LR multipliers (1 = the sweep)")
    ap.add_argument("--data", nargs="+", required=True, metavar="PACKED[:WEIGHT]")
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", type=Path, help="probe directory (default: lr_probe next to the plan)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if any(not f > 0 for f in args.factors):
        raise SystemExit(f"--factors must be positive, got {args.factors}")

    plan_dir = args.plan if args.plan.is_dir() else args.plan.parent
    out = args.out or plan_dir.parent / "lr_probe"
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

    def rows(path: Path) -> dict[str, dict]:
        if not path.exists():
            return {}
        with open(path) as f:
            return {r["run_id"]: r for r in csv.DictReader(f)}

    base, probed = rows(plan_dir / "results.csv"), rows(out / "results.csv")
    table = []
    for r in json.loads((out / "plan.json").read_text())["runs"]:
        src, _, factor = r["run_id"].rpartition("-lrx")
        for f, row in ((1.0, base.get(src)), (float(factor), probed.get(r["run_id"]))):
            if row and not any(t["run_id"] == row["run_id"] for t in table):
                table.append({"run_id": row["run_id"], "width": int(row["width"]), "batch": int(row["batch"]),
                              "factor": f, "lr": float(row["lr"]), "loss": float(row["loss"]),
                              "loss_audio": float(row["loss_audio"])})
    table.sort(key=lambda t: (t["width"], t["factor"]))
    print(f"{'width':>5} {'batch':>5} {'factor':>6} {'lr':>8} {'loss':>7} {'audio':>7}")
    for t in table:
        print(f"{t['width']:5d} {t['batch']:5d} {t['factor']:6g} {t['lr']:8.5f} {t['loss']:7.4f} {t['loss_audio']:7.4f}")
    atomic_write_text(out / "lr_probe.json", json.dumps({**probe["lr_probe"], "results": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
