"""Where and in what precision a model runs: the one device picker and dtype table of every stage.

`device` is "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:i"; `dtype` is a name of
`DTYPES`. float16 runs only on CUDA: CPU kernels for it are missing or slow, bfloat16 is the CPU choice.
"""

from __future__ import annotations

import torch

from sodakit.errors import UserError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(UserError, ValueError):
    """A device or dtype that does not exist or is not available on this machine."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for `device`; "auto" is CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise DeviceError(f"device {device!r} unknown; choose auto, cpu, cuda or cuda:INDEX") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype named `dtype`, refused where it cannot run (float16 off CUDA)."""
    if isinstance(dtype, torch.dtype):
        names = [name for name, value in DTYPES.items() if value == dtype]
        if not names:
            raise DeviceError(f"dtype must be one of {list(DTYPES)}, got {dtype}")
        dtype = names[0]
    if dtype not in DTYPES:
        raise DeviceError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if dtype == "float16" and resolve_device(device).type == "cpu":
        raise DeviceError("float16 is not supported on CPU; use float32 (default) or bfloat16")
    return DTYPES[dtype]
