"""The run report: one static HTML page plus the same numbers as JSON and Markdown.

Input is a summary dict (the demo writes one; any pipeline can): sections are optional, paths are
relative to the summary file or absolute.

    {"title": str, "subtitle": str, "settings": {...},
     "data": {name: {stat: value}},                       # data statistics, one table per dataset
     "training": {"metrics": "metrics.jsonl", "info": {...}},
     "evaluation": {"scale": "tiny model, 10 min of synthetic speech", "scores": {column: value},
                    "details": {...}, "judges": "...",
                    "coverage": {column: {"scored": 4, "expected": 8, "missing": [...]}}},  # partial scores
     "samples": [{"task": "tts", "prompt_text": ..., "prompt_audio": "a.wav", "output_audio": "b.wav",
                  "output_text": ..., "reference_text": ...}],
     "isoflop": {"source": "runs/isoflop-mini", "plots": ["profiles.png", ...], "summary": {...},
                 "reference": {"fit": "SODA", "N_exponent": 0.367, "D_exponent": 0.579},
                 "exponents": [{"fit": ..., "N_exponent": .4, "N_exponent_ci": [.1, .5], "D_exponent": ...}],
                 "warnings": [...], "message": "shown in place of the plots when there is no sweep"}}

(`sodakit.report.isoflop.isoflop_section` builds the "isoflop" section from a fit or study directory.)

`build_report` turns the summary into a view (tables with formatted cells, asset paths, notes) and
renders it with the Jinja templates in report/templates/: index.html.j2 (autoescaped: every text of
the summary is escaped), report.md.j2 (text as is) and style.css. The page references only files copied
into its own `assets/` folder, so the report directory can be moved or served as is. `out_dir` may be
a URL (`s3://bucket/reports/x`, e.g. a bucket served as a website): the report is rendered into a local
staging folder and uploaded, index.html last.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sodakit import storage
from sodakit.config import atomic_write_text

# docs/soda.md#evaluation-protocol: published SODA results (different scale from anything a laptop trains).
SODA_COLUMNS = ["sBLIMP", "sWUGGY", "SALMon", "tBLIMP", "tWUGGY", "HellaSwag", "ASR WER", "TTS WER", "TTS SIM"]
SODA_PUBLISHED: dict[str, list[float | None]] = {
    "SODA 135M": [50.1, 56.3, 70.0, 67.4, 70.7, 28.7, 28.1, 11.2, 0.500],
    "SODA 600M": [51.2, 58.9, 70.1, 70.7, 73.1, 35.8, 10.2, 7.6, 0.555],
    "SODA 1.7B": [51.4, 60.6, 70.6, 70.3, 74.7, 44.5, 7.0, 6.9, 0.560],
    "SODA 4B": [52.4, 61.8, 70.4, 71.3, 74.8, 52.6, 5.0, 6.1, 0.560],
}
LOWER_IS_BETTER = {"ASR WER", "TTS WER"}


def _resolve(path: str | None, base: Path) -> Path | None:
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else base / p


def read_metrics(path: Path) -> list[dict]:
    records = []
    with open(path) as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    return records


def plot_losses(records: list[dict], out: Path) -> list[str]:
    """Loss per token type against step: training on the left, held-out validation on the right."""
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, int | float) and
                   (k.startswith("loss") or k.startswith("val_loss"))})
    if not keys:
        return []
    panels = [("training", [k for k in keys if k.startswith("loss")]),
              ("validation (held out)", [k for k in keys if k.startswith("val_loss")])]
    panels = [(title, ks) for title, ks in panels if ks]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), dpi=110, squeeze=False, sharey=True)
    colors = {}
    for ax, (title, ks) in zip(axes[0], panels):
        for key in ks:
            kind = key.removeprefix("val_").removeprefix("loss").lstrip("_") or "all tokens"
            pts = [(r["step"], r[key]) for r in records if key in r and "step" in r]
            if not pts:
                continue
            xs, ys = zip(*pts)
            line = ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, label=kind, color=colors.get(kind))
            colors[kind] = line[0].get_color()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("cross-entropy (nats/token)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return keys


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _with_ci(v: Any, ci: Any) -> str:
    if not isinstance(v, int | float):
        return "-"
    text = f"{v:.3f}"
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _partial_columns(coverage: dict) -> dict[str, tuple[int, int, list[str]]]:
    """{column: (scored, expected, missing parts)} for the columns scored on fewer parts than expected."""
    out = {}
    for col, c in coverage.items():
        scored, expected = (c or {}).get("scored"), (c or {}).get("expected")
        if isinstance(scored, int) and isinstance(expected, int) and scored < expected:
            out[col] = (scored, expected, [str(m) for m in (c.get("missing") or [])])
    return out


@dataclass
class Table:
    """A table ready for the templates: header strings and rows of cells already formatted by `_fmt`."""

    headers: list[str]
    rows: list[list[str]]
    cls: str = ""


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> Table:
    return Table(headers, [[_fmt(c) for c in row] for row in rows], cls)


def _stat_rows(stats: dict) -> list[list[Any]]:
    """[key, value] rows of a flat dict; nested values are left to the JSON record."""
    return [[k, v] for k, v in stats.items() if not isinstance(v, dict | list)]


class _Assets:
    def __init__(self, out: Path):
        self.dir = out / "assets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: set[str] = set()

    def add(self, src: Path, prefix: str) -> str:
        if not src.is_file():
            raise FileNotFoundError(f"report: asset {src} does not exist")
        name = f"{prefix}-{src.name}"
        i = 1
        while name in self.names:
            name = f"{prefix}-{i}-{src.name}"
            i += 1
        self.names.add(name)
        shutil.copyfile(src, self.dir / name)
        return f"assets/{name}"


def build_report(summary: dict, out_dir: str | Path, base_dir: str | Path = ".") -> dict[str, Path | str]:
    """Render `summary` into out_dir/{index.html, report.md, report.json, assets/} (a folder or a URL)."""
    if storage.is_remote(out_dir):
        stage = storage.new_temp_dir()
        try:
            paths = build_report(summary, stage, base_dir)
            storage.upload_dir(stage, out_dir, last=["index.html"])
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return {key: storage.join(out_dir, Path(p).name) for key, p in paths.items()}
    out, base = Path(out_dir), Path(base_dir)
    if out.exists():
        shutil.rmtree(out / "assets", ignore_errors=True)
    assets = _Assets(out)
    title = summary.get("title", "sodakit report")
    view: dict[str, Any] = {"title": title, "subtitle": summary.get("subtitle"),
                            **dict.fromkeys(("data", "training", "evaluation", "samples", "isoflop", "settings"))}
    record: dict[str, Any] = {"title": title}
    if summary.get("data"):
        view["data"] = [(name, _table(["statistic", "value"], _stat_rows(stats))) for name, stats in summary["data"].items()]
        record["data"] = summary["data"]
    if summary.get("training"):
        view["training"], training_record = _training_section(summary["training"], out, base, assets)
        if training_record is not None:
            record["training"] = training_record
    evaluation = summary.get("evaluation") or {}
    if evaluation.get("scores"):
        view["evaluation"] = _evaluation_section(evaluation)
        record["evaluation"] = evaluation
    if summary.get("samples"):
        view["samples"], record["samples"] = _samples_section(summary["samples"], base, assets)
    iso = summary.get("isoflop") or {}
    if iso.get("plots") or iso.get("exponents") or iso.get("message"):
        view["isoflop"], record["isoflop"] = _isoflop_section(iso, base, assets)
    if summary.get("settings"):
        view["settings"] = json.dumps(summary["settings"], indent=2)
        record["settings"] = summary["settings"]

    paths = {"html": out / "index.html", "markdown": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["html"], _TEMPLATES.get_template("index.html.j2").render(view))
    atomic_write_text(paths["markdown"], _TEMPLATES.get_template("report.md.j2").render(view))
    atomic_write_text(paths["json"], json.dumps(record, indent=2, default=str))
    return paths


def _training_section(training: dict, out: Path, base: Path, assets: _Assets) -> tuple[dict, dict | None]:
    """The settings table and the loss curves; the JSON record keeps the last metrics record."""
    info = training.get("info", {})
    view: dict[str, Any] = {"info": _table(["setting", "value"], _stat_rows(info)) if info else None,
                            "plot": None, "plot_keys": ""}
    metrics_path = _resolve(training.get("metrics"), base)
    if metrics_path is None or not metrics_path.is_file():
        return view, None
    records = read_metrics(metrics_path)
    tmp = out / "loss_curves.png"
    keys = plot_losses(records, tmp)
    if keys:
        view["plot"] = assets.add(tmp, "plot")
        view["plot_keys"] = ", ".join(keys)
        tmp.unlink()
    last = {k: v for k, v in (records[-1] if records else {}).items() if isinstance(v, int | float)}
    return view, {"info": info, "last_record": last}


def _evaluation_section(evaluation: dict) -> dict:
    """This run's scores beside the published SODA rows, with notes on scale and partial columns."""
    scores = evaluation["scores"]
    ours = [scores.get(c) for c in SODA_COLUMNS]
    rows = [["this run", *ours]] + [[name, *vals] for name, vals in SODA_PUBLISHED.items()]
    partial = _partial_columns(evaluation.get("coverage") or {})
    headers = ["model", *[c + (f" ({partial[c][0]}/{partial[c][1]} parts)" if c in partial else "")
                          + (" (lower better)" if c in LOWER_IS_BETTER else "") for c in SODA_COLUMNS]]
    partial_notes = [f"{c}: this run scored {scored} of the {expected} parts"
                     + (f" (missing: {', '.join(missing)})" if missing else "")
                     + "; the published numbers average all of them."
                     for c, (scored, expected, missing) in partial.items()]
    extra = [[k, v] for k, v in scores.items() if k not in SODA_COLUMNS]
    return {
        "note": ("Published SODA numbers (docs/soda.md#evaluation-protocol) are shown for reference only: they "
                 "come from models trained on ~300K hours with Mimi and judged by Whisper-large-v3 / WavLM-large; "
                 f"this run is at a different scale ({evaluation.get('scale', '')}) with offline judges and "
                 "look-alike benchmarks. Compare shapes, not values."),
        "table": _table(headers, rows, "eval"),
        "partial_notes": partial_notes,
        "extra": _table(["metric", "value"], extra) if extra else None,
        "judges": str(evaluation["judges"]) if evaluation.get("judges") else None,
    }


