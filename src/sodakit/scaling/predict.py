"""Compute-optimal allocation from a fit: "given C FLOPs, what model size and how many tokens?"

For each compute C (in the fit's FLOP convention): Approach 2's power laws give N*, D* and the L*
trend; Approach 3's law gives N*, D* (under C = k*N*D) and the predicted loss L(N*, D*). Each N* is
matched to the nearest model preset (sodakit.model.config.PRESETS) in log distance, counting the
preset's parameters the way the fit counted N (total or non-embedding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sodakit.model.config import PRESETS, count_params
from sodakit.scaling.fit import LoadedFit


@dataclass
class PresetMatch:
    name: str
    params: int
    ratio: float  # preset params / N*


@dataclass
class Allocation:
    approach: int
    n_opt: float
    d_opt: float
    tokens_per_param: float
    loss: float  # Approach 3: L(N*, D*); Approach 2: the L*(C) power-law trend
    loss_source: str
    preset: PresetMatch


@dataclass
class Prediction:
    flops: float
    flop_convention: str
    params_kind: str
    allocations: list[Allocation]
    warnings: list[str] = field(default_factory=list)


def nearest_preset(n: float, params_kind: str, vocab_size: int | None = None) -> PresetMatch:
    best: PresetMatch | None = None
    for name, cfg in PRESETS.items():
        if vocab_size is not None:
            cfg = cfg.replace(vocab_size=vocab_size)
        counts = count_params(cfg)
        p = counts.total if params_kind == "total" else counts.non_embedding
        m = PresetMatch(name, p, p / n)
        if best is None or abs(math.log(m.ratio)) < abs(math.log(best.ratio)):
            best = m
    assert best is not None
    return best


def predict(fit: LoadedFit, flops: float, vocab_size: int | None = None) -> Prediction:
    if not (math.isfinite(flops) and flops > 0):
        raise ValueError(f"--flops must be a positive FLOP count, got {flops}")
    warnings: list[str] = []
    lo, hi = min(fit.budgets), max(fit.budgets)
    if flops < lo / 10 or flops > hi * 10:
        warnings.append(
            f"C = {flops:.3e} is {'below' if flops < lo else 'above'} the fitted budgets "
            f"({lo:.3e}..{hi:.3e}) by more than 10x: an extrapolation"
        )
    out: list[Allocation] = []
    if fit.n_opt is not None and fit.d_opt is not None:
        n, d = float(fit.n_opt(flops)), float(fit.d_opt(flops))
        if fit.law is not None:
            loss, src = float(fit.law.loss(n, d)), "Approach 3 law at Approach 2's (N*, D*)"
        else:
            loss, src = float(fit.loss_opt(flops)), "Approach 2 L*(C) power-law trend"
        out.append(Allocation(2, n, d, d / n, loss, src, nearest_preset(n, fit.params_kind, vocab_size)))
    if fit.law is not None and fit.k is not None:
        n3, d3 = (float(v) for v in fit.law.optimal(flops, fit.k))
        out.append(Allocation(3, n3, d3, d3 / n3, float(fit.law.loss(n3, d3)), "Approach 3 law",
                              nearest_preset(n3, fit.params_kind, vocab_size)))
    if not out:
        raise ValueError(f"fit file {fit.path} holds neither an Approach 2 nor an Approach 3 result")
    return Prediction(flops, fit.flop_convention, fit.params_kind, out, warnings)


def format_prediction(p: Prediction) -> str:
    lines = [f"C = {p.flops:.3e} FLOPs ({p.flop_convention} convention; N counts {p.params_kind} parameters)"]
    for a in p.allocations:
        lines.append(
            f"  Approach {a.approach}: N* = {a.n_opt:.3e}  D* = {a.d_opt:.3e} tokens  "
            f"({a.tokens_per_param:.1f} tokens/param)  loss {a.loss:.4f} [{a.loss_source}]"
        )
        lines.append(
            f"    nearest preset: {a.preset.name} ({a.preset.params:.3e} params, {a.preset.ratio:.2f}x N*)"
        )
    for w in p.warnings:
        lines.append(f"WARNING: {w}")
    return "\n".join(lines)
