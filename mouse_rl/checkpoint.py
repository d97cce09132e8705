"""Atomic checkpoints for long runs: write to a temporary file, then rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch


def write_atomic(path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    A reader sees the old file or the complete new one, never a torn one,
    even if the writer is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_atomic(obj, path) -> None:
    """``torch.save`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_matching(path, fingerprint: dict) -> dict | None:
    """Load a checkpoint if it exists; it must have been written for the same run (``fingerprint``)."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("fingerprint", {})
    differing = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differing:
        raise ValueError(
            f"checkpoint: {path} was written for a different run (differs in {', '.join(differing)}); "
            "delete it or choose another checkpoint path"
        )
    return state
