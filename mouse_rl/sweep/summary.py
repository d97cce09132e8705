"""Reduce one simulated cohort to a single summary row of the sweep table."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from ..analysis.metrics import (
    LEARNER_SIDES,
    MissingTrialsWarning,
    cohort_correlations,
    early_late_metrics,
    label_learner_side,
    session_metrics,
    session_metrics_from_summaries,
)
from ..strategy import STRATEGY_NAMES, strategy_from_behaviour

#: Sessions needed for the early (4-8) / late (last 5) metrics and correlations.
MIN_SESSIONS_EARLY_LATE = 8
LATE_N = 5



def strategy_column(name: str) -> str:
    """Column counting mice whose late strategy is ``name`` (e.g. ``n_strategy_L_only``)."""
    return "n_strategy_" + name.replace("-", "_")


#: Metric columns of every summary row, in order.
METRIC_COLUMNS = [
    "first_session_accuracy",
    "last_session_accuracy",
    "last5_accuracy",
    "sessions_to_70_median",
    "frac_reached_70",
    "early_bias_mean",
    "late_bias_mean",
    "late_slope_diff_mean",
    *(f"n_{side}" for side in LEARNER_SIDES),
    *(strategy_column(name) for name in STRATEGY_NAMES),
    "r_early_bias_late_slope_diff",
    "r_early_bias_late_bias",
    "final_a_L_mean",
    "final_a_R_mean",
    "final_a_b_mean",
]


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _nanmedian(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmedian(x)) if np.isfinite(x).any() else float("nan")


def _late_only(st: pd.DataFrame, late_n: int) -> pd.DataFrame:
    """Per-mouse late means over the last ``late_n`` sessions (for cohorts too short for early windows)."""
    st = st.sort_values(["mouse", "session"], kind="stable")
    late = st.groupby("mouse", sort=True).tail(late_n).groupby("mouse", sort=True)[
        ["bias", "left_slope", "right_slope", "accuracy"]].mean()
    out = pd.DataFrame({"early_bias": np.nan, "late_bias": late["bias"],
                        "late_left_slope": late["left_slope"], "late_right_slope": late["right_slope"],
                        "late_accuracy": late["accuracy"]})
    out["late_slope_diff"] = out["late_right_slope"] - out["late_left_slope"]
    out = out.reset_index()
    out["learner_side"] = label_learner_side(out["late_slope_diff"])
    slopes = out[["mouse"]].assign(left_slope=out["late_left_slope"], right_slope=out["late_right_slope"])
    out["late_strategy"] = strategy_from_behaviour(slopes)["strategy_name"].to_numpy()
    return out


def _correlation(early_late: pd.DataFrame, x: str, y: str) -> float:
    try:
        table = cohort_correlations(early_late, pairs=((x, y),))
    except ValueError:  # fewer than 3 mice with values
        return float("nan")
    return float(table["r"].iloc[0])


def cohort_summary(trials: pd.DataFrame | None, final_weights: pd.DataFrame | None = None,
                   sessions: pd.DataFrame | None = None) -> dict:
    """Summary metrics of one cohort's trial table (or of its per-session summaries).

    Parameters
    ----------
    trials : pandas.DataFrame or None
        Trial table of :func:`mouse_rl.simulate.simulate_cohort`.
    sessions : pandas.DataFrame, optional
        Instead of ``trials``: its per-session summaries (``simulate_cohort(..., log="sessions").sessions``),
        which give the same metrics with memory independent of the number of trials.
    final_weights : pandas.DataFrame, optional
        Weight snapshot rows of the last session (columns ``a_L``, ``a_R``, ``a_b``).

    Returns
    -------
    dict
        Keys :data:`METRIC_COLUMNS`: mean first/last-session accuracy,
        ``last5_accuracy`` (mean over mice of the mean accuracy of the last
        ``min(5, sessions)`` sessions), median ``sessions_to_70`` over mice
        that reach 70 % (``frac_reached_70``: fraction that do), mean
        early/late bias and late R-L slope difference, learner-side counts
        ``n_left/n_balanced/n_right`` and late strategy counts, the Pearson
        correlations r(early bias, late slope diff) and r(early bias, late
        bias) -- NaN unless there are at least 8 sessions and 3 mice with
        values -- and mean final cortical gains. Sessions that lack the
        needed trials give NaN metrics, which the cohort means skip.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTrialsWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if sessions is None:
            st = session_metrics(trials)
        else:  # integer mouse ids: the groupbys of a 10^6-mouse cohort are then several times faster
            st = session_metrics_from_summaries(sessions.assign(mouse=pd.factorize(sessions["mouse"])[0]))
        n_sessions = int(st["session"].max())
        per_mouse = st.sort_values(["mouse", "session"], kind="stable").groupby("mouse", sort=True)
        reached = st[st["accuracy"] >= 0.7].groupby("mouse")["session"].min().reindex(
            per_mouse.size().index).astype(float)
        if n_sessions >= MIN_SESSIONS_EARLY_LATE and st.groupby("mouse")["session"].nunique().min() >= n_sessions:
            el = early_late_metrics(st, late_n=LATE_N)
            r_slope = _correlation(el, "early_bias", "late_slope_diff")
            r_bias = _correlation(el, "early_bias", "late_bias")
        else:
            el = _late_only(st, min(LATE_N, n_sessions))
            r_slope = r_bias = float("nan")
        row = {
            "first_session_accuracy": _nanmean(per_mouse["accuracy"].first(skipna=False)),
            "last_session_accuracy": _nanmean(per_mouse["accuracy"].last(skipna=False)),
            "last5_accuracy": _nanmean(el["late_accuracy"]),
            "sessions_to_70_median": _nanmedian(reached),
            "frac_reached_70": float(np.isfinite(reached.to_numpy()).mean()),
            "early_bias_mean": _nanmean(el["early_bias"]),
            "late_bias_mean": _nanmean(el["late_bias"]),
            "late_slope_diff_mean": _nanmean(el["late_slope_diff"]),
        }
    sides = el["learner_side"].value_counts()
    row.update({f"n_{side}": int(sides.get(side, 0)) for side in LEARNER_SIDES})
    strategies = el["late_strategy"].value_counts()
    row.update({strategy_column(name): int(strategies.get(name, 0)) for name in STRATEGY_NAMES})
    row["r_early_bias_late_slope_diff"] = r_slope
    row["r_early_bias_late_bias"] = r_bias
    for col in ("a_L", "a_R", "a_b"):
        row[f"final_{col}_mean"] = (float(final_weights[col].mean()) if final_weights is not None
                                    else float("nan"))
    return {k: row[k] for k in METRIC_COLUMNS}


def parameter_columns(model: dict, task: dict) -> dict:
    """Flat, parquet-friendly parameter columns of a point (list-valued task fields as JSON)."""
    out = dict(model)
    for key, value in task.items():
        out[key] = json.dumps(list(value)) if isinstance(value, (list, tuple)) else value
    return out
