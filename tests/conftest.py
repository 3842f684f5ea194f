"""Shared test settings: never reach a model hub; locate the shared real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path:
    """../shared/data next to the checkout (see its README), else the workplace copy; tests skip without it."""
    if "SODAKIT_SHARED_DATA" in os.environ:
        return Path(os.environ["SODAKIT_SHARED_DATA"])
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()
if SHARED_DATA.is_dir():
    # Library defaults (e.g. tblimp/hellaswag data) read the same variable, so they agree with the tests.
    os.environ.setdefault("SODAKIT_SHARED_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA} (set SODAKIT_SHARED_DATA)")
    return SHARED_DATA
