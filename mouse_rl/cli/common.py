"""Small helpers shared by CLI commands."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device: {name!r} requested but no CUDA GPU is available (use --device cpu)")
    return name


def add_device_option(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default %(default)s)")
    parser.add_argument("--float64", action="store_true", help="compute in float64 (default float32)")


def dtype_of(args) -> torch.dtype:
    return torch.float64 if getattr(args, "float64", False) else torch.float32
