"""Boundary checks for trial tables (see :mod:`mouse_rl.schema`).

Every loader ends with :func:`validate_trials`; fitting and analysis call it on
tables they receive. Failures raise :class:`DataFormatError` with a message that
names the field, the offending value(s) and a row.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from mouse_rl.network import stimulus_reward
from mouse_rl.schema import BEHAVIOUR_COLUMNS, KEY_COLUMNS, MODEL_COLUMNS, WEIGHT_COLUMNS

CONTRAST_COLUMNS = ["contrastLeft", "contrastRight", "signed_contrast"]
#: Columns a trial table must have by default.
REQUIRED_COLUMNS = KEY_COLUMNS + BEHAVIOUR_COLUMNS
#: How rewards relate to stimulus and choice (argument ``reward_rule``):
#: ``"stimulus"`` -- the task of the model: at non-zero contrast a trial is
#: rewarded iff the choice is on the stimulus side (checked on every trial);
#: ``"recorded"`` -- the task had another rule: the recorded 0/1 rewards are
#: used as they are (only their values are checked).
REWARD_RULES = ("stimulus", "recorded")
#: ``DataFrame.attrs`` key under which a loader records a non-default reward rule.
REWARD_RULE_ATTR = "reward_rule"
_MAX_SHOWN = 10


class DataFormatError(ValueError):
    """Input data do not match the trial-table schema or the expected file format."""


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _shown(values: Iterable) -> str:
    values = sorted({_plain(v) for v in pd.unique(pd.Series(list(values), dtype=object))}, key=str)  # one NaN
    more = f" ... ({len(values)} distinct)" if len(values) > _MAX_SHOWN else ""
    return "[" + ", ".join(repr(v) for v in values[:_MAX_SHOWN]) + "]" + more


def describe_row(df: pd.DataFrame, index) -> str:
    """Return ``"row 17 (mouse 'DAP007', session 3)"`` for a row label of ``df``."""
    parts = [f"{c} {_plain(df.at[index, c])!r}" for c in ("mouse", "session") if c in df.columns]
    return f"row {index}" + (f" ({', '.join(parts)})" if parts else "")


def require_columns(df: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    """Raise :class:`DataFormatError` naming the first column of ``columns`` not in ``df``."""
    for col in columns:
        if col not in df.columns:
            raise DataFormatError(
                f"{source}: missing required column {col!r}; "
                f"columns present: {list(map(str, df.columns))}"
            )


def check_values(
    df: pd.DataFrame, column: str, allowed: Iterable[float], source: str,
    *, allow_nan: bool = False, hint: str = "",
) -> None:
    """Raise :class:`DataFormatError` if ``df[column]`` holds a value outside ``allowed``."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = ~values.isin(list(allowed))
    if allow_nan:
        bad &= values.notna()
    bad |= values.isna() & df[column].notna()  # non-numeric entries
    if not allow_nan:
        bad |= df[column].isna()
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(
            f"{source}: {column!r} has values {_shown(df.loc[bad, column])} outside the allowed "
            f"set {sorted(allowed)}{' or NaN' if allow_nan else ''}; first at "
            f"{describe_row(df, first)}{hint}"
        )


def validate_session_lengths(lengths, n_trials: int, *, mouse: str, source: str) -> np.ndarray:
    """Check per-session trial counts and return them as an int64 array.

    Parameters
    ----------
    lengths : array-like of int or None
        Trials per session (count), chronological.
    n_trials : int
        Number of trials (count) of this mouse.
    mouse, source : str
        Used in error messages.

    Raises
    ------
    DataFormatError
        If ``lengths`` is missing, not integer, has an empty (zero-trial) or
        negative session, or does not sum to ``n_trials``.
    """
    if lengths is None:
        raise DataFormatError(f"{source}: session lengths of mouse {mouse!r} are missing")
    arr = np.asarray(lengths, dtype=float).ravel()
    if arr.size == 0 or np.isnan(arr).any() or (arr != np.round(arr)).any():
        raise DataFormatError(
            f"{source}: session_lengths of mouse {mouse!r} must be whole trial counts, got {arr.tolist()}"
        )
    if (arr <= 0).any():
        where = (np.flatnonzero(arr <= 0) + 1).tolist()
        raise DataFormatError(
            f"{source}: session_lengths of mouse {mouse!r} has an empty session (zero or negative "
            f"trials) at session number(s) {where}: lengths {arr.astype(int).tolist()}"
        )
    if int(arr.sum()) != n_trials:
        raise DataFormatError(
            f"{source}: session_lengths of mouse {mouse!r} sum to {int(arr.sum())} "
            f"but the mouse has {n_trials} trials"
        )
    return arr.astype(np.int64)


