"""Small helpers shared by CLI commands."""
from __future__ import annotations

import torch

DEVICE_HELP = "cpu, cuda, cuda:N or auto"


def resolve_device(name: str, option: str = "--device") -> str:
    """Check a device name and return it; ``auto`` -> cuda when available, else cpu.

    Raises
    ------
    ValueError
        An unknown device (``foo``), ``cuda`` without a CUDA GPU, or a GPU
        index beyond the GPUs present, naming ``option`` and the value.
    """
    name = str(name).strip()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{option}: unknown device {name!r}; use {DEVICE_HELP}") from None
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise ValueError(f"{option}: unknown device {name!r}; use {DEVICE_HELP}")
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option}: {name!r} requested but no CUDA GPU is available (use --device cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"{option}: {name!r} requested but only {count} CUDA GPU(s) are present (cuda:0..cuda:{count - 1})")
        return name
    if device.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return name
    raise ValueError(f"{option}: device {name!r} is not supported here; use {DEVICE_HELP}")


def add_device_option(parser) -> None:
    parser.add_argument("--device", default="cpu", help=f"{DEVICE_HELP} (default %(default)s)")
    parser.add_argument("--float64", action="store_true", help="compute in float64 (default float32)")


def dtype_of(args) -> torch.dtype:
    return torch.float64 if getattr(args, "float64", False) else torch.float32
