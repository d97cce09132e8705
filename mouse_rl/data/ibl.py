"""Loader for IBL ALF trials tables (``one.load_object(eid, 'trials').to_df()`` and the like)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mouse_rl.data._tidy import derive_reward, drop_rows, finalize, map_choice, mouse_names, read_table
from mouse_rl.data.validation import DataFormatError, check_values, describe_row, require_columns

#: IBL ``choice``: -1 = rightward report (our 1), +1 = leftward (our 0), 0 = no-go (dropped).
IBL_CHOICE = {-1: 1, 1: 0}
SESSION_COLUMNS = ("session", "session_id", "eid", "date")


def session_numbers(df: pd.DataFrame, mouse: pd.Series, source: str) -> pd.Series:
    """Session number (from 1) per row.

    An integer ``session`` column is used as is; a ``session``/``session_id``/
    ``eid``/``date`` column of labels is numbered 1..S per mouse in order of
    appearance; without any, all rows are session 1 (with a warning).
    """
    col = next((c for c in SESSION_COLUMNS if c in df.columns), None)
    if col is None:
        warnings.warn(
            f"{source}: no session column (tried {list(SESSION_COLUMNS)}); all trials are session 1",
            UserWarning,
            stacklevel=3,
        )
        return pd.Series(1, index=df.index)
    if df[col].isna().any():
        raise DataFormatError(f"{source}: {col!r} is missing (NaN) at {describe_row(df, df[col].isna().idxmax())}")
    if col == "session" and pd.api.types.is_numeric_dtype(df[col]):
        return df[col]
    return df[col].groupby(mouse, sort=False).transform(lambda s: pd.factorize(s)[0] + 1)


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


def load_ibl_trials(path_or_df, mouse: str | None = None, *, reward_rule: str = "stimulus") -> pd.DataFrame:
    """Load an IBL ALF trials table as a trial table in the mouse_rl convention.

    Parameters
    ----------
    path_or_df : str, pathlib.Path or pandas.DataFrame
        Parquet or CSV file, or a DataFrame, with ``contrastLeft`` and
        ``contrastRight`` (fractions, NaN on the side without a stimulus) and
        IBL ``choice`` (-1 = rightward report, +1 = leftward, 0 = no-go).
        Optional: ``feedbackType`` (+1 correct, -1 error), ``response_times``
        (s; made relative to ``stimOn_times`` (s) when that column exists),
        a session column (see :func:`session_numbers`), ``mouse`` or ``subject``.
    mouse : str, optional
        Mouse name; default the ``mouse``/``subject`` column, else the file stem.
    reward_rule : {"stimulus", "recorded"}
        ``"stimulus"`` (default): ``feedbackType`` must agree with contrast and
        choice on every trial with a stimulus (an error otherwise);
        ``"recorded"``: the task had another rule, use ``feedbackType`` as is.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`mouse_rl.data.TRIAL_COLUMNS`, ``choice`` 1 = Right,
        0 = Left; no-go trials dropped (with a :class:`UserWarning` giving the
        count). ``reward`` from ``feedbackType``, else derived from contrast and
        choice (NaN at zero contrast).
    """
    df, source, path = read_table(path_or_df)
    require_columns(df, ["contrastLeft", "contrastRight", "choice"], source)
    check_values(df, "choice", [-1, 0, 1], source, hint=" (IBL: -1 = Right, +1 = Left, 0 = no-go)")
    _check_ibl_choice_codes(df, source)
    df = drop_rows(df, pd.to_numeric(df["choice"]) == 0, "no-go trials, choice == 0", source)

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
        "session": session_numbers(df, names, source),
        "contrastLeft": left,
        "contrastRight": right,
        "signed_contrast": signed,
        "choice": choice,
        "reward": reward,
        "response_times": rt,
    })
    return finalize(out, source, reward_rule=reward_rule)