def _check_contrasts(df: pd.DataFrame, source: str) -> None:
    cols = [c for c in CONTRAST_COLUMNS if c in df.columns]
    values = df[cols].apply(pd.to_numeric, errors="coerce")
    nan = values.isna()
    if nan.any(axis=None):
        first = nan.any(axis=1).idxmax()
        names = [c for c in cols if nan[c].any()]
        raise DataFormatError(
            f"{source}: contrast is NaN in column(s) {names} where a value is needed; first at "
            f"{describe_row(df, first)} (use 0.0 for the side without a stimulus)"
        )
    infinite = ~np.isfinite(values)
    if infinite.any(axis=None):
        names = [c for c in cols if infinite[c].any()]
        first = infinite.any(axis=1).idxmax()
        raise DataFormatError(
            f"{source}: contrast is infinite in column(s) {names} (value "
            f"{_plain(values.loc[first, names[0]])}) at {describe_row(df, first)}; contrasts are fractions in [0, 1]"
        )
    big = values.abs() > 1
    if big.any(axis=None):
        names = [c for c in cols if big[c].any()]
        first = big.any(axis=1).idxmax()
        raise DataFormatError(
            f"{source}: column(s) {names} have |contrast| up to {values.abs().max().max():g} > 1: "
            f"looks like percent, divide by 100 (first at {describe_row(df, first)})"
        )
    for col in ("contrastLeft", "contrastRight"):
        if col in cols and (values[col] < 0).any():
            first = (values[col] < 0).idxmax()
            raise DataFormatError(
                f"{source}: {col!r} is negative ({values.at[first, col]:g}) at {describe_row(df, first)}; "
                "one-sided contrasts are >= 0, use signed_contrast for the signed value"
            )
    if "contrastLeft" in cols and "contrastRight" in cols:
        both = (values["contrastLeft"] > 0) & (values["contrastRight"] > 0)
        if both.any():
            first = both.idxmax()
            raise DataFormatError(
                f"{source}: {int(both.sum())} trial(s) show a stimulus on both sides (contrastLeft "
                f"{values.at[first, 'contrastLeft']:g}, contrastRight {values.at[first, 'contrastRight']:g} at "
                f"{describe_row(df, first)}); the model has one stimulus per trial: drop or recode these trials"
            )
    if len(cols) == 3:
        diff = values["contrastRight"] - values["contrastLeft"] - values["signed_contrast"]
        if (diff.abs() > 1e-9).any():
            first = (diff.abs() > 1e-9).idxmax()
            raise DataFormatError(
                f"{source}: signed_contrast != contrastRight - contrastLeft at {describe_row(df, first)}"
            )


def check_mouse_ids(df: pd.DataFrame, source: str) -> None:
    """Every row needs a mouse id (not NaN/None, not an empty string)."""
    ids = df["mouse"]
    bad = ids.isna() | (ids.astype(str).str.strip() == "")
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(
            f"{source}: 'mouse' id is missing or empty ({_plain(ids.at[first])!r}) at row {first} "
            f"({int(bad.sum())} rows); every trial needs a mouse id"
        )


#: Largest session or trial number accepted (int32; far beyond any experiment, and exact as a float).
MAX_INDEX = 2**31 - 1


def _check_integer(df: pd.DataFrame, column: str, minimum: int, source: str) -> None:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | (values != values.round()) | (values < minimum) | (values > MAX_INDEX)
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(
            f"{source}: {column!r} must be an integer >= {minimum} (numbered from {minimum}, at most {MAX_INDEX}); got "
            f"{_plain(df.at[first, column])!r} at {describe_row(df, first)}"
        )


