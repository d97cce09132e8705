"""Strategy labels of fitted mice: per mouse (left / balanced / right learner) and per session."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from ..network import encode, forward, p_right, weights_from_flat
from ..schema import WEIGHT_COLUMNS


def session_weights(fitted_trials: pd.DataFrame) -> pd.DataFrame:
    """Weights at the end of each session: the pre-update weights of its last trial (WEIGHT_COLUMNS)."""
    last = fitted_trials.sort_values(["mouse", "session", "trial"]).groupby(["mouse", "session"]).tail(1)
    return last[["mouse", "session", *WEIGHT_COLUMNS]].reset_index(drop=True)


def strategy_from_policy(weights: pd.DataFrame, beta, lapse=0.0, encoding: str = "side",
                         contrast: float = 0.5, crosstalk=0.0) -> pd.DataFrame:
    """Classify rows of a weight table by the *behaviour* their policy produces (beta- and lapse-aware).

    The policy's P(Right) for a left stimulus, zero contrast and a right stimulus of ``contrast``
    (:func:`mouse_rl.network.forward` and :func:`mouse_rl.network.p_right`) gives slopes
    ``left_slope = P(R|0) - P(R|L)`` and ``right_slope = P(R|R) - P(R|0)`` in P(Right) units,
    classified by :func:`mouse_rl.strategy.strategy_from_behaviour` exactly as a session of real
    choices is. ``beta`` / ``lapse`` / ``crosstalk`` (the inputs' option, :func:`mouse_rl.network.encode`):
    scalars or one value per row.

    Returns
    -------
    pandas.DataFrame
        Key columns present, ``p_right_left``, ``p_right_zero``, ``p_right_right``, ``left_slope``,
        ``right_slope``, ``strategy`` and ``strategy_name``.
    """
    from ..strategy import strategy_from_behaviour

    n = len(weights)
    w = torch.as_tensor(weights[WEIGHT_COLUMNS].to_numpy(dtype=float, copy=True))  # parquet arrays may be read-only
    per_row = lambda v: torch.as_tensor(np.broadcast_to(np.asarray(v, float), (n,)).copy())[:, None]  # noqa: E731
    stimuli = torch.tensor([-contrast, 0.0, contrast], dtype=torch.float64).expand(n, 3)
    x = encode(stimuli, encoding, per_row(crosstalk))  # (rows, 3 stimuli, 3 inputs)
    fwd = forward(weights_from_flat(w[:, None]), x)
    p = p_right(fwd.q_tot, per_row(beta), per_row(lapse)).numpy()
    keys = [c for c in ("mouse", "session", "trial") if c in weights.columns]
    out = weights[keys].copy()
    out["p_right_left"], out["p_right_zero"], out["p_right_right"] = p[:, 0], p[:, 1], p[:, 2]
    out["left_slope"], out["right_slope"] = p[:, 1] - p[:, 0], p[:, 2] - p[:, 1]
    lab = strategy_from_behaviour(out)
    out["strategy"], out["strategy_name"] = lab["strategy"], lab["strategy_name"]
    return out


def strategy_labels(fitted_trials: pd.DataFrame, params: pd.DataFrame | None = None,
                    side_threshold: float = 0.1, encoding: str = "side") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label mice and sessions from raw behaviour and from the fitted model, with one definition.

    Both labels are read in behavioural units (P(Right)) from the same trials.
    Data: each session's psychometric slopes from the mouse's choices
    (:func:`mouse_rl.analysis.session_metrics`). Model: the same slopes from the
    fitted model's P(Right) on those trials (its expected behaviour; the
    policy through the mouse's own fitted beta and lapse, so a large beta with
    small Q values reads as the accurate behaviour it produces). Per session,
    both go through :func:`mouse_rl.strategy.strategy_from_behaviour`. The
    psychometric of the fitted policy at the *end* of each session
    (:func:`strategy_from_policy`) is reported beside it.

    Learner side (per mouse): the late slope difference, right - left slope
    averaged over the last 5 sessions (the window of
    :func:`mouse_rl.analysis.early_late_metrics`, the paper's late phase), is
    ``right`` above ``side_threshold``, ``left`` below ``-side_threshold`` and
    ``balanced`` between. 0.1 P(Right) is a 10-point difference in how well the
    two stimuli are learned: above the session-to-session noise of a slope
    estimate from ~100 trials per side (sd ~0.05-0.07), so a balanced expert is
    not called one-sided by chance.

    Parameters
    ----------
    fitted_trials : teacher-forced per-trial table (``FitResult.trials``): the
        mouse's choices plus the model's ``p_right`` and weights.
    params : per-mouse fitted parameters (``FitResult.params``: ``mouse``, ``beta``, ``lapse``) for the
        end-of-session policy labels (and ``crosstalk`` where it has the column); None uses the model defaults
        (beta 9, lapse 0).
    side_threshold : threshold on the late slope difference (P(Right) units).
    encoding : the model's input encoding (for the policy's stimulus input).

    Returns
    -------
    per_mouse : ``mouse``, ``learner_side_data`` / ``learner_side_model``,
        ``late_slope_diff_data`` / ``late_slope_diff_model``; NaN where a mouse
        has too few sessions for the early/late windows.
    per_session : ``mouse``, ``session``, ``strategy_data``, ``strategy_model`` and the end-of-session
        policy's ``strategy_policy_end``, ``left_slope_policy_end``, ``right_slope_policy_end``.
    """
    from ..analysis import early_late_metrics, session_metrics
    from ..params import ModelParams
    from ..strategy import strategy_from_behaviour

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sess_data = session_metrics(fitted_trials)
        sess_model = session_metrics(fitted_trials, use_model=True)
    per_session = sess_data[["mouse", "session"]].copy()
    per_session["strategy_data"] = strategy_from_behaviour(sess_data)["strategy_name"].to_numpy()
    per_session["strategy_model"] = strategy_from_behaviour(sess_model)["strategy_name"].to_numpy()
    w = session_weights(fitted_trials)
    d = ModelParams()
    crosstalk = np.zeros(len(w))
    if params is None:
        beta, lapse = np.full(len(w), d.beta), np.zeros(len(w))
    else:
        p = params.assign(mouse=params["mouse"].astype(str)).set_index("mouse")
        missing = sorted(set(w["mouse"].astype(str)) - set(p.index))
        if missing:
            raise ValueError(f"params: no row for mice {missing}")
        beta = p.loc[w["mouse"].astype(str), "beta"].to_numpy(float)
        lapse = p.loc[w["mouse"].astype(str), "lapse"].to_numpy(float) if "lapse" in p else np.zeros(len(w))
        if "crosstalk" in p:
            crosstalk = p.loc[w["mouse"].astype(str), "crosstalk"].to_numpy(float)
    lab = strategy_from_policy(w, beta, lapse, encoding, crosstalk=crosstalk)
    w = w[["mouse", "session"]].assign(strategy_policy_end=lab["strategy_name"].to_numpy(),
                                       left_slope_policy_end=lab["left_slope"].to_numpy(),
                                       right_slope_policy_end=lab["right_slope"].to_numpy())
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
