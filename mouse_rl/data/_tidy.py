"""Shared steps that turn loader output into the canonical trial table."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mouse_rl.data.files import read_table_file
from mouse_rl.data.validation import (
    REWARD_RULE_ATTR, DataFormatError, check_mouse_ids, check_reward_rule, check_values, require_columns,
    validate_trials,
)
from mouse_rl.network import stimulus_reward
from mouse_rl.schema import BEHAVIOUR_COLUMNS, KEY_COLUMNS

#: Columns of every loader's output, in this order.
TRIAL_COLUMNS = KEY_COLUMNS + BEHAVIOUR_COLUMNS + ["response_times"]
_FLOAT_COLUMNS = ["contrastLeft", "contrastRight", "signed_contrast", "reward", "feedbackType", "response_times"]


def read_table(path_or_df, source: str | None = None) -> tuple[pd.DataFrame, str, Path | None]:
    """Read a parquet/CSV file or copy a DataFrame; return ``(df, source, path)``."""
    if isinstance(path_or_df, pd.DataFrame):
        return path_or_df.reset_index(drop=True), source or "<DataFrame>", None
    if not isinstance(path_or_df, (str, Path)):
        raise TypeError(f"expected a file path or a pandas DataFrame, got {type(path_or_df).__name__}")
    path = Path(path_or_df)
    df = read_table_file(path, "trial table")
    return df.reset_index(drop=True), str(path), path


def mouse_names(df: pd.DataFrame, mouse: str | None, path: Path | None, source: str,
                columns=("mouse",)) -> pd.Series:
    """Mouse name per row: ``mouse`` argument, else a name column, else the file stem."""
    if mouse is not None:
        return pd.Series(str(mouse), index=df.index)
    for col in columns:
        if col in df.columns:
            return df[col].astype(str).where(df[col].notna())
    if path is not None:
        return pd.Series(path.name.split(".")[0], index=df.index)
    raise DataFormatError(f"{source}: no mouse name; pass mouse=... or add a {columns[0]!r} column")


def split_contrast(signed: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Return ``(contrastLeft, contrastRight)`` (fractions, 0.0 on the unused side) from signed contrast."""
    signed = pd.to_numeric(signed, errors="coerce").astype(float)
    return (-signed).clip(lower=0) + 0.0, signed.clip(lower=0) + 0.0


def derive_reward(signed_contrast, choice) -> np.ndarray:
    """Reward (0/1) for the choice on the stimulus side; NaN at zero contrast (rewarded side unknown).

    Parameters
    ----------
    signed_contrast : array-like of float
        contrastRight - contrastLeft (fraction).
    choice : array-like of int
        0 = Left, 1 = Right.
    """
    c = np.asarray(signed_contrast, dtype=float)
    return np.where(c == 0, np.nan, stimulus_reward(c, np.asarray(choice, dtype=float)))


def map_choice(df: pd.DataFrame, mapping: dict, source: str, hint: str = "") -> pd.Series:
    """Check ``df['choice']`` against ``mapping``'s keys and map it to 0/1."""
    check_values(df, "choice", list(mapping), source, hint=hint)
    values = pd.to_numeric(df["choice"])
    if values.dtype == bool:  # a boolean column: False/True are 0/1 (Series.map would look True up as a label)
        values = values.astype("int64")
    return values.map(mapping)


def drop_rows(df: pd.DataFrame, mask: pd.Series, what: str, source: str) -> pd.DataFrame:
    """Drop rows where ``mask`` with a :class:`UserWarning` giving the count."""
    n = int(mask.sum())
    if n:
        warnings.warn(f"{source}: dropped {n} of {len(df)} rows ({what})", UserWarning, stacklevel=3)
    return df.loc[~mask]


def finalize(df: pd.DataFrame, source: str, session_lengths=None, reward_rule: str = "stimulus") -> pd.DataFrame:
    """Number trials, add ``feedbackType``, validate, cast dtypes and sort.

    ``df`` needs ``mouse``, ``session``, contrasts, ``choice`` (0/1) and
    ``reward``; ``trial`` (else numbered in row order within each session) and
    ``response_times`` (s, else NaN) are optional. Row labels are kept until
    validation so errors quote the input's rows. ``reward_rule`` (see
    :data:`~mouse_rl.data.validation.REWARD_RULES`) is checked and, when not
    the default, recorded in the output's ``attrs`` so later validation honours it.
    """
    check_reward_rule(reward_rule)
    if len(df) == 0:
        raise DataFormatError(f"{source}: no trials (the table has no rows)")
    df = df.copy()
    require_columns(df, ["mouse", "session", "choice", "reward"], source)
    check_mouse_ids(df, source)
    if "trial" not in df.columns:
        df["trial"] = df.groupby(["mouse", "session"], sort=False).cumcount()
    if "response_times" not in df.columns:
        df["response_times"] = np.nan
    rt = pd.to_numeric(df["response_times"], errors="coerce")
    text = rt.isna() & df["response_times"].notna()
    if text.any():
        first = text.idxmax()
        raise DataFormatError(
            f"{source}: 'response_times' must be numbers (s) or empty, got {df.at[first, 'response_times']!r} "
            f"at row {first} ({int(text.sum())} rows)"
        )
    df["response_times"] = rt
    check_values(df, "reward", [0, 1], source, allow_nan=True)
    df["reward"] = pd.to_numeric(df["reward"]).astype(float)
    df["feedbackType"] = 2 * df["reward"] - 1
    validate_trials(df, source, session_lengths=session_lengths, reward_rule=reward_rule)
    df = df[TRIAL_COLUMNS].astype(
        {"mouse": str, "session": "int64", "trial": "int64", "choice": "int64"} | dict.fromkeys(_FLOAT_COLUMNS, "float64")
    )
    df = df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    if reward_rule != "stimulus":
        df.attrs[REWARD_RULE_ATTR] = reward_rule
    return df
