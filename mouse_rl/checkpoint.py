"""Atomic checkpoints for long runs, stored and loaded without executing code.

A checkpoint is a ``torch.save`` file holding only tensors and plain values
(dict, list, tuple, str, int, float, bool, None); tables are stored column by
column (:func:`encode`). It is read with ``torch.load(..., weights_only=True)``,
whose restricted unpickler refuses every other object, so a crafted
checkpoint cannot run code. A file that cannot be read, was written for
another run, or holds non-finite or ill-shaped values raises
:class:`CheckpointError`, which names the file and how to discard it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

#: Marks an encoded table inside a checkpoint.
_FRAME = "__mouse_rl_frame__"
#: How to discard a bad checkpoint, appended to every error.
DISCARD_HINT = "delete the file, or rerun `mouse-rl simulate` with --restart to discard it"


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, for another run, or with invalid content."""


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


def encode(obj):
    """``obj`` with every DataFrame and numpy array turned into tensors and plain values.

    Tables keep their column names and dtypes (numeric and bool columns as
    tensors, text columns as lists of str) and get a fresh RangeIndex back.
    """
    if isinstance(obj, pd.DataFrame):
        columns, dtypes, data = [], [], []
        for name in obj.columns:
            col = obj[name]
            columns.append(str(name))
            dtypes.append(str(col.dtype))
            if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
                data.append([str(v) for v in col.tolist()])  # tolist: no per-element pandas access
            else:
                data.append(torch.from_numpy(np.array(col.to_numpy(), copy=True)))
        return {_FRAME: True, "columns": columns, "dtypes": dtypes, "data": data}
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(encode(v) for v in obj)
    if obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} (tensors, tables and plain values only)")


def decode(obj):
    """Inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if obj.get(_FRAME) is True:
            data = {name: (np.asarray(values, dtype=object) if isinstance(values, list) else values.numpy())
                    for name, values in zip(obj["columns"], obj["data"])}
            frame = pd.DataFrame(data, columns=obj["columns"])
            return frame.astype(dict(zip(obj["columns"], obj["dtypes"])))
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    return obj


def save_atomic(obj, path) -> None:
    """Store ``obj`` (see :func:`encode`) at ``path`` atomically (see :func:`write_atomic`)."""
    encoded = encode(obj)
    write_atomic(path, lambda tmp: torch.save(encoded, tmp))


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_atomic`; never executes code from the file.

    Raises
    ------
    CheckpointError
        Empty, truncated or garbled file, a file that holds anything but
        tensors and plain values, or not a dict.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint: {path} is empty (0 bytes); {DISCARD_HINT}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            raise CheckpointError(f"checkpoint: {path} is not a mouse_rl checkpoint (not a torch.save archive); "
                                  f"{DISCARD_HINT}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = decode(raw)
    except Exception as err:  # torch/pickle raise many types for foreign or damaged files
        raise CheckpointError(
            f"checkpoint: {path} is corrupt or not a mouse_rl checkpoint ({type(err).__name__}: {_short(err)}); "
            f"{DISCARD_HINT}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint: {path} holds a {type(state).__name__}, not a checkpoint dict; {DISCARD_HINT}")
    return state


def _non_finite(obj, where: str):
    """Name of the first floating tensor/table column in ``obj`` with NaN or inf, else None."""
    if isinstance(obj, torch.Tensor):
        return where if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    if isinstance(obj, pd.DataFrame):
        for col in obj.columns:
            if pd.api.types.is_float_dtype(obj[col]) and not np.isfinite(obj[col].to_numpy()).all():
                return f"{where}[{col!r}]"
        return None
    if isinstance(obj, float):
        return where if not np.isfinite(obj) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key!r}]" if where else repr(key))
        if found:
            return found
    return None


def load_matching(path, fingerprint: dict) -> dict | None:
    """Load a checkpoint if it exists; it must have been written for the same run (``fingerprint``).

    Raises
    ------
    CheckpointError
        Unreadable file (see :func:`load_checkpoint`), another run's
        checkpoint, or NaN/inf anywhere in its numbers.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise CheckpointError(f"checkpoint: {path} is a folder, expected a checkpoint file")
    state = load_checkpoint(path)
    saved = state.get("fingerprint", {})
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint: {path} has no valid fingerprint; {DISCARD_HINT}")
    differing = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differing:
        raise CheckpointError(
            f"checkpoint: {path} was written for a different run (differs in {', '.join(differing)}); "
            f"{DISCARD_HINT}, or choose another checkpoint path"
        )
    bad = _non_finite({k: v for k, v in state.items() if k != "fingerprint"}, "")
    if bad:
        raise CheckpointError(f"checkpoint: {path} holds NaN or inf values in {bad}; {DISCARD_HINT}")
    return state


