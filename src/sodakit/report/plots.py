"""The report's training figures (PNG, matplotlib's Agg backend).

`training_figure`: one run's curves: training loss per token type, held-out validation loss per token
type, the learning rate, and throughput with MFU. `comparison_figure`: several runs overlaid, one panel
per quantity (overall and per-type losses, validation, learning rate, throughput). Both skip panels
that have no data, and return the metric keys they drew (None when there was nothing to draw).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LOSS_AXIS = "cross-entropy (nats/token)"


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in records
           if isinstance(r.get(key), int | float) and isinstance(r.get("step"), int | float)]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])


def _numeric_keys(records: list[dict]) -> set[str]:
    return {k for r in records for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _kind(key: str) -> str:
    """loss_audio / val_loss_audio -> audio; loss / val_loss -> all tokens."""
    return key.removeprefix("val_").removeprefix("loss").lstrip("_") or "all tokens"


def _grid(n: int) -> tuple[plt.Figure, list]:
    cols = min(n, 2)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.7 * rows), dpi=110, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _finish(fig: plt.Figure, out: Path) -> None:
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def training_figure(records: list[dict], out: Path) -> list[str] | None:
    """One run: losses per token type (training, validation), learning rate, throughput and MFU."""
    keys = _numeric_keys(records)
    train = sorted(k for k in keys if k == "loss" or k.startswith("loss_"))
    val = sorted(k for k in keys if k == "val_loss" or k.startswith("val_loss_"))
    panels = []
    if train:
        panels.append(("training loss", train))
    if val:
        panels.append(("validation loss (held out)", val))
    if "lr" in keys:
        panels.append(("learning rate", ["lr"]))
    if "tokens_per_s" in keys:
        panels.append(("throughput", ["tokens_per_s"] + (["mfu"] if "mfu" in keys else [])))
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    colors: dict[str, str] = {}  # one colour per token type across the two loss panels
    for ax, (title, ks) in zip(axes, panels):
        if title == "throughput":
            xs, ys = _series(records, "tokens_per_s")
            ax.plot(xs, ys, color="tab:blue", marker="o" if len(xs) < 30 else None, ms=3)
            ax.set_ylabel("tokens/s", color="tab:blue")
            if "mfu" in ks:
                twin = ax.twinx()
                xs, ys = _series(records, "mfu")
                twin.plot(xs, [100 * y for y in ys], color="tab:orange", ls="--")
                twin.set_ylabel("MFU (%)", color="tab:orange")
        elif title == "learning rate":
            xs, ys = _series(records, "lr")
            ax.plot(xs, ys, color="tab:green")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        else:
            for key in ks:
                xs, ys = _series(records, key)
                line = ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=_kind(key),
                               color=colors.get(_kind(key)))
                colors[_kind(key)] = line[0].get_color()
            ax.set_ylabel(LOSS_AXIS)
            ax.legend(fontsize=7)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _finish(fig, out)
    return [k for _, ks in panels for k in ks]


# Quantities compared across runs, in panel order.
COMPARED = ["loss", "val_loss", "loss_audio", "val_loss_audio", "loss_text", "val_loss_text", "loss_semantic",
            "val_loss_semantic", "lr", "tokens_per_s"]
TITLES = {"loss": "training loss (all tokens)", "val_loss": "validation loss (all tokens)", "lr": "learning rate",
          "tokens_per_s": "throughput (tokens/s)"}


def comparison_figure(runs: dict[str, list[dict]], out: Path) -> list[str] | None:
    """Several runs overlaid: one panel per quantity any run logged, one line per run."""
    keys = set().union(*(_numeric_keys(r) for r in runs.values())) if runs else set()
    shown = [k for k in COMPARED if k in keys]
    if not shown:
        return None
    fig, axes = _grid(len(shown))
    for ax, key in zip(axes, shown):
        for label, records in runs.items():
            xs, ys = _series(records, key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
        kind = "validation" if key.startswith("val_") else "training"
        ax.set_title(TITLES.get(key, f"{kind} loss: {_kind(key)} tokens"))
        ax.set_xlabel("step")
        if key.startswith(("loss", "val_loss")):
            ax.set_ylabel(LOSS_AXIS)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _finish(fig, out)
    return shown
