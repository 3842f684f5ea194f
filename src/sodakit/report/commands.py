"""`sodakit report PATH [PATH ...] [out=DIR]`: the HTML + Markdown + JSON report of what sodakit wrote.

    sodakit report runs/t1                      a training run (metrics.jsonl + config.yaml): curves, validation, config
    sodakit report eval/results.json            an eval results JSON: scores beside SODA's, per-task details
    sodakit report runs/isoflop-mini            an IsoFLOP fit or study directory
    sodakit report demo_out                     a demo output (its summary.json), or any report summary JSON
    sodakit report runs/a runs/b out=cmp/       several side by side: curves overlaid, numbers in columns

The kind of each path is recognised from the files in it; the report goes to <path>/report for one path
and ./report for several, unless out= (--out) says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sodakit.config import Flag, parse_config_args
from sodakit.report.builder import build_report
from sodakit.report.compose import compose, default_out


@dataclass
class ReportConfig:
    # What sodakit wrote: run directories, eval results JSONs, IsoFLOP fit/study directories, demo outputs.
    paths: list[str] = field(default_factory=list)
    out: str | None = None  # output directory (default: <path>/report for one path, ./report for several)
    title: str | None = None  # the page's title (default: from what is reported)


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_config_args(ReportConfig, argv, "sodakit report", __doc__ or "",
                               flags=(Flag("out"), Flag("title")), positionals=("paths",))
    summary, base = compose(cfg.paths, cfg.title)
    out = cfg.out or default_out(cfg.paths)
    paths = build_report(summary, out, base_dir=base)
    print(f"report: wrote {paths['html']} (+ report.md, report.json)")
    return 0