def _require(condition: bool, path: Path, what: str) -> None:
    if not condition:
        raise CheckpointError(f"checkpoint: {path} is invalid: {what}; {DISCARD_HINT}")


def _shaped(value, shape) -> bool:
    return isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(shape)


def load_cohort_state(path, fingerprint: dict, trials_per_session: int, log_keys=None,
                      summary: bool = False) -> dict | None:
    """:func:`load_matching` for :func:`mouse_rl.simulate.simulate_cohort`, with its layout checked.

    Parameters
    ----------
    path : checkpoint file (None or absent: no state).
    fingerprint : the run's fingerprint (``n_mice``, ``n_sessions``, ...).
    trials_per_session : trials per session (a checkpoint is written at a session end).
    log_keys : names of the per-trial logs the run keeps (each ``(n_mice, trials done)``), or None
        without a trial log.
    summary : the run keeps per-session counters (``state["summary"]``, ``(n_mice, n_sessions, 8)`` int64).

    Raises
    ------
    CheckpointError
        As :func:`load_matching`, or for a trial counter, weight shapes, snapshots
        or logs that do not fit the run.
    """
    if path is None:
        return None
    state = load_matching(path, fingerprint)
    if state is None:
        return None
    path = Path(path)
    n, total = int(fingerprint["n_mice"]), int(fingerprint["n_sessions"]) * int(trials_per_session)
    start = state.get("global_trial")
    _require(isinstance(start, int) and not isinstance(start, bool), path, f"trial counter {start!r} is not an integer")
    _require(0 < start < total and start % trials_per_session == 0, path,
             f"trial counter {start} is not a session end before trial {total}")
    _require(_shaped(state.get("a"), (n, 3)), path, f"cortical gains 'a' must have shape ({n}, 3)")
    _require(_shaped(state.get("U"), (n, 2, 3)), path, f"striatal weights 'U' must have shape ({n}, 2, 3)")
    _require(_shaped(state.get("signed_contrast"), (n,)), path, f"'signed_contrast' must have shape ({n},)")
    snapshots = state.get("snapshots")
    _require(isinstance(snapshots, list) and len(snapshots) == start // trials_per_session + 1
             and all(isinstance(s, pd.DataFrame) and len(s) == n for s in snapshots), path,
             f"expected {start // trials_per_session + 1} weight snapshots of {n} mice")
    log = state.get("log")
    if log_keys is None:
        _require(log is None, path, "holds a trial log this run does not keep")
    else:
        _require(isinstance(log, dict) and set(log) == set(log_keys), path,
                 f"trial log columns {sorted(log) if isinstance(log, dict) else log!r} differ from {sorted(log_keys)}")
        bad = [k for k in log_keys if not _shaped(log[k], (n, start))]
        _require(not bad, path, f"trial log column(s) {bad} must have shape ({n}, {start}) (mice x trials)")
    if summary:
        counts = state.get("summary")
        _require(_shaped(counts, (n, int(fingerprint["n_sessions"]), 8)) and counts.dtype == torch.int64, path,
                 f"per-session counters 'summary' must be int64 of shape ({n}, {fingerprint['n_sessions']}, 8)")
    return state
