"""Checks every command gets at the CLI boundary, before any work: device, seed and --out.

:func:`check_common` runs on the parsed arguments of every command that has
the option: ``--device`` is resolved (unknown names and CUDA without a GPU
are errors), ``--seed`` must lie in the range the counter-based random
streams use, and ``--out`` must not be a file where a folder is written (or
a folder where a file is written) nor lie below a file or an unwritable folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import resolve_device

#: Seeds are uint32: the per-mouse streams hash ``seed & 0xFFFFFFFF``, so larger values would alias.
SEED_MIN, SEED_MAX = 0, 2**32 - 1
#: What each command's --out names.
OUT_KINDS = {"simulate": "file", "theory": "file", "fit": "folder", "recover": "folder", "dopamine": "folder",
             "sweep": "folder", "demo": "folder", "forecast": "folder", "fetch-ibl": "folder"}


def check_seed(value, option: str = "--seed") -> int:
    """Return ``value`` if it is an integer in [0, 2**32 - 1], else raise ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int) or not SEED_MIN <= value <= SEED_MAX:
        raise ValueError(f"{option}: must be an integer in [{SEED_MIN}, {SEED_MAX}] (2**32 - 1), got {value!r}")
    return value


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_out(path, kind: str, option: str = "--out") -> None:
    """Raise ValueError if ``path`` cannot be the output ``kind`` (``"file"`` or ``"folder"``)."""
    path = Path(path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ValueError(f"{option}: {str(path)!r} is an existing file; give a folder (it is created if missing)")
    if kind == "file" and path.is_dir():
        raise ValueError(f"{option}: {str(path)!r} is an existing folder; give a file name")
    anchor = _nearest_existing(path.parent if kind == "file" else path)
    if not anchor.is_dir():
        raise ValueError(f"{option}: cannot create {str(path)!r}: {str(anchor)!r} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write to {str(path)!r}: no write permission in {str(anchor)!r}")


def check_common(args) -> None:
    """Check (and normalise in place) the options shared by the commands; see the module docstring."""
    if getattr(args, "device", None) is not None:
        args.device = resolve_device(args.device)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed)
    kind = OUT_KINDS.get(getattr(args, "command", None))
    if kind is not None and getattr(args, "out", None) is not None:
        check_out(args.out, kind)
