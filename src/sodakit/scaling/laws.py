"""The two functional forms of the scaling study and the published reference values.

- `PowerLaw`: y = coef * C^exponent (Approach 2's N*(C), D*(C), L*(C)).
- `ParametricLaw`: L(N, D) = E + A / N^alpha + B / D^beta (Approach 3), with its compute-optimal
  allocation under C = k * N * D: N*(C) = G * (C/k)^(beta/(alpha+beta)), D*(C) = (C/k)^(alpha/(alpha+beta)) / G,
  G = (alpha*A / (beta*B))^(1/(alpha+beta)) (Hoffmann et al. 2022, eq. 4).

Reference values (docs/soda.md#isoflop-sweep):

- Chinchilla Approach 3 (Hoffmann et al. 2022): E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28, with
  C = 6ND.
- SODA Approach 2: N* ~ C^0.367, D* ~ C^0.579. The paper gives the exponents but not the prefactors;
  `soda_reference()` derives them from its two statements "~13 tokens per parameter at 1e20 FLOPs" and
  "~58 at 1e23": at each anchor C with ratio r = D/N, assume C = 6*N*D (so N = sqrt(C / (6r)), D = r*N),
  solve coef = N / C^0.367 (resp. D / C^0.579), and take the geometric mean over the two anchors
  (coef_N ~ 56.4, coef_D ~ 0.0428). The result gives 13.2 and 57.1 tokens per parameter at the anchors;
  6ND/C is 1.2 at 1e20 and 0.83 at 1e23, since the exponents sum to 0.946, not 1 (SODA's N counts the
  large embedding matrices that its FLOP count mostly leaves out). A reference line, not a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class FitError(ValueError):
    """The data cannot support the requested fit."""


@dataclass
class PowerLaw:
    """y = coef * C^exponent, fitted in log-log space; *_ci are bootstrap percentile intervals."""

    coef: float
    exponent: float
    coef_ci: tuple[float, float] = (math.nan, math.nan)
    exponent_ci: tuple[float, float] = (math.nan, math.nan)

    def __call__(self, c):
        return self.coef * np.asarray(c, dtype=float) ** self.exponent


def fit_power_law(c: np.ndarray, y: np.ndarray) -> PowerLaw:
    """Least squares of ln y on ln C."""
    slope, intercept = np.polyfit(np.log(np.asarray(c, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)
    return PowerLaw(float(math.exp(intercept)), float(slope))


@dataclass
class ParametricLaw:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n, d):
        n = np.asarray(n, dtype=float)
        d = np.asarray(d, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def n_exponent(self) -> float:
        """N* ~ C^(beta / (alpha + beta))."""
        return self.beta / (self.alpha + self.beta)

    @property
    def d_exponent(self) -> float:
        """D* ~ C^(alpha / (alpha + beta))."""
        return self.alpha / (self.alpha + self.beta)

    def optimal(self, c, k: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N*, D*) at compute C under the constraint C = k * N * D."""
        c = np.asarray(c, dtype=float)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return g * (c / k) ** self.n_exponent, (c / k) ** self.d_exponent / g


CHINCHILLA = ParametricLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

SODA_N_EXPONENT = 0.367
SODA_D_EXPONENT = 0.579
# (compute, tokens per parameter) statements of the SODA paper (docs/soda.md#isoflop-sweep).
SODA_TOKENS_PER_PARAM = ((1e20, 13.0), (1e23, 58.0))


def soda_reference() -> tuple[PowerLaw, PowerLaw]:
    """SODA's published N*(C) and D*(C), prefactors derived as in the module docstring."""
    log_an, log_ad = [], []
    for c, ratio in SODA_TOKENS_PER_PARAM:
        n = math.sqrt(c / (6.0 * ratio))
        log_an.append(math.log(n) - SODA_N_EXPONENT * math.log(c))
        log_ad.append(math.log(ratio * n) - SODA_D_EXPONENT * math.log(c))
    return (
        PowerLaw(math.exp(float(np.mean(log_an))), SODA_N_EXPONENT),
        PowerLaw(math.exp(float(np.mean(log_ad))), SODA_D_EXPONENT),
    )
