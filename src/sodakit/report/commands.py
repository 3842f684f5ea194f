"""`sodakit report SUMMARY.json --out DIR`: render a run summary as HTML + Markdown + JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sodakit.report.builder import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sodakit report", description=__doc__)
    parser.add_argument("summary", help="summary JSON (the demo writes one at <out>/summary.json)")
    parser.add_argument("--out", help="output directory or URL, e.g. s3://bucket/reports/x (default: <summary dir>/report)")
    args = parser.parse_args(argv)
    path = Path(args.summary)
    if not path.is_file():
        raise FileNotFoundError(f"report: {path} does not exist")
    summary = json.loads(path.read_text())
    out = args.out or path.parent / "report"  # a folder or a URL (never through Path: s3:// would lose a slash)
    paths = build_report(summary, out, base_dir=path.parent)
    print(f"report: wrote {paths['html']} (+ report.md, report.json)")
    return 0