def _check_sessions(df: pd.DataFrame, session_lengths, contiguous: bool, source: str) -> None:
    counts = df.groupby("mouse", sort=False)["session"].value_counts().sort_index()
    for mouse, per_session in counts.groupby(level=0, sort=False):
        per_session = per_session.droplevel(0)
        if contiguous:
            empty = sorted(set(range(1, int(per_session.index.max()) + 1)) - set(per_session.index))
            if empty:
                raise DataFormatError(
                    f"{source}: mouse {mouse!r} has empty session(s) {empty} (no trials) among "
                    f"sessions 1..{int(per_session.index.max())}"
                )
        if session_lengths is None:
            continue
        if isinstance(session_lengths, Mapping):
            if mouse not in session_lengths:
                raise DataFormatError(f"{source}: session lengths of mouse {mouse!r} are missing")
            lengths = session_lengths[mouse]
        else:
            lengths = session_lengths
        lengths = validate_session_lengths(lengths, int(per_session.sum()), mouse=mouse, source=source)
        observed = per_session.reindex(range(1, len(lengths) + 1), fill_value=0).to_numpy()
        if len(per_session) != len(lengths) or (observed != lengths).any():
            raise DataFormatError(
                f"{source}: mouse {mouse!r} has trials per session {per_session.tolist()} "
                f"but session_lengths {lengths.tolist()}"
            )


def check_reward_rule(reward_rule: str) -> str:
    """Return ``reward_rule`` if it is one of :data:`REWARD_RULES`, else raise ValueError naming it."""
    if reward_rule not in REWARD_RULES:
        raise ValueError(f"reward_rule: must be one of {REWARD_RULES}, got {reward_rule!r}")
    return reward_rule


def _check_reward_consistency(df: pd.DataFrame, source: str) -> None:
    """Rewards known at non-zero contrast must follow the stimulus side (reward rule ``"stimulus"``)."""
    signed = pd.to_numeric(df["signed_contrast"], errors="coerce")
    reward = pd.to_numeric(df["reward"], errors="coerce")
    choice = pd.to_numeric(df["choice"], errors="coerce")
    known = reward.notna() & (signed != 0)
    bad = known & (reward != stimulus_reward(signed.to_numpy(), choice.to_numpy()))
    if bad.any():
        first = bad.idxmax()
        raise DataFormatError(
            f"{source}: 'reward' contradicts stimulus and choice on {int(bad.sum())} of {int(known.sum())} "
            f"trials with a stimulus (first at {describe_row(df, first)}: signed_contrast "
            f"{_plain(signed.at[first])!r}, choice {_plain(choice.at[first])!r}, reward {_plain(reward.at[first])!r}); "
            "the task rewards the choice on the stimulus side. If the task had a different rule, "
            "say so: reward_rule='recorded' (CLI: --reward-rule recorded)"
        )


