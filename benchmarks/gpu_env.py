"""What a GPU session runs on: interpreter, torch / CUDA / cuDNN versions, the GPU, and which of the imports
the benchmarks need are missing (so a failing step of benchmarks/gpu_session.sh is explained in its log).

    python benchmarks/gpu_env.py [--json FILE]

Exits 0 even when imports are missing: it reports, the benchmarks themselves fail.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# Third-party imports of gpu_train.py (omegaconf through sodakit.config) and bench_codec.py (soundfile, soxr
# through sodakit.audio.io), then the sodakit modules themselves.
MODULES = ("torch", "numpy", "transformers", "safetensors", "yaml", "omegaconf", "tqdm", "pyarrow", "soundfile",
           "soxr", "sodakit.train.trainer", "sodakit.audio.mimi")


def report() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable, "host": platform.node(),
                  "commit": rev or None, "imports": {}, "missing": []}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
            info["imports"][name] = str(getattr(mod, "__version__", "ok"))
        except Exception as e:  # any import-time failure is what we want to report
            info["missing"].append(name)
            info["imports"][name] = f"FAILED: {type(e).__name__}: {e}"
    if "torch" not in info["missing"]:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                           "sms": p.multi_processor_count, "capability": f"{p.major}.{p.minor}"}
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    info = report()
    for key in ("python", "executable", "host", "commit", "torch", "cuda", "cudnn", "cuda_available", "gpu"):
        if key in info:
            print(f"{key}: {info[key]}")
    for name, status in info["imports"].items():
        print(f"import {name}: {status}")
    print(f"missing: {', '.join(info['missing']) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
