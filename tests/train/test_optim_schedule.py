"""Optimizer (Cautious AdamW / AdamC / plain AdamW), parameter groups, schedules, peak-LR rule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sodakit.model.config import ModelConfig
from sodakit.model.qwen3 import build_model
from sodakit.train.config import OptimConfig, ScheduleConfig
from sodakit.train.optim import CautiousAdamW, build_optimizer, param_groups
from sodakit.train.schedule import lr_multiplier, rule_width, soda_peak_lr

CFG = ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, d_ff=32, max_seq_len=32)


def test_plain_adamw_matches_torch():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 7))
    b = torch.nn.Parameter(a.detach().clone())
    ours = CautiousAdamW([a], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, cautious=False, wd_lr_scaling=False)
    ref = torch.optim.AdamW([b], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(5, 7)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_cautious_mask_and_rescale():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = CautiousAdamW([p], lr=0.1, betas=(0.5, 0.5), eps=1e-12, weight_decay=0.0, cautious=True)
    p.grad = torch.tensor([1.0, 1.0, 1.0, 1.0])
    opt.step()  # first step: u = sign(g), all agree -> plain Adam step of -lr
    assert torch.allclose(p.detach(), torch.full((4,), -0.1))
    p.grad = torch.tensor([1.0, 1.0, -4.0, -4.0])  # m = (0.75, 0.75, -1.75, -1.75): all agree again
    opt.step()
    # now make the momentum disagree with the gradient on two coordinates
    p.grad = torch.tensor([-0.1, -0.1, -0.1, -0.1])  # m -> (0.325, 0.325, -0.925, -0.925): 2 of 4 agree
    before = p.detach().clone()
    opt.step()
    delta = p.detach() - before
    assert delta[0] == 0 and delta[1] == 0  # sign(u) != sign(g): masked
    # the two kept coordinates are rescaled by 1 / mean(mask) = 2 (relative to plain Adam's step)
    state = opt.state[p]
    t = float(state["step"])
    u = (state["exp_avg"] / (1 - 0.5**t)) / ((state["exp_avg_sq"] / (1 - 0.5**t)).sqrt() + 1e-12)
    assert torch.allclose(delta[2:], -0.1 * 2 * u[2:], rtol=1e-5)


def test_adamc_weight_decay_follows_lr():
    p = torch.nn.Parameter(torch.ones(3))
    opt = CautiousAdamW([p], lr=1.0, weight_decay=0.5, cautious=True, wd_lr_scaling=True)
    opt.param_groups[0]["lr"] = 0.1  # lr_t / lr_max = 0.1
    p.grad = torch.zeros(3)  # no Adam direction: only decay acts
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5 * 0.1))


def test_weight_decay_only_on_block_matrices():
    model = build_model(CFG, seed=0)
    groups = {g["name"]: g for g in param_groups(model, 0.033)}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in groups["decay"]["params"])
    assert groups["decay"]["weight_decay"] == 0.033 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(n.startswith("layers.") and n.endswith(("wqkv.weight", "wo.weight", "w_gate_up.weight", "w_down.weight"))
               for n in decayed)
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    assert {"embed.weight", "lm_head.weight", "norm.weight", "layers.0.attn.q_norm.weight"} <= no_decay
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(model, OptimConfig(name="sgd"), 1e-3)


def test_wsd_and_cosine_schedules():
    wsd = ScheduleConfig(kind="wsd", warmup_frac=0.1, decay_frac=0.2)
    m = [lr_multiplier(s, 100, wsd) for s in range(100)]
    assert m[0] == pytest.approx(0.1) and m[9] == 1.0  # linear warmup over 10 steps
    assert all(x == 1.0 for x in m[10:80])  # stable
    assert m[80] == pytest.approx(0.95) and m[99] == 0.0  # linear decay to 0 at the end
    assert all(a >= b for a, b in itertools.pairwise(m[80:]))
    cos = ScheduleConfig(kind="cosine", warmup_frac=0.1, min_lr_ratio=0.1)
    c = [lr_multiplier(s, 100, cos) for s in range(100)]
    assert c[9] == 1.0 and c[99] == pytest.approx(0.1)
    assert c[54] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    with pytest.raises(ValueError, match="schedule.kind"):
        lr_multiplier(0, 10, ScheduleConfig(kind="linear"))


def test_soda_peak_lr_rule():
    assert soda_peak_lr(256, 1024) == pytest.approx(3e-3)
    assert rule_width("135M", 512) == 1024 and rule_width("600M", 1024) == 1024 and rule_width("x", 256, 64) == 64
    assert soda_peak_lr(512, rule_width("135M", 512)) == pytest.approx(3e-3 * math.sqrt(2))
    assert soda_peak_lr(512, 2048) == pytest.approx(3e-3)
