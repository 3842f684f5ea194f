"""The demo's model size and step count, picked by the project's IsoFLOP fit for a compute budget.

The laptop IsoFLOP study (scripts/isoflop_mini_study.py, shipped in resources/isoflop) fitted
N*(C) on audio-token loss over models built by its sweep rules (the shipped config isoflop_mini). Given the
demo's budget C (training FLOPs, SODA convention), `choose_model` takes the width of that family whose
parameter count is nearest N*(C) in log distance, and trains it for the steps that spend C:

    steps = C / (train FLOPs per token x batch x sequence length)

The fit also predicts D*(C); the demo spends C on the chosen N, so its tokens land near D*(C) whenever
the chosen N lands near N*(C). Both appear in the report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from sodakit.config import load_config
from sodakit.model.config import ModelConfig, count_params, train_flops_per_token
from sodakit.scaling.fit import load_fit
from sodakit.scaling.plan import SweepRules, model_for_width
from sodakit.scaling.predict import predict

SHIPPED_STUDY = "resources/isoflop"  # the study's plots and summary (inside the package)
SHIPPED_FIT = "resources/isoflop/fit_audio/fit.json"  # its audio-token fit (`sodakit isoflop fit`)
SWEEP_RULES = "isoflop_mini"  # the shipped sweep config: the model family the fit was made on


def shipped_path(relative: str) -> Path:
    return Path(str(resources.files("sodakit").joinpath(relative)))


@dataclass
class ModelChoice:
    flops: float  # the budget C (SODA convention: 3 x forward FLOPs per token x tokens)
    n_opt: float  # the fit's N*(C), total parameters
    d_opt: float  # the fit's D*(C), tokens
    width: int
    layers: int
    heads: int
    params: int  # total parameters of the chosen model at the demo's vocabulary
    flops_per_token: float
    steps: int
    tokens: int
    fit: str  # where the fit was read
    exponents: str  # N* ~ C^a, D* ~ C^b of the fit

    def overrides(self, model: ModelConfig) -> dict:
        """ModelSpec overrides that build `model` (vocab_size comes from the data)."""
        return {k: getattr(model, k) for k in ("d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff")}

    def report_rows(self) -> dict:
        return {
            "compute budget C (FLOPs, SODA convention)": f"{self.flops:.3g}",
            "fit": self.fit, "fitted laws": self.exponents,
            "N*(C) of the fit": f"{self.n_opt:,.0f} parameters", "D*(C) of the fit": f"{self.d_opt:,.0f} tokens",
            "chosen model (nearest N* in the study's family)":
                f"width {self.width}, {self.layers} layers, {self.heads} heads: {self.params:,} parameters "
                f"({self.params / self.n_opt:.2f} x N*)",
            "steps to spend C": f"{self.steps} ({self.tokens:,} tokens, {self.tokens / self.d_opt:.2f} x D*, "
                                f"{self.tokens / self.params:.1f} tokens/parameter)",
        }


def sweep_rules(vocab_size: int, seq_len: int) -> SweepRules:
    return load_config(SweepRules, SWEEP_RULES, [f"vocab_size={vocab_size}", f"seq_len={seq_len}"])


def choose_model(flops: float, vocab_size: int, batch: int, seq_len: int, fit_path: str | Path | None = None,
                 ) -> tuple[ModelChoice, ModelConfig]:
    """The study family's model nearest the fit's N*(flops), and the steps that spend `flops`."""
    fit = load_fit(fit_path or shipped_path(SHIPPED_FIT))
    if fit.params_kind != "total" or fit.flop_convention != "soda":
        raise ValueError(f"{fit.path}: the demo sizes models from a fit of total parameters in the SODA FLOP "
                         f"convention, got {fit.params_kind} / {fit.flop_convention}")
    alloc = predict(fit, flops, vocab_size=vocab_size).allocations[0]  # Approach 2 when the fit has it
    rules = sweep_rules(vocab_size, seq_len)
    best: tuple[float, ModelConfig] | None = None
    for width in range(rules.head_width, rules.max_width * 4 + 1, rules.head_width):
        model = model_for_width(width, rules)
        distance = abs(math.log(count_params(model).total / alloc.n_opt))
        if best is None or distance < best[0]:
            best = (distance, model)
    assert best is not None
    model = best[1].replace(max_seq_len=max(seq_len, 2048))
    per_token = train_flops_per_token(model, seq_len, "soda")
    steps = max(1, round(flops / (per_token * batch * seq_len)))
    exps = f"N* ~ C^{fit.n_opt.exponent:.3f}, D* ~ C^{fit.d_opt.exponent:.3f}" if fit.n_opt and fit.d_opt else "Approach 3"
    choice = ModelChoice(flops=flops, n_opt=alloc.n_opt, d_opt=alloc.d_opt, width=model.d_model, layers=model.n_layers,
                         heads=model.n_heads, params=count_params(model).total, flops_per_token=per_token, steps=steps,
                         tokens=steps * batch * seq_len, fit=str(fit_path or SHIPPED_FIT), exponents=exps)
    return choice, model


def choice_record(choice: ModelChoice) -> dict:
    return asdict(choice)
