"""Loader for the Liebana et al. (2025) public data release's behaviour table.

File: ``long_term_learning_dataset_preprocessed_behaviour_all.csv`` (all 30
mice of the paper; the ``.npy`` files of :func:`mouse_rl.data.load_liebana2025`
hold 25). One row per trial, columns:

* ``expRef`` -- Rigbox experiment reference ``YYYY-MM-DD_N_SUBJECT``; the
  subject is its **last 6 characters** and the date its first 10 (when they
  parse as a date);
* ``sessionNum`` -- session number of the mouse (chronological);
* ``trialNumber`` -- trial order within the session;
* ``choice`` -- ``"Left"``, ``"Right"`` or ``"NoGo"``;
* ``feedback`` -- ``"Rewarded"`` means correct (anything else = not rewarded);
* ``contrastLeft``, ``contrastRight`` -- contrast of each side, fractions in
  [0, 1] or percent (``contrast_unit``);
* ``repeatNumber`` -- 1 for a fresh trial, > 1 for a repeat (correction)
  trial after an error (counted from the file's smallest value, so 0-based
  files work too);
* ``isShapedMouse``, ``isExpertMouse`` -- per-mouse flags (bool, 0/1 or
  ``"True"``/``"False"``);
* a response-time column (s): the first present of :data:`RT_COLUMNS`, or
  name it with ``rt_column``.

The paper's exclusions are options (all on by default): no-go trials (always
dropped: the trial table has no no-go choice), slow trials (response time
z-scored within each session, i.e. day; z >= 2 dropped), repeat trials,
shaped mice and non-expert mice. Every drop is reported as a
:class:`UserWarning` with its count. Order: mice first, then no-go, then the
RT z-score (computed over the session's responded trials, repeats included),
then repeats. The z-score uses the population standard deviation (ddof = 0);
the paper does not say which.

Reward is the file's feedback on every trial, zero contrast included (the
rewarded side at c = 0 was random and is known from the feedback).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mouse_rl.data._tidy import TRIAL_COLUMNS, finalize, read_table
from mouse_rl.data.validation import DataFormatError, describe_row, require_columns

__all__ = ["RELEASE_FILENAME", "RT_COLUMNS", "load_liebana_release"]

RELEASE_FILENAME = "long_term_learning_dataset_preprocessed_behaviour_all.csv"
#: Response-time column names tried in order when ``rt_column`` is not given.
RT_COLUMNS = ("responseTime", "response_time", "response_times", "RT", "rt", "reactionTime", "reaction_time")
REQUIRED = ["expRef", "sessionNum", "choice", "feedback", "contrastLeft", "contrastRight", "trialNumber"]
_CHOICE = {"left": 0, "right": 1, "nogo": -1}
_TRUE, _FALSE = {"true", "1", "1.0", "yes", "t"}, {"false", "0", "0.0", "no", "f"}
#: Extra columns kept beside :data:`mouse_rl.data.TRIAL_COLUMNS`.
EXTRA_COLUMNS = ["date", "expRef", "sessionNum", "trialNumber", "repeatNumber"]


def _flag(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    text = df[column].astype(str).str.strip().str.lower()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(f"{source}: {column!r} must be True/False (or 1/0), got "
                              f"{df.at[first, column]!r} at {describe_row(df, first)}")
    return text.isin(_TRUE)


def _drop(df: pd.DataFrame, mask: pd.Series, what: str, source: str) -> pd.DataFrame:
    n = int(mask.sum())
    if n:
        warnings.warn(f"{source}: dropped {n} of {len(df)} rows ({what})", UserWarning, stacklevel=3)
    return df.loc[~mask]


def _contrasts(df: pd.DataFrame, unit: str, source: str) -> tuple[pd.Series, pd.Series]:
    sides = []
    for col in ("contrastLeft", "contrastRight"):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any():
            first = values.isna().idxmax()
            raise DataFormatError(f"{source}: {col!r} is not a number ({df.at[first, col]!r}) at {describe_row(df, first)}")
        if (values < 0).any():
            first = (values < 0).idxmax()
            raise DataFormatError(f"{source}: {col!r} is negative ({values[first]:g}) at {describe_row(df, first)}")
        sides.append(values.astype(float))
    top = max(float(s.max()) for s in sides) if len(df) else 0.0
    if unit not in ("auto", "fraction", "percent"):
        raise ValueError(f"contrast_unit: must be 'auto', 'fraction' or 'percent', got {unit!r}")
    percent = unit == "percent" or (unit == "auto" and top > 1)
    if percent:
        sides = [s / 100 for s in sides]
    big = max(float(s.max()) for s in sides) if len(df) else 0.0
    if big > 1:
        raise DataFormatError(f"{source}: contrast up to {big * (100 if percent else 1):g} is above "
                              f"{'100 %' if percent else '1 (fraction)'}")
    return sides[0], sides[1]


def _rt_column(df: pd.DataFrame, rt_column: str | None, source: str) -> str | None:
    if rt_column is not None:
        require_columns(df, [rt_column], source)
        return rt_column
    return next((c for c in RT_COLUMNS if c in df.columns), None)


def load_liebana_release(path_or_df, *, exclude_slow: bool = True, rt_z_max: float = 2.0,
                         exclude_repeats: bool = True, exclude_shaped: bool = True,
                         exclude_non_expert: bool = True, rt_column: str | None = None,
                         contrast_unit: str = "auto") -> pd.DataFrame:
    """Load the release's behaviour CSV as a trial table, with the paper's exclusions.

    Parameters
    ----------
    path_or_df : str, pathlib.Path or pandas.DataFrame
        The CSV (or a folder holding :data:`RELEASE_FILENAME`), or its DataFrame.
    exclude_slow : bool
        Drop trials whose response time, z-scored within the session (day),
        is >= ``rt_z_max``. Needs a response-time column.
    rt_z_max : float
        z-score cut (standard deviations), default 2.
    exclude_repeats : bool
        Drop repeat (correction) trials (``repeatNumber`` above its minimum).
    exclude_shaped, exclude_non_expert : bool
        Drop mice with ``isShapedMouse`` true / ``isExpertMouse`` false.
    rt_column : str, optional
        Response-time column (s); default the first of :data:`RT_COLUMNS` present.
    contrast_unit : {"auto", "fraction", "percent"}
        Unit of the contrast columns; "auto" takes percent when any value exceeds 1.

    Returns
    -------
    pandas.DataFrame
        :data:`mouse_rl.data.TRIAL_COLUMNS` (``choice`` 1 = Right, 0 = Left;
        ``reward`` from ``feedback``; ``response_times`` in s or NaN), then
        ``date`` (from ``expRef``, or None), ``expRef``, ``sessionNum``,
        ``trialNumber`` and ``repeatNumber`` (NaN where absent). ``session``
        numbers each mouse's remaining sessions 1..S in ``sessionNum`` order;
        ``trial`` counts the remaining trials from 0 in ``trialNumber`` order.

    Raises
    ------
    DataFormatError
        For a missing column or a value outside its allowed set, naming the
        column, the value and the row.
    """
    if not isinstance(path_or_df, pd.DataFrame) and Path(path_or_df).is_dir():
        path_or_df = Path(path_or_df) / RELEASE_FILENAME
    df, source, _ = read_table(path_or_df)
    require_columns(df, REQUIRED, source)
    if rt_z_max <= 0 or not np.isfinite(rt_z_max):
        raise ValueError(f"rt_z_max: must be a positive number of standard deviations, got {rt_z_max!r}")

    ref = df["expRef"].astype(str)
    if df["expRef"].isna().any() or (ref.str.len() < 6).any():
        first = (df["expRef"].isna() | (ref.str.len() < 6)).idxmax()
        raise DataFormatError(f"{source}: 'expRef' must end in a 6-character subject name, got "
                              f"{df.at[first, 'expRef']!r} at {describe_row(df, first)}")
    df = df.assign(mouse=ref.str[-6:])
    choice_text = df["choice"].astype(str).str.strip().str.lower().str.replace("-", "").str.replace("_", "")
    bad = ~choice_text.isin(_CHOICE)
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(f"{source}: 'choice' must be 'Left', 'Right' or 'NoGo', got "
                              f"{df.at[first, 'choice']!r} at {describe_row(df, first)}")
    df = df.assign(_choice=choice_text.map(_CHOICE))
    for col in ("sessionNum", "trialNumber"):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any() or (values != values.round()).any():
            first = (values.isna() | (values != values.round())).idxmax()
            raise DataFormatError(f"{source}: {col!r} must be an integer, got {df.at[first, col]!r} at "
                                  f"{describe_row(df, first)}")

    if exclude_shaped:
        require_columns(df, ["isShapedMouse"], source)
        df = _drop(df, _flag(df, "isShapedMouse", source), "shaped mice, isShapedMouse", source)
    if exclude_non_expert:
        require_columns(df, ["isExpertMouse"], source)
        df = _drop(df, ~_flag(df, "isExpertMouse", source), "non-expert mice, isExpertMouse false", source)
    df = _drop(df, df["_choice"] < 0, "no-go trials, choice 'NoGo'", source)

    rt_col = _rt_column(df, rt_column, source)
    rt = pd.to_numeric(df[rt_col], errors="coerce").astype(float) if rt_col else pd.Series(np.nan, index=df.index)
    if exclude_slow:
        if rt_col is None:
            raise DataFormatError(f"{source}: exclude_slow needs a response-time column (tried {list(RT_COLUMNS)}); "
                                  "pass rt_column=... or exclude_slow=False")
        by_day = rt.groupby(df["expRef"])
        z = (rt - by_day.transform("mean")) / by_day.transform(lambda s: s.std(ddof=0))
        df = _drop(df, z >= rt_z_max, f"slow trials, within-session response-time z-score >= {rt_z_max:g}", source)
        rt = rt.loc[df.index]
    repeat = pd.Series(np.nan, index=df.index)
    if "repeatNumber" in df.columns:
        repeat = pd.to_numeric(df["repeatNumber"], errors="coerce")
        if exclude_repeats:
            df = _drop(df, repeat > repeat.min(), "repeat trials, repeatNumber above its minimum", source)
            repeat, rt = repeat.loc[df.index], rt.loc[df.index]
    elif exclude_repeats:
        raise DataFormatError(f"{source}: exclude_repeats needs a 'repeatNumber' column; pass exclude_repeats=False")
    if len(df) == 0:
        raise DataFormatError(f"{source}: no trials left after the exclusions")

    left, right = _contrasts(df, contrast_unit, source)
    df = df.assign(_left=left, _right=right, _rt=rt, _repeat=repeat,
                   _session_num=pd.to_numeric(df["sessionNum"]).astype("int64"),
                   _trial_num=pd.to_numeric(df["trialNumber"]).astype("int64"))
    df = df.sort_values(["mouse", "_session_num", "_trial_num"], kind="stable")
    session = df.groupby("mouse")["_session_num"].rank(method="dense").astype("int64")
    date = pd.to_datetime(df["expRef"].astype(str).str[:10], format="%Y-%m-%d", errors="coerce")
    _warn_date_order(df["mouse"], df["_session_num"], date, source)
    out = pd.DataFrame({
        "mouse": df["mouse"],
        "session": session,
        "trial": df.groupby(["mouse", session]).cumcount(),
        "contrastLeft": df["_left"],
        "contrastRight": df["_right"],
        "signed_contrast": df["_right"] - df["_left"],
        "choice": df["_choice"].astype("int64"),
        "reward": (df["feedback"].astype(str).str.strip().str.lower() == "rewarded").astype(float),
        "response_times": df["_rt"],
    })
    extras = pd.DataFrame({
        "mouse": out["mouse"], "session": out["session"], "trial": out["trial"],
        "date": date.dt.strftime("%Y-%m-%d").where(date.notna(), None),
        "expRef": df["expRef"].astype(str), "sessionNum": df["_session_num"], "trialNumber": df["_trial_num"],
        "repeatNumber": df["_repeat"].astype(float),
    })
    table = finalize(out, source)
    return table.merge(extras, on=["mouse", "session", "trial"], how="left", validate="one_to_one")[
        TRIAL_COLUMNS + EXTRA_COLUMNS]


def _warn_date_order(mouse: pd.Series, session_num: pd.Series, date: pd.Series, source: str) -> None:
    """Warn where a later ``sessionNum`` carries an earlier ``expRef`` date."""
    frame = pd.DataFrame({"mouse": mouse, "s": session_num, "d": date}).dropna().drop_duplicates(["mouse", "s"])
    for name, g in frame.sort_values(["mouse", "s"]).groupby("mouse"):
        back = g["d"].diff() < pd.Timedelta(0)
        if back.any():
            s = int(g.loc[back.idxmax(), "s"])
            warnings.warn(f"{source}: mouse {name!r} sessionNum {s} is dated before the session preceding it; "
                          "sessions are numbered in sessionNum order", UserWarning, stacklevel=3)
