"""Plots of a fit (matplotlib, Agg backend, PNG):

- isoflop_profiles.png   loss against N and against D per budget, fitted parabolas, their minima
- optimal_vs_compute.png N* and D* against C: per-budget minima (bootstrap intervals), the fitted power
                         laws, Approach 3's frontier, SODA's published and Chinchilla's reference lines
- parametric_contours.png  L(N, D) contours of the Approach 3 law with the runs, IsoFLOP lines and the
                         compute-optimal frontier
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sodakit.scaling.fit import FitReport
from sodakit.scaling.laws import CHINCHILLA, soda_reference


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    return path


def plot_profiles(report: FitReport, path: Path) -> Path:
    plt = _plt()
    a2, obs = report.approach2, report.obs
    budgets = obs.budgets
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(budgets)))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, which in zip(axes, ("N", "D")):
        x_all = obs.params if which == "N" else obs.tokens
        for color, b in zip(colors, budgets):
            m = obs.budget == b
            ax.scatter(x_all[m], obs.loss[m], color=color, s=18, label=f"C={b:.2g}")
            if a2 is None:
                continue
            prof = next(p for p in a2.profiles if p.budget == b)
            par = prof.parabola_n if which == "N" else prof.parabola_d
            if par is None:
                continue
            pad = 0.15 * (par.x_hi - par.x_lo)
            xs = np.linspace(par.x_lo - pad, par.x_hi + pad, 100)
            ax.plot(np.exp(xs), par(xs), color=color, lw=1, ls="-" if prof.used else ":")
            opt = prof.n_opt if which == "N" else prof.d_opt
            if np.isfinite(opt):
                ax.scatter([opt], [prof.loss_opt], color=color, marker="*" if prof.used else "x", s=120,
                           edgecolor="k", linewidths=0.5, zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel(f"{'parameters N (' + report.settings.params_kind + ')' if which == 'N' else 'tokens D'}")
        ax.set_ylabel("validation loss")
        ax.set_title(f"IsoFLOP profiles in log {which} (stars: minima used; x: excluded)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"FLOP convention: {obs.flop_convention}", fontsize=9)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_optimal(report: FitReport, path: Path) -> Path:
    plt = _plt()
    a2, a3, obs = report.approach2, report.approach3, report.obs
    c_lo, c_hi = min(obs.budgets) / 3, max(obs.budgets) * 3
    cs = np.logspace(np.log10(c_lo), np.log10(c_hi), 50)
    soda_n, soda_d = soda_reference()
    chin_n, chin_d = CHINCHILLA.optimal(cs, 6.0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, which in zip(axes, ("N", "D")):
        if a2 is not None:
            used = [p for p in a2.profiles if p.used]
            c = np.array([p.budget for p in used])
            y = np.array([p.n_opt if which == "N" else p.d_opt for p in used])
            ci = np.array([p.n_opt_ci if which == "N" else p.d_opt_ci for p in used], dtype=float).reshape(-1, 2)
            err = np.vstack([y - ci[:, 0], ci[:, 1] - y])
            err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
            ax.errorbar(c, y, yerr=err, fmt="o", color="C0", label="IsoFLOP minima (Approach 2)")
            law = a2.n_opt if which == "N" else a2.d_opt
            ax.plot(cs, law(cs), color="C0", label=f"fit: {law.coef:.3g}·C^{law.exponent:.3f}")
        if a3 is not None:
            n3, d3 = a3.optimal(cs)
            ax.plot(cs, n3 if which == "N" else d3, color="C1", ls="--",
                    label=f"Approach 3: C^{(a3.n_exponent if which == 'N' else a3.d_exponent):.3f}")
        ref = soda_n if which == "N" else soda_d
        ax.plot(cs, ref(cs), color="C2", ls=":", label=f"SODA published: C^{ref.exponent} (derived prefactor)")
        ax.plot(cs, chin_n if which == "N" else chin_d, color="C3", ls="-.",
                label="Chinchilla (Approach 3, C=6ND)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"compute C (FLOPs, {obs.flop_convention} convention)")
        ax.set_ylabel("N* (parameters)" if which == "N" else "D* (tokens)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Compute-optimal allocation", fontsize=10)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_contours(report: FitReport, path: Path) -> Path:
    plt = _plt()
    a3, obs = report.approach3, report.obs
    if a3 is None:
        raise ValueError("contour plot needs an Approach 3 fit")
    law = a3.law
    ln_lo, ln_hi = np.log10(obs.params.min()) - 0.5, np.log10(obs.params.max()) + 0.5
    ld_lo, ld_hi = np.log10(obs.tokens.min()) - 0.5, np.log10(obs.tokens.max()) + 0.5
    n = np.logspace(ln_lo, ln_hi, 200)
    d = np.logspace(ld_lo, ld_hi, 200)
    nn, dd = np.meshgrid(n, d)
    z = law.loss(nn, dd)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    levels = np.quantile(z, np.linspace(0.02, 0.98, 15))
    cs = ax.contour(nn, dd, z, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.3f")
    sc = ax.scatter(obs.params, obs.tokens, c=obs.loss, cmap="viridis", edgecolor="k", s=30, zorder=3)
    fig.colorbar(sc, ax=ax, label="observed loss")
    for b in obs.budgets:
        ax.plot(n, b / (a3.k * n), color="grey", lw=0.6, ls=":")
    cgrid = np.logspace(np.log10(min(obs.budgets)) - 1, np.log10(max(obs.budgets)) + 1, 50)
    n_opt, d_opt = a3.optimal(cgrid)
    ax.plot(n_opt, d_opt, color="C3", lw=1.5, label="compute-optimal frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n[0], n[-1])
    ax.set_ylim(d[0], d[-1])
    ax.set_xlabel(f"parameters N ({report.settings.params_kind})")
    ax.set_ylabel("tokens D")
    ax.set_title(
        f"L = {a3.E:.3g} + {a3.A:.3g}/N^{a3.alpha:.3f} + {a3.B:.3g}/D^{a3.beta:.3f}\n"
        f"(dotted: IsoFLOP lines C = {a3.k:.3g}·N·D)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_all(report: FitReport, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    paths = []
    if report.approach2 is not None or report.approach3 is not None:
        paths.append(plot_profiles(report, out / "isoflop_profiles.png"))
        paths.append(plot_optimal(report, out / "optimal_vs_compute.png"))
    if report.approach3 is not None:
        paths.append(plot_contours(report, out / "parametric_contours.png"))
    return paths
