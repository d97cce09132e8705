"""Loader for plain signed-contrast tables (one row per trial)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mouse_rl.data._tidy import derive_reward, finalize, map_choice, mouse_names, read_table, split_contrast
from mouse_rl.data.validation import require_columns

#: ``choice_convention`` -> mapping of file choice codes to ours (0 = Left, 1 = Right).
CHOICE_CONVENTIONS = {
    "01": {0: 0, 1: 1},
    "sign": {-1: 0, 1: 1},  # -1 = Left, +1 = Right (same sign as signed_contrast)
    "ibl": {-1: 1, 1: 0},  # -1 = Right, +1 = Left
}


def load_signed_contrast_csv(path_or_df, mouse: str | None = None, *, choice_convention: str = "01",
                             reward_rule: str = "stimulus") -> pd.DataFrame:
    """Load a table with ``signed_contrast``, ``choice`` and ``session`` columns.

    Parameters
    ----------
    path_or_df : str, pathlib.Path or pandas.DataFrame
        CSV or parquet file, or a DataFrame. Required: ``signed_contrast``
        (contrastRight - contrastLeft, fraction in [-1, 1]), ``choice``,
        ``session`` (from 1). Optional: ``reward`` (0/1, NaN unknown),
        ``mouse``, ``trial`` (from 0 within session; else row order),
        ``response_times`` (s).
    mouse : str, optional
        Mouse name; default the ``mouse`` column, else the file stem.
    choice_convention : {"01", "sign", "ibl"}
        ``"01"``: 0 = Left, 1 = Right (default). ``"sign"``: -1 = Left,
        +1 = Right. ``"ibl"``: -1 = Right, +1 = Left.
    reward_rule : {"stimulus", "recorded"}
        ``"stimulus"`` (default): a ``reward`` column must agree with contrast
        and choice on every trial with a stimulus (an error otherwise);
        ``"recorded"``: the task had another rule, use ``reward`` as is.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`mouse_rl.data.TRIAL_COLUMNS`; ``reward`` derived from
        contrast and choice when absent (NaN at zero contrast).
    """
    if choice_convention not in CHOICE_CONVENTIONS:
        raise ValueError(f"choice_convention must be one of {list(CHOICE_CONVENTIONS)}, got {choice_convention!r}")
    df, source, path = read_table(path_or_df)
    require_columns(df, ["signed_contrast", "choice", "session"], source)
    hint = (
        " (0 = Left, 1 = Right); for -1/+1 codes pass choice_convention='sign' (-1 = Left) or 'ibl' (-1 = Right)"
        if choice_convention == "01"
        else f" (choice_convention={choice_convention!r})"
    )
    choice = map_choice(df, CHOICE_CONVENTIONS[choice_convention], source, hint=hint)
    signed = df["signed_contrast"]
    left, right = split_contrast(signed)
    out = pd.DataFrame({
        "mouse": mouse_names(df, mouse, path, source),
        "session": df["session"],
        "contrastLeft": left,
        "contrastRight": right,
        "signed_contrast": signed,
        "choice": choice,
        "reward": df["reward"] if "reward" in df.columns else derive_reward(pd.to_numeric(signed, errors="coerce"), choice),
        "response_times": df["response_times"] if "response_times" in df.columns else np.nan,
    })
    if "trial" in df.columns:
        out.insert(2, "trial", df["trial"])
    return finalize(out, source, reward_rule=reward_rule)
