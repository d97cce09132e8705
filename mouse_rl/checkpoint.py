"""Atomic checkpoints for long runs: write to a temporary file, then rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(obj, path) -> None:
    """``torch.save`` to ``path`` so that a reader sees the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
