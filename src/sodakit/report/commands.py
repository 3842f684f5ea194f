"""`sodakit report SUMMARY.json --out DIR`: render a run summary as HTML + Markdown + JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sodakit.report.builder import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sodakit report", description=__doc__)
    parser.add_argument("summary", help="summary JSON (the demo writes one at <out>/summary.json)")
    parser.add_argument("--out", help="output directory (default: <summary dir>/report)")
    args = parser.parse_args(argv)
    path = Path(args.summary)
    if not path.is_file():
        raise FileNotFoundError(f"report: {path} does not exist")
    summary = json.loads(path.read_text())
    out = Path(args.out) if args.out else path.parent / "report"
    paths = build_report(summary, out, base_dir=path.parent)
    print(f"report: wrote {paths['html']} (+ report.md, report.json)")
    return 0