def _samples_section(samples: list[dict], base: Path, assets: _Assets) -> tuple[list[dict], list[dict]]:
    """One row per sample: its audio copied into assets/, its texts; the JSON record points at the copies."""
    view, record = [], []
    for i, s in enumerate(samples):
        entry = {k: v for k, v in s.items() if not k.endswith("_audio")}
        row: dict[str, Any] = {"task": s.get("task", ""), "reference": s.get("reference_text", "") or ""}
        for role in ("prompt", "output"):
            audio = _resolve(s.get(f"{role}_audio"), base)
            if audio is not None:
                entry[f"{role}_audio"] = assets.add(audio, f"s{i}-{role}")
            row[role] = {"audio": entry.get(f"{role}_audio"), "text": s.get(f"{role}_text")}
        # The Markdown line names the texts as Python literals (quotes make empty and odd texts visible).
        row["md_prompt"] = f"{entry.get('prompt_audio', '')} {s.get('prompt_text', '')!r}"
        row["md_output"] = f"{entry.get('output_audio', '')} {s.get('output_text', '')!r}"
        view.append(row)
        record.append(entry)
    return view, record


def _isoflop_section(iso: dict, base: Path, assets: _Assets) -> tuple[dict, dict]:
    """Fitted exponents beside SODA's, sweep statistics, warnings and the plots (copied into assets/)."""
    view: dict[str, Any] = {"message": iso.get("message"), "source": iso.get("source"), "exponents": None,
                            "summary": None, "warnings": [str(w) for w in iso.get("warnings") or []]}
    if iso.get("exponents"):
        ref = iso.get("reference")
        rows = [[ref.get("fit", "SODA"), ref.get("N_exponent"), ref.get("D_exponent")]] if ref else []
        rows += [[e.get("fit", ""), _with_ci(e.get("N_exponent"), e.get("N_exponent_ci")),
                  _with_ci(e.get("D_exponent"), e.get("D_exponent_ci"))] for e in iso["exponents"]]
        view["exponents"] = _table(["fit", "N* ~ C^a: a", "D* ~ C^b: b"], rows, "iso")
    if iso.get("summary"):
        view["summary"] = _table(["quantity", "value"], _stat_rows(iso["summary"]))
    view["plots"] = []
    for p in iso.get("plots") or []:
        folder = Path(p).parent.name  # fit_audio/ and fit/ of a study hold plots of the same names
        src = assets.add(_resolve(p, base), f"isoflop-{folder}" if folder else "isoflop")  # type: ignore[arg-type]
        view["plots"].append({"src": src, "name": Path(p).name, "source": str(p)})
    record = {**iso, "plots": [p["src"] for p in view["plots"]], "plot_sources": list(iso.get("plots") or [])}
    return view, record


# HTML is autoescaped; Markdown is written as is (like the summary's own text).
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sodakit.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
