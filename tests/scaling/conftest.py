"""Synthetic IsoFLOP results drawn from a known law L(N, D), offered to the tests as the `synth` fixture."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sodakit.scaling.laws import ParametricLaw
from sodakit.scaling.results import Observations, observations_from_arrays


def isoflop_grid(law: ParametricLaw, budgets, n_per: int = 7, span: float = 0.8, k: float = 6.0):
    """Per budget, `n_per` sizes log-spaced +-`span` decades around the true optimum; D = C / (k N)."""
    rows = []
    for c in budgets:
        n0, _ = law.optimal(c, k)
        for x in np.linspace(-span, span, n_per):
            n = float(n0 * 10**x)
            rows.append((float(c), n, c / (k * n)))
    return rows


def sample(law: ParametricLaw, budgets, sigma: float = 0.005, seed: int = 0, **kw) -> Observations:
    """Observations with multiplicative log-normal noise of scale `sigma` on the loss."""
    rng = np.random.default_rng(seed)
    rows = isoflop_grid(law, budgets, **kw)
    c, n, d = (np.array(v) for v in zip(*rows))
    loss = law.loss(n, d) * np.exp(sigma * rng.standard_normal(len(n)))
    return observations_from_arrays(6 * n * d, n, loss, tokens=d, budget=c, flop_convention="6N")


def write_csv(path: Path, obs: Observations, convention: str | list[str] = "6N", drop: tuple[str, ...] = ()) -> Path:
    cols = [c for c in ("run_id", "budget", "flop_convention", "params", "tokens", "flops", "loss") if c not in drop]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(len(obs)):
            conv = convention[i] if isinstance(convention, list) else convention
            row = {"run_id": f"run{i}", "budget": repr(float(obs.budget[i])), "flop_convention": conv,
                   "params": repr(float(obs.params[i])), "tokens": repr(float(obs.tokens[i])),
                   "flops": repr(float(obs.flops[i])), "loss": repr(float(obs.loss[i]))}
            w.writerow([row[c] for c in cols])
    return path


@pytest.fixture
def synth() -> SimpleNamespace:
    return SimpleNamespace(sample=sample, write_csv=write_csv, isoflop_grid=isoflop_grid)


# ---- packed data and a tiny plan for `isoflop run` --------------------------------------------------
TINY_VOCAB_KW = {"text_vocab_size": 64, "bos_id": 1, "eos_id": 2, "num_codebooks": 2, "codebook_size": 16}


def make_packed(directory: Path, n_docs: int, seed: int, vocab=None) -> Path:
    """Text-then-audio documents with learnable structure, written with the real packed-format writer."""
    from sodakit.data.packed import PACKED_FORMAT, ShardWriter, token_counts, write_metadata
    from sodakit.tokens.vocab import Vocab

    vocab = vocab or Vocab(**TINY_VOCAB_KW)
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(directory, 0)
    counts = dict.fromkeys(("text", "bos_eos", "marker", "audio", "semantic"), 0)
    for _ in range(n_docs):
        text = (int(rng.integers(3, 40)) + np.arange(int(rng.integers(3, 10)))) % (vocab.text_vocab_size - 3) + 3
        codes0 = rng.integers(0, vocab.codebook_size, int(rng.integers(2, 8)))
        codes = np.stack([codes0] + [(codes0 * (3 + k) + 1) % vocab.codebook_size for k in range(1, vocab.num_codebooks)])
        doc = np.concatenate([[vocab.bos_id, vocab.text_start_id], text, [vocab.text_end_id, vocab.audio_start_id],
                              vocab.codes_to_ids(codes), [vocab.audio_end_id, vocab.eos_id]]).astype(np.uint32)
        writer.add(doc)
        for k, v in token_counts(doc, vocab).items():
            counts[k] += v
    info = writer.finish()
    write_metadata(directory, {
        "format": PACKED_FORMAT, "vocab": vocab.to_dict(), "tokenizer": None,
        "codec": {"name": "test", "config_hash": "0" * 8, "sample_rate": 16000, "frame_rate": 12.5,
                  "num_codebooks": vocab.num_codebooks, "codebook_size": vocab.codebook_size},
        "num_documents": n_docs, "num_tokens": info["num_tokens"], "counts": counts, "shards": [info],
    })
    return directory


def tiny_rules(vocab_size: int, **kw):
    """SODA's rules at toy scale: 2 budgets x 3 widths (32, 48, 64), 2-4 steps each, seq 32.

    The LR cap and the 1% tolerance are relaxed (max_lr 1, 50%): at a few steps per run no width would
    qualify otherwise; every other rule is the planner's.
    """
    from sodakit.scaling.plan import SweepRules

    base = dict(name="test", budgets=[1.2e8, 3e8], seq_len=32, vocab_size=vocab_size, min_width=32, max_width=64,
                width_step_small=16, width_step_switch=1e20, head_width=16, target_steps=4, max_lr=1.0,
                min_batch=2, flop_tolerance=0.5)
    base.update(kw)
    return SweepRules(**base)


@pytest.fixture(scope="session")
def packed_data(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("isoflop_data")
    a = make_packed(root / "speech", 200, seed=0)
    b = make_packed(root / "text", 60, seed=2)
    val = make_packed(root / "val", 12, seed=1)
    from sodakit.data.packed import PackedDataset

    return SimpleNamespace(speech=a, text=b, val=val, vocab=PackedDataset(a).vocab)
