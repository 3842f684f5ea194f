"""A Hugging Face hub cache built locally, laid out the way huggingface_hub lays it out, so that hub ids
resolve offline (HF_HUB_OFFLINE=1) in tests exactly as they do from a real cache."""

from __future__ import annotations

import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def make_hub_repo(cache: Path, repo_id: str, files: dict[str, bytes] | Path, repo_type: str = "model",
                  revision: str = REVISION) -> Path:
    """<cache>/<type>s--org--name/snapshots/<revision>/... (files given as {name: bytes} or copied from a
    folder) and refs/main naming the revision; returns the snapshot folder."""
    root = Path(cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = root / "snapshots" / revision
    if isinstance(files, Path):
        shutil.copytree(files, snap)
    else:
        for name, data in files.items():
            (snap / name).parent.mkdir(parents=True, exist_ok=True)
            (snap / name).write_bytes(data)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snap
