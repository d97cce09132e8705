"""Loaders for psytrax-style ``.npy`` files (Liebana et al. 2025 data release).

The files are pickles; they are read with a restricted unpickler
(:mod:`mouse_rl.data.safe_npy`), so a crafted file cannot run code, not even
one that is then skipped as invalid.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mouse_rl.data._tidy import derive_reward, finalize, split_contrast
from mouse_rl.data.safe_npy import read_npy
from mouse_rl.data.validation import DataFormatError, validate_session_lengths, validate_trials
from mouse_rl.schema import KEY_COLUMNS

MISSING_SESSIONS = ("raise", "single_block")


def _get(container, key: str, path: Path, where: str = ""):
    if not isinstance(container, dict):
        raise DataFormatError(f"{path}: expected a dict{where}, got {type(container).__name__}")
    if key not in container:
        raise DataFormatError(
            f"{path}: key {key!r} is missing{where}; keys present: {sorted(map(str, container))}"
        )
    return container[key]


def _float_array(value, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: {key!r} must be an array of numbers, got {type(value).__name__} ({err})") from None


def _read_npy_dict(path: Path) -> dict:
    """The dict stored in a psytrax ``.npy`` file, unpickled safely (:func:`~mouse_rl.data.safe_npy.read_npy`)."""
    data = read_npy(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a pickled dict (np.save of a dict), got {type(data).__name__}")
    return data


def mouse_from_path(path) -> str:
    """Mouse name from a file name: the stem before ``_data`` (``DAP007_data.npy`` -> ``DAP007``)."""
    return Path(path).stem.split("_data")[0]


def load_psytrax_npy(path, mouse: str | None = None, *, missing_sessions: str = "raise") -> pd.DataFrame:
    """Load one mouse's psytrax ``.npy`` dict as a trial table.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npy`` pickle of a dict with ``inputs['c']`` (signed contrast,
        fraction), ``responses`` (1.0 = Right, 0.0 = Left), ``times`` (response
        time minus ``t_nd``, s), ``t_nd`` (non-decision time, s) and
        ``session_lengths`` (trials per session, chronological).
    mouse : str, optional
        Mouse name; default the file stem before ``_data``.
    missing_sessions : {"raise", "single_block"}
        Without ``session_lengths``: raise (default), or load all trials as
        session 1 with a :class:`UserWarning`.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`mouse_rl.data.TRIAL_COLUMNS`; ``response_times =
        times + t_nd`` (s); ``reward`` NaN at zero contrast (rewarded side not
        stored).

    Raises
    ------
    DataFormatError
        For a missing key (named with the file), unequal array lengths, bad
        session lengths or values outside the schema.
    """
    if missing_sessions not in MISSING_SESSIONS:
        raise ValueError(f"missing_sessions must be one of {MISSING_SESSIONS}, got {missing_sessions!r}")
    path = Path(path)
    data = _read_npy_dict(path)
    mouse = mouse_from_path(path) if mouse is None else str(mouse)
    inputs = _get(data, "inputs", path)
    signed = _float_array(_get(inputs, "c", path, " from 'inputs'"), path, "inputs['c']")
    arrays = {
        "inputs['c']": signed,
        "responses": _float_array(_get(data, "responses", path), path, "responses"),
        "times": _float_array(_get(data, "times", path), path, "times"),
    }
    t_nd = _float_array(_get(data, "t_nd", path), path, "t_nd")
    if t_nd.size != 1 or not np.isfinite(t_nd[0]):
        raise DataFormatError(
            f"{path}: 't_nd' (non-decision time, s) must be one finite number, got {t_nd.tolist()}; "
            "it is added to every response time"
        )
    t_nd = float(t_nd[0])
    n = len(signed)
    if any(len(a) != n for a in arrays.values()):
        raise DataFormatError(f"{path}: arrays differ in length: { {k: len(a) for k, a in arrays.items()} }")

    if "session_lengths" in data:
        lengths = validate_session_lengths(data["session_lengths"], n, mouse=mouse, source=str(path))
    elif missing_sessions == "single_block":
        warnings.warn(
            f"{path}: no 'session_lengths'; loaded its {n} trials as one unknown-session block "
            "(session 1): session boundaries are unknown",
            UserWarning,
            stacklevel=2,
        )
        lengths = np.array([n])
    else:
        raise DataFormatError(
            f"{path}: key 'session_lengths' is missing, so session boundaries are unknown. "
            "To load it anyway as one unknown-session block, call "
            "load_psytrax_npy(path, missing_sessions='single_block')"
        )

    left, right = split_contrast(pd.Series(signed))
    df = pd.DataFrame({
        "mouse": mouse,
        "session": np.repeat(np.arange(1, len(lengths) + 1), lengths),
        "trial": np.concatenate([np.arange(k) for k in lengths]),
        "contrastLeft": left,
        "contrastRight": right,
        "signed_contrast": signed,
        "choice": arrays["responses"],
        "reward": derive_reward(signed, arrays["responses"]),
        "response_times": arrays["times"] + t_nd,
    })
    return finalize(df, str(path), session_lengths=lengths)


def load_liebana2025(folder, mice=None, skip_invalid: bool = True, *, missing_sessions: str = "raise") -> pd.DataFrame:
    """Load every ``*_data.npy`` of a folder (one file per mouse) into one trial table.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder such as ``shared/data/liebana2025``.
    mice : iterable of str, optional
        Only these mice (file stem before ``_data``); each must exist.
    skip_invalid : bool
        Skip files that fail to load (e.g. DAP044, no ``session_lengths``) with
        one :class:`UserWarning` naming them; if False, raise the first error.
    missing_sessions : {"raise", "single_block"}
        A file without ``session_lengths``: an error (skipped with ``skip_invalid``; default), or loaded as
        one session with a :class:`UserWarning` (:func:`load_psytrax_npy`).

    Returns
    -------
    pandas.DataFrame
        All mice, sorted by mouse, session, trial.
    """
    if missing_sessions not in MISSING_SESSIONS:
        raise ValueError(f"missing_sessions must be one of {MISSING_SESSIONS}, got {missing_sessions!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    files = {mouse_from_path(p): p for p in sorted(folder.glob("*_data.npy"))}
    if mice is not None:
        mice = [str(m) for m in mice]
        absent = [m for m in mice if m not in files]
        if absent:
            raise DataFormatError(f"{folder}: no *_data.npy file for mice {absent}; found {sorted(files)}")
        files = {m: files[m] for m in mice}
    if not files:
        raise DataFormatError(f"{folder}: no *_data.npy files")

    tables, skipped = [], {}
    for name, path in files.items():
        try:
            tables.append(load_psytrax_npy(path, mouse=name, missing_sessions=missing_sessions))
        except DataFormatError as err:
            if not skip_invalid:
                raise
            skipped[name] = str(err)
    if skipped:
        reasons = "; ".join(f"{name}: {msg}" for name, msg in skipped.items())
        if "session_lengths" in reasons:
            reasons += ("; to load files without session_lengths as one session each, pass "
                        "missing_sessions='single_block'")
        warnings.warn(
            f"skipped {len(skipped)} invalid file(s) {sorted(skipped)} in {folder} ({reasons})",
            UserWarning,
            stacklevel=2,
        )
    if not tables:
        raise DataFormatError(f"{folder}: no valid *_data.npy files ({sorted(skipped)} invalid)")
    df = pd.concat(tables, ignore_index=True).sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    return validate_trials(df, str(folder))
