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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on localhost for the session: moto's standalone server (what s3fs's own
    tests use) on a free port, started and stopped here. The AWS variables it sets (dummy credentials, the
    endpoint) reach every client: fsspec/s3fs in this process and the `sodakit` subprocesses."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A new, empty bucket on the session's S3 server: "s3://<name>"."""
    import uuid

    import fsspec

    name = f"test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(name)
    return f"s3://{name}"


@pytest.fixture
def sodakit_cache(tmp_path, monkeypatch) -> Path:
    """sodakit's cache (copies of remote files, run-directory mirrors) in a folder of this test."""
    path = tmp_path / "sodakit-cache"
    monkeypatch.setenv("SODAKIT_CACHE", str(path))
    return path


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache for this test, offline: hub ids resolve only from what the test puts
    in it (tests/hub_cache.py), in this process and in `sodakit` subprocesses (HF_HUB_CACHE)."""
    path = tmp_path / "hf-hub"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return path
