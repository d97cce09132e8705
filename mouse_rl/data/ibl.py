"""Loader for IBL ALF trials tables (``one.load_object(eid, 'trials').to_df()`` and the like)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mouse_rl.data._tidy import derive_reward, drop_rows, finalize, map_choice, mouse_names, read_table
from mouse_rl.data.validation import DataFormatError, check_values, describe_row, require_columns

#: IBL ``choice``: -1 = rightward report (our 1), +1 = leftward (our 0), 0 = no-go (dropped).
IBL_CHOICE = {-1: 1, 1: 0}
SESSION_COLUMNS = ("session", "session_id", "eid")
#: Mouse name given to a table without a ``mouse``/``subject`` column (DataFrame input).
DEFAULT_MOUSE = "mouse"


#: Columns giving a session's time, used to order sessions (first present wins).
TIME_COLUMNS = ("session_start_time", "start_time", "date")
#: Extra columns kept beside :data:`mouse_rl.data.TRIAL_COLUMNS` where the input has them.
KEPT_COLUMNS = ("probabilityLeft", "session_start_time", "date")


def _session_times(df: pd.DataFrame, source: str) -> tuple[str | None, pd.Series | None]:
    """The first time column of :data:`TIME_COLUMNS` present, parsed (NaT where missing)."""
    col = next((c for c in TIME_COLUMNS if c in df.columns), None)
    if col is None:
        return None, None
    times = pd.to_datetime(df[col], errors="coerce", format="mixed")
    bad = times.isna() & df[col].notna()
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(f"{source}: {col!r} must be a date/time, got {df.at[first, col]!r} at "
                              f"{describe_row(df, first)} ({int(bad.sum())} rows)")
    return col, times


def _warn_ties_and_gaps(labels: pd.Series, times: pd.Series, mouse: pd.Series, col: str, source: str,
                        max_gap_days: float) -> None:
    """Warn where two sessions of a mouse share a time, and where consecutive sessions are far apart."""
    per = pd.DataFrame({"mouse": mouse.to_numpy(), "label": labels.to_numpy(), "time": times.to_numpy()})
    per = per.dropna(subset=["time"]).drop_duplicates(["mouse", "label"]).sort_values(["mouse", "time"])
    for name, g in per.groupby("mouse", sort=False):
        tied = g[g["time"].duplicated(keep=False)]
        if not tied.empty:
            warnings.warn(f"{source}: mouse {name!r} has sessions with the same {col} ({tied['time'].iloc[0]}): "
                          f"{tied['label'].tolist()[:6]}; ordered by order of appearance", UserWarning, stacklevel=4)
        gaps = g["time"].diff().dt.total_seconds().to_numpy() / 86400.0
        for i in np.flatnonzero(gaps > max_gap_days):
            warnings.warn(f"{source}: mouse {name!r} has a gap of {gaps[i]:.0f} days before the session of "
                          f"{g['time'].iloc[i]} (more than max_gap_days={max_gap_days:g})", UserWarning, stacklevel=4)


def session_numbers(df: pd.DataFrame, mouse: pd.Series, source: str, max_gap_days: float = 7) -> pd.Series:
    """Session number (from 1) per row, chronological where the table says when sessions happened.

    * An integer ``session`` column is used as is (a :class:`UserWarning` if a
      time column orders the sessions differently).
    * Otherwise sessions are the distinct values of the first of
      ``session``/``session_id``/``eid``/``date`` (or, without any, of a time
      column), numbered 1..S per mouse in order of their time where a time
      column exists (:data:`TIME_COLUMNS`: ``session_start_time``,
      ``start_time``, ``date``; as in ONE's subject trials table), else in
      order of appearance. A :class:`UserWarning` flags ties (two sessions
      with the same time) and gaps (more than ``max_gap_days`` days between
      consecutive sessions).
    * Without a session or time column all rows are session 1 (with a warning).
    """
    time_col, times = _session_times(df, source)
    col = next((c for c in SESSION_COLUMNS if c in df.columns), None) or time_col
    if col is None:
        warnings.warn(
            f"{source}: no session column (tried {list(SESSION_COLUMNS + TIME_COLUMNS)}); all trials are session 1",
            UserWarning,
            stacklevel=3,
        )
        return pd.Series(1, index=df.index)
    if df[col].isna().any():
        raise DataFormatError(f"{source}: {col!r} is missing (NaN) at {describe_row(df, df[col].isna().idxmax())}")
    labels = df[col]
    if col == "session" and pd.api.types.is_numeric_dtype(df[col]):
        if times is not None:
            first = pd.DataFrame({"m": mouse.to_numpy(), "s": labels.to_numpy(), "t": times.to_numpy()}) \
                .groupby(["m", "s"])["t"].min().reset_index()
            for name, g in first.groupby("m"):
                t = g.sort_values("s")["t"].dropna()
                if (t.diff().dt.total_seconds() < 0).any():
                    warnings.warn(f"{source}: mouse {name!r}: the 'session' numbers do not follow {time_col!r}; "
                                  "kept as given (drop the 'session' column to number sessions by time)",
                                  UserWarning, stacklevel=3)
        return df[col]
    if times is None:
        return labels.groupby(mouse, sort=False).transform(lambda s: pd.factorize(s)[0] + 1)
    _warn_ties_and_gaps(labels, times, mouse, time_col, source, max_gap_days)
    start = pd.DataFrame({"m": mouse.to_numpy(), "s": labels.to_numpy(), "t": times.to_numpy(),
                          "appear": np.arange(len(df))}, index=df.index)
    per = start.groupby(["m", "s"], sort=False).agg(t=("t", "min"), appear=("appear", "min")).reset_index()
    per = per.sort_values(["m", "t", "appear"], na_position="last", kind="stable")
    per["number"] = per.groupby("m", sort=False).cumcount() + 1
    key = pd.MultiIndex.from_frame(start[["m", "s"]])
    return pd.Series(per.set_index(["m", "s"])["number"].reindex(key).to_numpy(), index=df.index)


def _check_ibl_choice_codes(df: pd.DataFrame, source: str) -> None:
    """Refuse 0/1-coded choices: in IBL files 0 is a no-go and there is no Right without -1."""
    values = set(pd.to_numeric(df["choice"], errors="coerce").dropna().unique().tolist())
    if 0 in values and -1 not in values:
        n_zero = int((pd.to_numeric(df["choice"], errors="coerce") == 0).sum())
        raise DataFormatError(
            f"{source}: 'choice' holds only {sorted(values)} ({n_zero} of {len(df)} rows are 0) and never -1: "
            "this looks like 0 = Left / 1 = Right coding, not IBL (-1 = Right, +1 = Left, 0 = no-go). "
            "Load it with load_signed_contrast_csv (add a signed_contrast column), or recode choice to IBL"
        )


def load_ibl_trials(path_or_df, mouse: str | None = None, *, reward_rule: str = "stimulus",
                    max_gap_days: float = 7) -> pd.DataFrame:
    """Load an IBL ALF trials table as a trial table in the mouse_rl convention.

    Parameters
    ----------
    path_or_df : str, pathlib.Path or pandas.DataFrame
        Parquet or CSV file, or a DataFrame, with ``contrastLeft`` and
        ``contrastRight`` (fractions, NaN on the side without a stimulus) and
        IBL ``choice`` (-1 = rightward report, +1 = leftward, 0 = no-go).
        Optional: ``feedbackType`` (+1 correct, -1 error), ``response_times``
        (s; made relative to ``stimOn_times`` (s) when that column exists),
        a session column and/or a session time column (``session_start_time``,
        ``start_time`` or ``date``: sessions are numbered chronologically, see
        :func:`session_numbers`), ``mouse`` or ``subject``, ``probabilityLeft``.
    mouse : str, optional
        Mouse name; default the ``mouse``/``subject`` column, else the file
        stem, else (a DataFrame without either, e.g. ONE's ``to_df()``)
        :data:`DEFAULT_MOUSE` with a :class:`UserWarning`.
    reward_rule : {"stimulus", "recorded"}
        ``"stimulus"`` (default): ``feedbackType`` must agree with contrast and
        choice on every trial with a stimulus (an error otherwise);
        ``"recorded"``: the task had another rule, use ``feedbackType`` as is.
    max_gap_days : float
        Warn when consecutive sessions of a mouse are more than this many days apart.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`mouse_rl.data.TRIAL_COLUMNS`, ``choice`` 1 = Right,
        0 = Left; no-go trials dropped (with a :class:`UserWarning` giving the
        count). ``reward`` from ``feedbackType`` (known at zero contrast too),
        else derived from contrast and choice (NaN at zero contrast). Then,
        where the input has them, ``probabilityLeft`` (IBL's probability of a
        left stimulus, 0-1), ``session_start_time`` and ``date`` (as text).
    """
    df, source, path = read_table(path_or_df)
    require_columns(df, ["contrastLeft", "contrastRight", "choice"], source)
    check_values(df, "choice", [-1, 0, 1], source, hint=" (IBL: -1 = Right, +1 = Left, 0 = no-go)")
    _check_ibl_choice_codes(df, source)
    df = drop_rows(df, pd.to_numeric(df["choice"]) == 0, "no-go trials, choice == 0", source)

    if mouse is None and path is None and not any(c in df.columns for c in ("mouse", "subject")):
        warnings.warn(f"{source}: no 'mouse' or 'subject' column (e.g. a ONE trials.to_df() table): all trials "
                      f"are mouse {DEFAULT_MOUSE!r}; pass mouse=... to name it", UserWarning, stacklevel=2)
        mouse = DEFAULT_MOUSE
    names = mouse_names(df, mouse, path, source, columns=("mouse", "subject"))
    left = pd.to_numeric(df["contrastLeft"], errors="coerce")
    right = pd.to_numeric(df["contrastRight"], errors="coerce")
    # NaN marks the unused side only when the other side has a value.
    left, right = left.where(left.notna() | right.isna(), 0.0), right.where(right.notna() | left.isna(), 0.0)
    choice = map_choice(df, IBL_CHOICE, source)
    signed = right - left
    reward = pd.Series(derive_reward(signed, choice), index=df.index)
    if "feedbackType" in df.columns:
        check_values(df, "feedbackType", [-1, 1], source, allow_nan=True)
        feedback = pd.to_numeric(df["feedbackType"])
        reward = ((feedback + 1) / 2).where(feedback.notna(), reward)
    rt = np.nan
    if "response_times" in df.columns:
        rt = pd.to_numeric(df["response_times"], errors="coerce")
        if "stimOn_times" in df.columns:
            rt = rt - pd.to_numeric(df["stimOn_times"], errors="coerce")

    out = pd.DataFrame({
        "mouse": names,
        "session": session_numbers(df, names, source, max_gap_days),
        "contrastLeft": left,
        "contrastRight": right,
        "signed_contrast": signed,
        "choice": choice,
        "reward": reward,
        "response_times": rt,
    })
    out["trial"] = out.groupby(["mouse", "session"], sort=False).cumcount()  # row order within a session
    table = finalize(out, source, reward_rule=reward_rule)
    kept = [c for c in KEPT_COLUMNS if c in df.columns]
    if not kept:
        return table
    extras = out[["mouse", "session", "trial"]].astype({"mouse": str, "session": "int64", "trial": "int64"})
    for c in kept:
        extras[c] = pd.to_numeric(df[c], errors="coerce").astype(float) if c == "probabilityLeft" else \
            df[c].astype(str).where(df[c].notna(), None)
    merged = table.merge(extras, on=["mouse", "session", "trial"], how="left", validate="one_to_one")
    merged.attrs = table.attrs
    return merged
