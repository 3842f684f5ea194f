"""Shared test settings: never reach a model hub; locate the shared real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path:
    """$SODAKIT_DATA, else ../shared/data next to the checkout (see its README), else the workplace copy;
    tests that need it skip without it."""
    if "SODAKIT_DATA" in os.environ:
        return Path(os.environ["SODAKIT_DATA"])
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()
if SHARED_DATA.is_dir():
    # The library's data defaults (tblimp/hellaswag, sodakit.eval.data_dir) read the same variable.
    os.environ.setdefault("SODAKIT_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA} (set SODAKIT_DATA)")
    return SHARED_DATA


def _save_small_mimi(path: Path, seed: int = 0) -> Path:
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(seed)
    # Real Mimi's rates and codebooks (24 kHz, 12.5 Hz, 10 > 8 quantizers of 2048 entries), tiny widths,
    # so the loading code users run on the real weights is exercised in seconds.
    cfg = MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=10, codebook_size=2048, upsample_groups=32,
    )
    MimiModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def small_mimi():
    """`small_mimi(path, seed=0)` saves a random-init small Mimi with `save_pretrained` and returns `path`."""
    return _save_small_mimi
