"""Strategy labels of fitted mice: per mouse (left / balanced / right learner) and per session."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..schema import WEIGHT_COLUMNS


def session_weights(fitted_trials: pd.DataFrame) -> pd.DataFrame:
    """Weights at the end of each session: the pre-update weights of its last trial (WEIGHT_COLUMNS)."""
    last = fitted_trials.sort_values(["mouse", "session", "trial"]).groupby(["mouse", "session"]).tail(1)
    return last[["mouse", "session", *WEIGHT_COLUMNS]].reset_index(drop=True)


def strategy_labels(fitted_trials: pd.DataFrame, side_threshold: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label mice and sessions from raw behaviour and from the fitted model.

    Parameters
    ----------
    fitted_trials : teacher-forced per-trial table (``FitResult.trials``): the
        mouse's choices plus the model's ``p_right`` and weights.
    side_threshold : threshold on the late right - left slope difference
        (P(Right) units) for :func:`mouse_rl.analysis.label_learner_side`.

    Returns
    -------
    per_mouse : ``mouse``, ``learner_side_data`` / ``learner_side_model`` (left /
        balanced / right from :func:`mouse_rl.analysis.early_late_metrics` on the
        choices / on the model's P(Right)), ``late_slope_diff_data`` / ``_model``.
        NaN where a mouse has too few sessions for the early/late windows.
    per_session : ``mouse``, ``session``, ``strategy_data`` (from
        :func:`mouse_rl.strategy.strategy_from_behaviour` on the session's
        psychometric slopes) and ``strategy_model`` (from
        :func:`mouse_rl.strategy.strategy_of` on the fitted end-of-session weights).
    """
    from ..analysis import early_late_metrics, session_metrics
    from ..strategy import strategy_from_behaviour, strategy_from_weights_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess_data = session_metrics(fitted_trials)
        sess_model = session_metrics(fitted_trials, use_model=True)
    per_session = sess_data[["mouse", "session"]].copy()
    per_session["strategy_data"] = strategy_from_behaviour(sess_data)["strategy_name"].to_numpy()
    w = session_weights(fitted_trials)
    lab = strategy_from_weights_table(w)
    w = w[["mouse", "session"]].assign(strategy_model=lab["strategy_name"].to_numpy(), w_L=lab["w_L"].to_numpy(),
                                       w_R=lab["w_R"].to_numpy())
    per_session = per_session.merge(w, on=["mouse", "session"], how="left")

    mice = sorted(fitted_trials["mouse"].astype(str).unique())
    per_mouse = pd.DataFrame({"mouse": mice})
    for tag, st in (("data", sess_data), ("model", sess_model)):
        rows = []
        for mouse, s in st.groupby("mouse", sort=True):  # per mouse so that one short mouse does not fail all
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    el = early_late_metrics(s, side_threshold=side_threshold)
                rows.append({"mouse": str(mouse), f"learner_side_{tag}": el["learner_side"].iloc[0],
                             f"late_slope_diff_{tag}": el["late_slope_diff"].iloc[0]})
            except ValueError:
                rows.append({"mouse": str(mouse), f"learner_side_{tag}": np.nan, f"late_slope_diff_{tag}": np.nan})
        per_mouse = per_mouse.merge(pd.DataFrame(rows), on="mouse", how="left")
    return per_mouse, per_session