def _check_finite_columns(df: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            first = df.index[np.flatnonzero(bad)[0]]
            raise DataFormatError(
                f"{source}: model column {col!r} must be a finite number, got {_plain(df.at[first, col])!r} "
                f"at {describe_row(df, first)} ({int(bad.sum())} bad rows)"
            )
    if "p_right" in df.columns:
        p = pd.to_numeric(df["p_right"], errors="coerce")
        bad = (p < 0) | (p > 1)
        if bad.any():
            first = bad.idxmax()
            raise DataFormatError(
                f"{source}: 'p_right' must be a probability in [0, 1], got {_plain(p.at[first])!r} at "
                f"{describe_row(df, first)}"
            )


def validate_trials(
    df: pd.DataFrame,
    source: str = "trial table",
    *,
    required: Iterable[str] = REQUIRED_COLUMNS,
    session_lengths=None,
    contiguous_sessions: bool = False,
    reward_rule: str | None = None,
) -> pd.DataFrame:
    """Check a trial table against :mod:`mouse_rl.schema`; return it unchanged.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per trial. Optional columns (``reward``, ``feedbackType``,
        contrasts) are checked when present.
    source : str
        What the table came from (file name), quoted in error messages.
    required : iterable of str
        Columns that must be present (default: keys and behaviour columns).
    session_lengths : array-like of int or mapping of str to array-like, optional
        Expected trials per session (count, sessions 1..S): one array for a
        single-mouse table or ``{mouse: lengths}``. Checked for empty sessions,
        sum and agreement with the table.
    contiguous_sessions : bool
        Also require every mouse's sessions to be 1..S with none empty.
    reward_rule : {"stimulus", "recorded"}, optional
        ``"stimulus"``: a known reward at non-zero contrast must be 1 iff the
        choice is on the stimulus side (see :data:`REWARD_RULES`);
        ``"recorded"``: rewards are only checked to be 0/1. Default: the
        table's ``attrs["reward_rule"]`` (set by a loader told so), else
        ``"stimulus"``.

    Model read-outs (:data:`~mouse_rl.schema.MODEL_COLUMNS`) and weight
    columns that are present must be finite numbers (``p_right`` in [0, 1]).

    Returns
    -------
    pandas.DataFrame
        ``df`` itself.

    Raises
    ------
    DataFormatError
        Naming the field, the offending value(s) and a row.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    rule = check_reward_rule(reward_rule if reward_rule is not None else df.attrs.get(REWARD_RULE_ATTR, "stimulus"))
    require_columns(df, required, source)
    if "mouse" in df.columns:
        check_mouse_ids(df, source)
    for col, minimum in (("session", 1), ("trial", 0)):
        if col in df.columns:
            _check_integer(df, col, minimum, source)
    keys = [c for c in KEY_COLUMNS if c in df.columns]
    if len(keys) == len(KEY_COLUMNS) and df.duplicated(keys).any():
        first = df.duplicated(keys).idxmax()
        raise DataFormatError(f"{source}: duplicate (mouse, session, trial) at {describe_row(df, first)}, trial {_plain(df.at[first, 'trial'])!r}")
    if any(c in df.columns for c in CONTRAST_COLUMNS):
        _check_contrasts(df, source)
    if "choice" in df.columns:
        check_values(df, "choice", [0, 1], source, hint=" (choice 0 = Left, 1 = Right)")
    if "reward" in df.columns:
        check_values(df, "reward", [0, 1], source, allow_nan=True)
    if rule == "stimulus" and all(c in df.columns for c in ("reward", "choice", "signed_contrast")):
        _check_reward_consistency(df, source)
    if "feedbackType" in df.columns:
        check_values(df, "feedbackType", [-1, 1], source, allow_nan=True)
        if "reward" in df.columns:
            expected = 2 * pd.to_numeric(df["reward"]) - 1
            bad = ~((expected == df["feedbackType"]) | (expected.isna() & df["feedbackType"].isna()))
            if bad.any():
                raise DataFormatError(
                    f"{source}: feedbackType != 2 * reward - 1 at {describe_row(df, bad.idxmax())}"
                )
    _check_finite_columns(df, [c for c in MODEL_COLUMNS + WEIGHT_COLUMNS if c in df.columns], source)
    if "mouse" in df.columns and "session" in df.columns and (contiguous_sessions or session_lengths is not None):
        _check_sessions(df, session_lengths, contiguous_sessions, source)
    elif session_lengths is not None:
        raise DataFormatError(f"{source}: session_lengths given but the table has no 'mouse'/'session' column")
    return df


def validate_weights(df: pd.DataFrame, source: str = "weights table") -> pd.DataFrame:
    """Check a per-session weight snapshot table (``mouse``, ``session`` from 0, finite weight columns); return it.

    Raises
    ------
    DataFormatError
        Naming the column, the offending value and a row.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataFormatError(f"{source}: no weight snapshots (the table has no rows)")
    require_columns(df, ["mouse", "session"] + WEIGHT_COLUMNS, source)
    check_mouse_ids(df, source)
    _check_integer(df, "session", 0, source)
    if df.duplicated(["mouse", "session"]).any():
        first = df.duplicated(["mouse", "session"]).idxmax()
        raise DataFormatError(f"{source}: duplicate (mouse, session) at {describe_row(df, first)}")
    _check_finite_columns(df, WEIGHT_COLUMNS, source)
    return df
