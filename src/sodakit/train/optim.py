"""Cautious AdamW with AdamC-scaled decoupled weight decay (SPEC section 7), FSDP2-aware.

Per parameter, with bias-corrected moments m_hat, v_hat and u = m_hat / (sqrt(v_hat) + eps):
- Cautious (Liang et al. 2024): keep u only where sign(u) == sign(g), rescaled by 1 / (mean(mask) + eps_c)
  so the update keeps its overall size. The mean is over the whole parameter, across FSDP shards: the
  local mask counts of all parameters go through one all-reduce per step.
- Decoupled weight decay (AdamW) with the AdamC correction: p <- p - lr_t * (wd * lr_t / lr_max) * p, so
  the decay anneals with the schedule; only on matrices of the decoder blocks, never on norms,
  embeddings (input or output) or biases.
With `cautious=False` and `wd_lr_scaling=False` this is plain AdamW.

The math runs on the local shards of DTensor parameters (no per-op DTensor dispatch); optimizer state
tensors are DTensors like their parameters, so `torch.distributed.checkpoint.state_dict` gathers them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sodakit.train.config import OptimConfig

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - torch < 2.4
    DTensor = ()  # type: ignore[assignment,misc]


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


class CautiousAdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float] = (0.98, 0.98),
        eps: float = 1e-16,
        weight_decay: float = 0.0,
        cautious: bool = True,
        wd_lr_scaling: bool = True,
        cautious_eps: float = 1e-8,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        defaults = {
            "lr": lr,
            "max_lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "cautious": cautious,
            "wd_lr_scaling": wd_lr_scaling,
            "cautious_eps": cautious_eps,
        }
        super().__init__(params, defaults)

    def _moments(self, p: Tensor) -> tuple[dict, Tensor, Tensor, Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state, _local(state["exp_avg"]), _local(state["exp_avg_sq"]), _local(p.grad)

    @staticmethod
    def _direction(group: dict, state: dict, m: Tensor, v: Tensor) -> Tensor:
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
        return (m / bc1).div_((v / bc2).sqrt_().add_(group["eps"]))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        if closure is not None:
            raise ValueError("CautiousAdamW does not take a closure")
        # Pass 1: moments, and the per-parameter count of sign-agreeing coordinates.
        work: list[tuple[dict, Tensor, dict, Tensor, Tensor, Tensor]] = []
        counts: list[Tensor] = []
        groups_of_counts = []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state, m, v, g = self._moments(p)
                state["step"] += 1
                m.lerp_(g, 1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                work.append((group, p, state, m, v, g))
                if group["cautious"]:
                    u = self._direction(group, state, m, v)
                    counts.append((u * g > 0).sum())
                    groups_of_counts.append(p.device_mesh.get_group() if isinstance(p, DTensor) else None)
        scales: list[float] = []
        if counts:
            total = torch.stack(counts).to(torch.float64)
            group_pg = groups_of_counts[0]
            if group_pg is not None and any(pg is not group_pg for pg in groups_of_counts):
                raise RuntimeError("CautiousAdamW: parameters sharded over different process groups")
            if group_pg is not None and dist.get_world_size(group_pg) > 1:
                dist.all_reduce(total, group=group_pg)
            scales = total.tolist()
        # Pass 2: apply (the direction is recomputed: elementwise work instead of holding a copy).
        ci = 0
        for group, p, state, m, v, g in work:
            lr = group["lr"]
            u = self._direction(group, state, m, v)
            if group["cautious"]:
                mean = scales[ci] / p.numel()
                ci += 1
                u.mul_((u * g > 0).to(u.dtype)).mul_(1.0 / (mean + group["cautious_eps"]))
            pl = _local(p)
            wd = group["weight_decay"]
            if wd:
                ratio = lr / group["max_lr"] if group["wd_lr_scaling"] else 1.0
                pl.mul_(1.0 - lr * wd * ratio)
            pl.add_(u, alpha=-lr)
        return None


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay only the matrices of the decoder blocks (not norms, embeddings, LM head or biases)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_block_matrix = p.ndim >= 2 and name.startswith("layers.") and not name.endswith(".bias")
        (decay if is_block_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> CautiousAdamW:
    if cfg.name not in ("cautious_adamw", "adamw"):
        raise ValueError(f"optim.name {cfg.name!r} unknown; choose 'cautious_adamw' or 'adamw'")
    # "adamw" is exactly torch's AdamW: no cautious mask, weight decay not scaled by the schedule.
    cautious = cfg.name == "cautious_adamw"
    return CautiousAdamW(
        param_groups(model, cfg.weight_decay),
        lr=lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        cautious=cautious,
        wd_lr_scaling=cfg.wd_lr_scaling and cautious,
        cautious_eps=cfg.cautious_eps,
    )
