"""Per-trial dopamine recordings: loading, validation, alignment, normalisation.

Format: one row per recorded trial with the key columns ``mouse``,
``session`` (from 1), ``trial`` (from 0) of the trial table
(:mod:`mouse_rl.schema`) and one float column per recorded region, named
``da_<REGION>`` (e.g. ``da_DLS_left``, ``da_DLS_right``, ``da_DMS``,
``da_NAc``). Values follow the paper's measurement: the peak of the
stimulus-aligned z-scored signal 0.20-0.35 s after stimulus onset
(:func:`peak_response` computes it from raw traces), normalised per session
(:func:`normalise_per_session`).

Hemispheres: a ``da_DLS_left`` fibre sits in the left hemisphere, whose
*contralateral* stimulus is the right one (and vice versa);
:func:`contralateral_view` picks per trial the DLS signal of the hemisphere
contralateral to the presented stimulus.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mouse_rl.data import DataFormatError
from mouse_rl.data.files import read_table_file
from mouse_rl.schema import KEY_COLUMNS

from ._common import require, rows_text, stimulus_side

__all__ = [
    "REGION_PREFIX", "PAPER_WINDOW", "region_columns", "validate_recordings", "load_recordings",
    "align_recordings", "normalise_per_session", "peak_response", "contralateral_view",
]

REGION_PREFIX = "da_"
#: Peak window after stimulus onset used by the paper (seconds).
PAPER_WINDOW = (0.20, 0.35)


def region_columns(df: pd.DataFrame) -> list[str]:
    """The ``da_*`` columns of a table, in order."""
    return [c for c in df.columns if isinstance(c, str) and c.startswith(REGION_PREFIX)]


def validate_recordings(df: pd.DataFrame, source: str = "recordings", *, allow_nan: bool = False) -> pd.DataFrame:
    """Check a recording table; return it. Raises :class:`mouse_rl.data.DataFormatError` naming field and rows."""
    err = DataFormatError
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    for col in KEY_COLUMNS:
        if col not in df.columns:
            raise err(f"{source}: missing key column {col!r}; columns present: {list(map(str, df.columns))}")
    if len(df) == 0:
        raise err(f"{source}: no recorded trials (the table has no rows)")
    regions = region_columns(df)
    if not regions:
        raise err(f"{source}: no dopamine columns (names starting with {REGION_PREFIX!r}, e.g. 'da_DLS_left'); "
                  f"columns present: {list(map(str, df.columns))}")
    for col in KEY_COLUMNS:
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise err(f"{source}: key column {col!r} is missing (NaN) at {rows_text(df, bad)}")
    for col, minimum in (("session", 1), ("trial", 0)):
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = np.isnan(v) | (v != np.round(v)) | (v < minimum)
        if bad.any():
            raise err(f"{source}: {col!r} must be an integer >= {minimum}; bad values at {rows_text(df, bad)}")
    dup = df.duplicated(KEY_COLUMNS, keep=False).to_numpy()
    if dup.any():
        raise err(f"{source}: duplicate trials (mouse, session, trial) at {rows_text(df, dup)}")
    for col in regions:
        v = pd.to_numeric(df[col], errors="coerce")
        bad = (v.isna() & df[col].notna()).to_numpy()
        if bad.any():
            raise err(f"{source}: {col!r} has non-numeric values at {rows_text(df, bad)}")
        bad = ~np.isfinite(v.to_numpy(float))
        if not allow_nan and bad.any():
            raise err(f"{source}: {col!r} has NaN/inf values at {rows_text(df, bad)} "
                      "(drop those trials from the file; from Python, load_recordings(..., allow_nan=True) keeps them)")
    return df


def _read(path_or_df, source):
    if isinstance(path_or_df, pd.DataFrame):
        return path_or_df.copy(), source or "recordings"
    path = Path(path_or_df)
    if not path.exists():
        raise FileNotFoundError(f"recordings file not found: {path}")
    return read_table_file(path, "recordings table"), source or str(path)


def load_recordings(path_or_df, trials: pd.DataFrame | None = None, *, source: str | None = None,
                    allow_nan: bool = False) -> pd.DataFrame:
    """Load and validate a recording table (``.parquet``, ``.csv`` or DataFrame).

    Returns the key columns (session and trial as int64) and the ``da_*``
    columns as float, sorted by key. With ``trials`` it also checks that every
    recorded trial exists in the trial table (see :func:`align_recordings`).
    """
    df, source = _read(path_or_df, source)
    validate_recordings(df, source, allow_nan=allow_nan)
    out = df[KEY_COLUMNS + region_columns(df)].copy()
    out["session"] = out["session"].astype(np.int64)
    out["trial"] = out["trial"].astype(np.int64)
    for col in region_columns(out):
        out[col] = pd.to_numeric(out[col]).astype(float)
    out = out.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    if trials is not None:
        align_recordings(trials, out, source=source)
    return out


def align_recordings(trials: pd.DataFrame, recordings: pd.DataFrame, *, source: str = "recordings") -> pd.DataFrame:
    """The recorded trials of ``trials`` with the ``da_*`` columns joined on mouse/session/trial.

    Raises if a recorded trial is not in the trial table, or if the trial
    table already has ``da_*`` columns of the same name.
    """
    require(trials, KEY_COLUMNS, "trial table")
    validate_recordings(recordings, source, allow_nan=True)
    regions = region_columns(recordings)
    clash = [c for c in regions if c in trials.columns]
    if clash:
        raise DataFormatError(f"{source}: columns {clash} exist in the trial table too")
    rec = recordings[KEY_COLUMNS + regions].copy()
    t = trials.copy()
    for frame in (rec, t):
        frame["mouse"] = frame["mouse"].astype(str)
        frame["session"] = frame["session"].astype(np.int64)
        frame["trial"] = frame["trial"].astype(np.int64)
    merged = t.merge(rec, on=KEY_COLUMNS, how="right", validate="one_to_one", indicator=True)
    missing = (merged["_merge"] == "right_only").to_numpy()
    if missing.any():
        raise DataFormatError(f"{source}: recorded trials not in the trial table at {rows_text(merged, missing)}")
    return merged.drop(columns="_merge")


def normalise_per_session(df: pd.DataFrame, regions=None, *, source: str = "recordings") -> pd.DataFrame:
    """Divide each session's region values by that session's mean on rewarded zero-contrast trials.

    ``df`` needs ``mouse``, ``session``, ``signed_contrast``, ``reward`` and the
    region columns (use :func:`align_recordings` first). Returns a copy. Raises
    :class:`mouse_rl.data.DataFormatError` naming the sessions that have no
    rewarded zero-contrast trial with a finite value, or whose reference mean is 0.
    """
    regions = list(regions) if regions is not None else region_columns(df)
    if not regions:
        raise DataFormatError(f"{source}: no dopamine columns to normalise (names starting with {REGION_PREFIX!r})")
    for col in ["mouse", "session", "signed_contrast", "reward"] + regions:
        if col not in df.columns:
            hint = " (join the trial table first: align_recordings(trials, recordings))" if col in ("signed_contrast", "reward") else ""
            raise DataFormatError(f"{source}: missing column {col!r} needed for normalisation{hint}")
    out = df.copy()
    ref_trial = (out["reward"] == 1) & (out["signed_contrast"].abs() < 1e-9)
    for col in regions:
        ref = out[col].where(ref_trial)
        mean = ref.groupby([out["mouse"], out["session"]]).transform("mean")
        per_session = ref.groupby([out["mouse"], out["session"]]).mean()
        bad = per_session[~np.isfinite(per_session) | (per_session == 0)]
        if len(bad):
            sessions = ", ".join(f"(mouse {m!r}, session {int(s)})" for m, s in bad.index[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise DataFormatError(
                f"{source}: cannot normalise {col!r}: no rewarded zero-contrast trial with a finite, non-zero "
                f"mean response in {sessions}{more}")
        out[col] = out[col] / mean
    return out


def peak_response(traces, times, window=PAPER_WINDOW) -> np.ndarray:
    """Peak of each trial's stimulus-aligned trace within ``window`` (s after onset).

    Parameters
    ----------
    traces : array (n_trials, n_times) (or (n_times,)), z-scored signal.
    times : array (n_times,), seconds relative to stimulus onset, increasing.
    window : (start, end) inclusive, default the paper's (0.20, 0.35).

    Returns
    -------
    ndarray (n_trials,) (or scalar for one trace): the maximum over the window.
    """
    traces = np.asarray(traces, dtype=float)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or traces.shape[-1] != times.shape[0]:
        raise ValueError(f"traces: last axis ({traces.shape[-1]}) must match times ({times.shape})")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times: must be strictly increasing")
    lo, hi = window
    if not lo < hi:
        raise ValueError(f"window: start must be < end, got {window}")
    inside = (times >= lo - 1e-12) & (times <= hi + 1e-12)
    if not inside.any():
        raise ValueError(f"window {window}: no samples between {lo} and {hi} s (times span {times[0]}..{times[-1]} s)")
    seg = traces[..., inside]
    if np.isnan(seg).any():
        bad = np.flatnonzero(np.isnan(seg).reshape(-1, seg.shape[-1]).any(-1))
        raise ValueError(f"traces: NaN inside the peak window in trial(s) {bad[:10].tolist()}")
    return seg.max(axis=-1)


def contralateral_view(df: pd.DataFrame, left: str = "da_DLS_left", right: str = "da_DLS_right") -> pd.DataFrame:
    """Per trial, the DLS signal of the hemisphere contralateral (and ipsilateral) to the stimulus.

    A left-hemisphere fibre (``left``) is contralateral to the *right*
    stimulus: right stimulus (c > 0) -> ``left`` column; left stimulus (c < 0)
    -> ``right`` column; zero contrast -> NaN. Returns key columns,
    ``signed_contrast``, ``stimulus_side``, ``contra_hemisphere`` and
    ``da_DLS_contra`` / ``da_DLS_ipsi``.
    """
    require(df, ["signed_contrast", left, right], "recordings")
    c = df["signed_contrast"].to_numpy(float)
    lv, rv = df[left].to_numpy(float), df[right].to_numpy(float)
    keys = [k for k in KEY_COLUMNS if k in df.columns]
    out = df[keys + ["signed_contrast"]].copy()
    out["stimulus_side"] = stimulus_side(c)
    out["contra_hemisphere"] = np.where(c > 0, "left", np.where(c < 0, "right", "none"))
    out["da_DLS_contra"] = np.where(c > 0, lv, np.where(c < 0, rv, np.nan))
    out["da_DLS_ipsi"] = np.where(c > 0, rv, np.where(c < 0, lv, np.nan))
    return out
