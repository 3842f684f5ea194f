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

The page references only files copied into its own `assets/` folder, so the report directory can be
moved or served as is.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

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


def _table_html(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _table_md(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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


def build_report(summary: dict, out_dir: str | Path, base_dir: str | Path = ".") -> dict[str, Path]:
    """Render `summary` into out_dir/{index.html, report.md, report.json, assets/}."""
    out, base = Path(out_dir), Path(base_dir)
    if out.exists():
        shutil.rmtree(out / "assets", ignore_errors=True)
    assets = _Assets(out)
    title = summary.get("title", "sodakit report")
    h: list[str] = []
    md: list[str] = [f"# {title}", ""]
    record: dict[str, Any] = {"title": title}
    if summary.get("subtitle"):
        h.append(f"<p class='sub'>{html.escape(summary['subtitle'])}</p>")
        md += [summary["subtitle"], ""]

    if summary.get("data"):
        h.append("<h2>Data</h2><div class='tables'>")
        md += ["## Data", ""]
        for name, stats in summary["data"].items():
            rows = [[k, v] for k, v in stats.items() if not isinstance(v, dict | list)]
            h.append(f"<div><h3>{html.escape(name)}</h3>" + _table_html(["statistic", "value"], rows) + "</div>")
            md += [f"### {name}", "", _table_md(["statistic", "value"], rows), ""]
        h.append("</div>")
        record["data"] = summary["data"]

    training = summary.get("training") or {}
    if training:
        h.append("<h2>Training</h2>")
        md += ["## Training", ""]
        info = training.get("info", {})
        if info:
            rows = [[k, v] for k, v in info.items() if not isinstance(v, dict | list)]
            h.append(_table_html(["setting", "value"], rows))
            md += [_table_md(["setting", "value"], rows), ""]
        metrics_path = _resolve(training.get("metrics"), base)
        if metrics_path is not None and metrics_path.is_file():
            records = read_metrics(metrics_path)
            tmp = out / "loss_curves.png"
            keys = plot_losses(records, tmp)
            if keys:
                src = assets.add(tmp, "plot")
                tmp.unlink()
                h.append(f'<figure><img src="{src}" alt="loss curves per token type"><figcaption>'
                         f"Loss per token type ({', '.join(keys)})</figcaption></figure>")
                md += [f"![loss curves]({src})", ""]
            last = {k: v for k, v in (records[-1] if records else {}).items() if isinstance(v, int | float)}
            record["training"] = {"info": info, "last_record": last}

    evaluation = summary.get("evaluation") or {}
    if evaluation.get("scores"):
        scores = evaluation["scores"]
        scale = evaluation.get("scale", "")
        h.append("<h2>Evaluation</h2>")
        md += ["## Evaluation", ""]
        note = ("Published SODA numbers (docs/soda.md#evaluation-protocol) are shown for reference only: they come from models "
                "trained on ~300K hours with Mimi and judged by Whisper-large-v3 / WavLM-large; this run is at a "
                f"different scale ({scale}) with offline judges and look-alike benchmarks. Compare shapes, not values.")
        h.append(f"<p class='note'>{html.escape(note)}</p>")
        md += [f"> {note}", ""]
        ours = [scores.get(c) for c in SODA_COLUMNS]
        rows = [["this run", *ours]] + [[name, *vals] for name, vals in SODA_PUBLISHED.items()]
        partial = _partial_columns(evaluation.get("coverage") or {})
        headers = ["model", *[c + (f" ({partial[c][0]}/{partial[c][1]} parts)" if c in partial else "")
                              + (" (lower better)" if c in LOWER_IS_BETTER else "") for c in SODA_COLUMNS]]
        h.append(_table_html(headers, rows, "eval"))
        md += [_table_md(headers, rows), ""]
        for c, (scored, expected, missing) in partial.items():
            line = (f"{c}: this run scored {scored} of the {expected} parts"
                    + (f" (missing: {', '.join(missing)})" if missing else "")
                    + "; the published numbers average all of them.")
            h.append(f"<p class='note'>{html.escape(line)}</p>")
            md += [f"> {line}", ""]
        extra = [[k, v] for k, v in scores.items() if k not in SODA_COLUMNS]
        if extra:
            h.append("<h3>Other measurements</h3>" + _table_html(["metric", "value"], extra))
            md += ["### Other measurements", "", _table_md(["metric", "value"], extra), ""]
        if evaluation.get("judges"):
            h.append(f"<p class='note'>Judges: {html.escape(str(evaluation['judges']))}</p>")
            md += [f"Judges: {evaluation['judges']}", ""]
        record["evaluation"] = evaluation

    samples = summary.get("samples") or []
    if samples:
        h.append("<h2>Samples</h2>")
        md += ["## Samples", ""]
        rows_html = []
        rec_samples = []
        for i, s in enumerate(samples):
            cells = []
            entry = {k: v for k, v in s.items() if not k.endswith("_audio")}
            for role in ("prompt", "output"):
                parts = []
                audio = _resolve(s.get(f"{role}_audio"), base)
                if audio is not None:
                    src = assets.add(audio, f"s{i}-{role}")
                    parts.append(f'<audio controls preload="metadata" src="{src}"></audio>')
                    entry[f"{role}_audio"] = src
                if s.get(f"{role}_text"):
                    parts.append(f"<div class='txt'>{html.escape(s[f'{role}_text'])}</div>")
                cells.append("".join(parts) or "-")
            ref = html.escape(s.get("reference_text", "") or "")
            rows_html.append(f"<tr><td>{html.escape(s.get('task', ''))}</td><td>{cells[0]}</td><td>{cells[1]}</td><td>{ref}</td></tr>")
            md.append(f"- **{s.get('task', '')}**: prompt {entry.get('prompt_audio', '')} {s.get('prompt_text', '')!r} -> "
                      f"output {entry.get('output_audio', '')} {s.get('output_text', '')!r}")
            rec_samples.append(entry)
        h.append("<table class='samples'><thead><tr><th>task</th><th>prompt</th><th>output</th><th>reference</th></tr>"
                 f"</thead><tbody>{''.join(rows_html)}</tbody></table>")
        md.append("")
        record["samples"] = rec_samples

    iso = summary.get("isoflop") or {}
    if iso.get("plots") or iso.get("exponents") or iso.get("message"):
        h.append("<h2>IsoFLOP study</h2>")
        md += ["## IsoFLOP study", ""]
        if iso.get("message"):
            h.append(f"<p class='note'>{html.escape(iso['message'])}</p>")
            md += [f"> {iso['message']}", ""]
        if iso.get("source"):
            h.append(f"<p>Source: <code>{html.escape(str(iso['source']))}</code></p>")
            md += [f"Source: `{iso['source']}`", ""]
        if iso.get("exponents"):
            headers = ["fit", "N* ~ C^a: a", "D* ~ C^b: b"]
            rows = [[iso["reference"].get("fit", "SODA"), iso["reference"].get("N_exponent"),
                     iso["reference"].get("D_exponent")]] if iso.get("reference") else []
            rows += [[e.get("fit", ""), _with_ci(e.get("N_exponent"), e.get("N_exponent_ci")),
                      _with_ci(e.get("D_exponent"), e.get("D_exponent_ci"))] for e in iso["exponents"]]
            h.append(_table_html(headers, rows, "iso"))
            h.append("<p class='note'>Fitted exponents with their bootstrap intervals in brackets.</p>")
            md += [_table_md(headers, rows), "", "Fitted exponents with their bootstrap intervals in brackets.", ""]
        if iso.get("summary"):
            rows = [[k, v] for k, v in iso["summary"].items() if not isinstance(v, dict | list)]
            h.append(_table_html(["quantity", "value"], rows))
            md += [_table_md(["quantity", "value"], rows), ""]
        for w in iso.get("warnings") or []:
            h.append(f"<p class='note'>{html.escape(str(w))}</p>")
            md += [f"> {w}", ""]
        srcs = []
        for p in iso.get("plots") or []:
            folder = Path(p).parent.name  # fit_audio/ and fit/ of a study hold plots of the same names
            src = assets.add(_resolve(p, base), f"isoflop-{folder}" if folder else "isoflop")  # type: ignore[arg-type]
            srcs.append(src)
            h.append(f'<figure><img src="{src}" alt="IsoFLOP plot {html.escape(Path(p).name)}">'
                     f"<figcaption>{html.escape(str(p))}</figcaption></figure>")
            md += [f"![isoflop]({src})", "", f"*{p}*", ""]
        record["isoflop"] = {**iso, "plots": srcs, "plot_sources": list(iso.get("plots") or [])}

    if summary.get("settings"):
        h.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(summary["settings"], indent=2)) + "</pre>")
        md += ["## Settings", "", "```json", json.dumps(summary["settings"], indent=2), "```", ""]
        record["settings"] = summary["settings"]

    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(h)}</body></html>"
    )
    paths = {"html": out / "index.html", "markdown": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["html"], page)
    atomic_write_text(paths["markdown"], "\n".join(md))
    atomic_write_text(paths["json"], json.dumps(record, indent=2, default=str))
    return paths


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#555;margin-top:0}
.tables{display:flex;flex-wrap:wrap;gap:0 1.5em} .tables h3{margin:.6em 0 .2em;font-size:1em}
table{border-collapse:collapse;margin:.6em 0 1.2em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3} table.eval tr:first-child td{font-weight:bold;background:#eef6ff}
.note{color:#555;font-size:.9em;background:#fafafa;border-left:3px solid #ccc;padding:.4em .8em}
figure{margin:1em 0} figcaption{font-size:.85em;color:#555} img{max-width:100%} audio{display:block;margin:.2em 0;width:260px} .txt{font-size:.9em;color:#333}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
"""
