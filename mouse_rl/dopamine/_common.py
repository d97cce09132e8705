"""Small helpers shared by the dopamine modules (errors, column checks, figures)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from mouse_rl.data import DataFormatError
from mouse_rl.network import Forward, prediction_errors
from mouse_rl.schema import ACTION_NAMES, KEY_COLUMNS, LEFT, RIGHT

#: The model's three teaching signals (candidate dopamine correlates).
DELTAS = ("delta_tot", "delta_stim", "delta_const")
#: Q columns of each signal's pathway.
_Q_OF = {"delta_tot": "q_tot", "delta_stim": "q_stim", "delta_const": "q_const"}
#: Trial-table columns of the action values, ``q_<pathway>_<action>`` (:data:`mouse_rl.schema.MODEL_COLUMNS`).
Q_COLUMNS = [f"{q}_{action}" for q in _Q_OF.values() for action in ACTION_NAMES]
REWARD_MODES = ("experienced", "model")


def require(df: pd.DataFrame, columns, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFormatError(f"{what}: missing required column(s) {missing}; columns present: {list(map(str, df.columns))}")


def rows_text(df: pd.DataFrame, mask, limit: int = 5) -> str:
    """'rows [3, 7] (mouse 'm1', session 2, trial 5), ...' for the rows where ``mask`` is true."""
    idx = np.flatnonzero(np.asarray(mask))
    parts = []
    for i in idx[:limit]:
        keys = ", ".join(f"{k} {_plain(df[k].iloc[i])!r}" for k in KEY_COLUMNS if k in df.columns)
        parts.append(f"row {df.index[i]!r} ({keys})")
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return "; ".join(parts) + more


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def chosen(df: pd.DataFrame, prefix: str) -> np.ndarray:
    """Value of ``{prefix}_L`` / ``{prefix}_R`` for the chosen action of each trial."""
    left, right = (df[f"{prefix}_{action}"].to_numpy(float) for action in ACTION_NAMES)
    return np.where(df["choice"].to_numpy() == RIGHT, right, left)


def stimulus_side(signed_contrast) -> np.ndarray:
    """Per trial the side of the stimulus, named by the action it rewards: ``"L"`` (c < 0), ``"R"`` (c > 0)
    (:data:`mouse_rl.schema.ACTION_NAMES`) or ``"none"`` (zero contrast)."""
    c = np.asarray(signed_contrast, dtype=float)
    return np.where(c < 0, ACTION_NAMES[LEFT], np.where(c > 0, ACTION_NAMES[RIGHT], "none"))


def outcome_deltas(trials: pd.DataFrame, reward_mode: str = "experienced") -> pd.DataFrame:
    """The three teaching signals per trial, as a DataFrame with columns :data:`DELTAS`.

    ``reward_mode="experienced"``: ``reward - Q^x[choice]``
    (:func:`mouse_rl.network.prediction_errors`) with the reward the mouse
    actually received (the RPE a dopamine neuron sees; at c = 0 it
    differs from the model's learning signal when ``zero_reward="expected"``).
    Trials with unknown reward (NaN) fall back to the logged ``delta_*``.
    ``reward_mode="model"``: the logged ``delta_*`` columns (what the network
    learned from).
    """
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode: must be one of {REWARD_MODES}, got {reward_mode!r}")
    if reward_mode == "model":
        require(trials, list(DELTAS), "trial table")
        return trials[list(DELTAS)].astype(float).copy()
    require(trials, ["choice", "reward"] + Q_COLUMNS, "trial table")
    reward = trials["reward"].to_numpy(float)
    fwd = Forward(*(torch.tensor(trials[[f"{q}_{action}" for action in ACTION_NAMES]].to_numpy(float))
                    for q in _Q_OF.values()))
    right = torch.as_tensor(trials["choice"].to_numpy() == RIGHT)
    experienced = prediction_errors(fwd, right, torch.tensor(reward)).numpy()
    out = {}
    for j, name in enumerate(_Q_OF):
        value = experienced[:, j]
        if np.isnan(reward).any() and name in trials.columns:
            value = np.where(np.isnan(reward), trials[name].to_numpy(float), value)
        out[name] = value
    return pd.DataFrame(out, index=trials.index)


def figure(n_panels: int = 1, panel_size=(4.0, 3.2)) -> tuple[Figure, list]:
    """A pyplot-free figure with ``n_panels`` side-by-side axes (safe under any backend)."""
    fig = Figure(figsize=(panel_size[0] * n_panels, panel_size[1]), layout="constrained")
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    return fig, axes
