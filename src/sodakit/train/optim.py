"""Cautious AdamW with AdamC-scaled decoupled weight decay (docs/soda.md#training-recipe), FSDP2-aware.

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
`clip_grad_norm` clips the sharded gradients by their global norm before the step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from sodakit.train import distributed as D
from sodakit.train.config import OptimConfig


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


@torch.no_grad()
def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Global L2 norm of the (sharded) gradients, then scale them down to max_norm (0: no clipping)."""
    grads = [_local(p.grad) for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    sq = torch.stack(torch._foreach_norm(grads)).float().square().sum()
    D.all_reduce_sum(sq)
    norm = sq.sqrt()
    if max_norm > 0:
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, coef.to(grads[0].dtype))
    return norm


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

    def _constants(self, numels: tuple, eps: tuple, device: torch.device) -> tuple[Tensor, Tensor]:
        """Per-parameter sizes and eps as device tensors, made once (a host copy each step would sync)."""
        key = (numels, eps, device)
        cache = self.__dict__.setdefault("_const_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = (
                torch.tensor(numels, dtype=torch.float64, device=device),
                torch.tensor(eps, dtype=torch.float64, device=device),
            )
        return cache[key]

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)  # on the CPU, like torch's optimizers
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update, with multi-tensor (foreach) kernels and no host-device synchronisation."""
        if closure is not None:
            raise ValueError("CautiousAdamW does not take a closure")
        plans = []
        counts: list[Tensor] = []
        numels: list[int] = []
        eps_c: list[float] = []
        pgs = set()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            ps = [_local(p) for p in params]
            gs = [_local(p.grad) for p in params]
            ms = [_local(st["exp_avg"]) for st in states]
            vs = [_local(st["exp_avg_sq"]) for st in states]
            beta1, beta2 = group["betas"]
            steps = [st["step"] for st in states]
            torch._foreach_add_(steps, 1.0)
            ts = [float(t) for t in steps]
            torch._foreach_lerp_(ms, gs, 1.0 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, gs, gs, value=1.0 - beta2)
            # u = m_hat / (sqrt(v_hat) + eps)
            denom = torch._foreach_div(vs, [1.0 - beta2**t for t in ts])
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, group["eps"])
            u = torch._foreach_div(ms, [1.0 - beta1**t for t in ts])
            torch._foreach_div_(u, denom)
            del denom
            masks = None
            first = len(counts)
            if group["cautious"]:
                # mask = 1 where sign(u) == sign(g): sign(u * g) clipped at 0
                masks = torch._foreach_mul(u, gs)
                torch._foreach_sign_(masks)
                torch._foreach_clamp_min_(masks, 0.0)
                counts += [m.sum(dtype=torch.float64) for m in masks]  # exact counts
                numels += [p.numel() for p in params]  # whole (unsharded) parameter
                eps_c += [group["cautious_eps"]] * len(params)
                pgs.update(p.device_mesh.get_group() if isinstance(p, DTensor) else None for p in params)
            plans.append((group, ps, u, masks, first))
        if counts:
            # The mask mean is over each whole parameter: one all-reduce of every local count.
            if len(pgs) > 1:
                raise RuntimeError("CautiousAdamW: parameters sharded over different process groups (or mixed)")
            total = torch.stack(counts)
            pg = next(iter(pgs))
            if pg is not None and dist.get_world_size(pg) > 1:
                dist.all_reduce(total, group=pg)
            numel_t, eps_t = self._constants(tuple(numels), tuple(eps_c), total.device)
            scales = (1.0 / (total / numel_t + eps_t)).float()
        for group, ps, u, masks, first in plans:
            lr = group["lr"]
            if masks is not None:
                torch._foreach_mul_(u, masks)
                torch._foreach_mul_(u, list(scales[first : first + len(u)].unbind()))
            wd = group["weight_decay"]
            if wd:
                ratio = lr / group["max_lr"] if group["wd_lr_scaling"] else 1.0
                torch._foreach_mul_(ps, 1.0 - lr * wd * ratio)
            torch._foreach_add_(ps, u, alpha=-lr)
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
