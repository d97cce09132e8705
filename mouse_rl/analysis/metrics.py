"""Behavioural metrics of trial tables (mouse_rl/MODEL.md section 6).

Input is the shared trial table of :mod:`mouse_rl.schema` (one row per trial;
``choice`` 1 = Right, 0 = Left; ``signed_contrast`` = right - left, in
fractions of full contrast). All probabilities are P(choice = Right) and all
slopes/biases are differences of such probabilities (dimensionless, in [-1, 1]).

* :func:`session_metrics` -- accuracy, bias and per-side slopes per session;
* :func:`psychometric` -- P(Right) per contrast with Wilson intervals;
* :func:`early_late_metrics` -- the paper's per-mouse early/late summary;
* :func:`cohort_correlations` -- Pearson r across mice;
* :func:`label_learner_side` -- left / balanced / right learner labels.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from mouse_rl.strategy import DEFAULT_SLOPE_THRESHOLD, strategy_from_behaviour

__all__ = [
    "MissingTrialsWarning",
    "session_metrics",
    "psychometric",
    "wilson_interval",
    "early_late_metrics",
    "cohort_correlations",
    "label_learner_side",
    "LEARNER_SIDES",
    "LEARNER_SIDE_THRESHOLD",
]

#: Values of ``learner_side`` (:func:`label_learner_side`), in plotting/counting order.
LEARNER_SIDES = ("left", "balanced", "right")
#: Default threshold on the late slope difference (P(Right) units) for the learner side.
LEARNER_SIDE_THRESHOLD = 0.1

#: Columns of :func:`session_metrics` output, after ``mouse`` and ``session``.
SESSION_METRIC_COLUMNS = [
    "n_trials",
    "accuracy",
    "p_right_left",
    "p_right_zero",
    "p_right_right",
    "bias",
    "left_slope",
    "right_slope",
    "slope_diff",
    "metric_definition",
]
#: Values of ``metric_definition`` (see :func:`session_metrics`).
METRIC_DEFINITIONS = ("zero", "midpoint", "undefined")
_ZERO_TOL = 1e-9  # |signed_contrast| below this counts as zero contrast


class MissingTrialsWarning(UserWarning):
    """A metric is NaN because a session lacks the trials it needs."""


def require_columns(df: pd.DataFrame, columns, what: str = "table") -> None:
    """Raise a clear error unless ``df`` is a non-empty DataFrame with ``columns``."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing required column(s) {missing}")
    if len(df) == 0:
        raise ValueError(f"{what} is empty")


def _response(trials: pd.DataFrame, use_model: bool) -> np.ndarray:
    """P(Right) per trial: the 0/1 choice, or the model's ``p_right``."""
    column = "p_right" if use_model else "choice"
    y = trials[column].to_numpy(dtype=float)
    if use_model:
        if np.isnan(y).any() or (y < 0).any() or (y > 1).any():
            raise ValueError("column 'p_right' must hold probabilities in [0, 1] without NaN")
    elif not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("column 'choice' must be 0 (Left) or 1 (Right) on every trial")
    return y


def _contrast(trials: pd.DataFrame) -> np.ndarray:
    c = trials["signed_contrast"].to_numpy(dtype=float)
    if np.isnan(c).any():
        raise ValueError("column 'signed_contrast' contains NaN")
    return c


def _warn_missing(table: pd.DataFrame, column: str, consequence: str,
                  keys=("mouse", "session")) -> None:
    bad = table.loc[table[column].isna(), list(keys)]
    if len(bad):
        shown = 20
        where = ", ".join(" ".join(f"{k} {v!r}" for k, v in zip(keys, row))
                          for row in bad.head(shown).itertuples(index=False))
        more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
        warnings.warn(f"{consequence}: {where}{more}", MissingTrialsWarning, stacklevel=3)


def session_metrics(trials: pd.DataFrame, use_model: bool = False) -> pd.DataFrame:
    """Accuracy, bias and psychometric slopes of every (mouse, session).

    Parameters
    ----------
    trials : pandas.DataFrame
        Trial table with columns ``mouse``, ``session``, ``signed_contrast``
        and ``choice`` (or ``p_right`` when ``use_model``).
    use_model : bool
        If True, use the model probability ``p_right`` in place of the 0/1
        choice (expected metrics of the model on the same trials).

    Returns
    -------
    pandas.DataFrame
        One row per (mouse, session), sorted, with columns

        - ``n_trials``: number of trials;
        - ``accuracy``: fraction correct on c != 0 trials (choice on the side
          of the stimulus; computed from choice and contrast, never from
          ``reward``);
        - ``p_right_left``, ``p_right_zero``, ``p_right_right``: P(Right)
          pooled over c < 0, c = 0 and c > 0 trials;
        - ``bias = P(R|0) - 0.5``;
        - ``left_slope = P(R|0) - P(R|L)``; ``right_slope = P(R|R) - P(R|0)``;
        - ``slope_diff = right_slope - left_slope`` (> 0: right stimulus
          learned better);
        - ``metric_definition``: which definition gave ``bias`` and the slopes.
          ``"zero"``: as above (the session has zero-contrast trials).
          ``"midpoint"``: no zero-contrast trials (e.g. the first IBL training
          phases, which show 100-6.25 % only): P(R|0) is replaced by the
          psychometric's centre ``m = (P(R|L) + P(R|R)) / 2``, so
          ``bias = m - 0.5`` and ``left_slope = right_slope = (P(R|R) - P(R|L)) / 2``;
          which side is learned better cannot be told from bias without
          zero-contrast trials, so ``slope_diff`` is NaN (undefined) and
          ``p_right_zero`` stays NaN (not measured). ``"undefined"``: a side
          has no trials, so bias and slopes are NaN.

    Warns
    -----
    MissingTrialsWarning
        Naming every mouse/session where a metric is NaN because the session
        has no trials of the needed contrast sign, and every session whose
        bias and slopes use the ``"midpoint"`` definition.
    """
    require_columns(trials, ["mouse", "session", "signed_contrast",
                             "p_right" if use_model else "choice"], "trials")
    y = _response(trials, use_model)
    c = _contrast(trials)
    left, right = c < -_ZERO_TOL, c > _ZERO_TOL
    zero = ~(left | right)
    p_correct = np.where(right, y, 1.0 - y)
    work = pd.DataFrame({
        "mouse": trials["mouse"].to_numpy(),
        "session": trials["session"].to_numpy(),
        "y": y,
        "correct": np.where(zero, np.nan, p_correct),
        "y_left": np.where(left, y, np.nan),
        "y_zero": np.where(zero, y, np.nan),
        "y_right": np.where(right, y, np.nan),
    })
    out = (
        work.groupby(["mouse", "session"], sort=True, observed=True)
        .agg(n_trials=("y", "size"), accuracy=("correct", "mean"),
             p_right_left=("y_left", "mean"), p_right_zero=("y_zero", "mean"),
             p_right_right=("y_right", "mean"))
        .reset_index()
    )
    return _bias_and_slopes(out)


def session_metrics_from_summaries(sessions: pd.DataFrame) -> pd.DataFrame:
    """:func:`session_metrics` from per-session summaries instead of trials.

    ``sessions``: one row per (mouse, session) with ``n_trials``, ``accuracy`` and ``p_right_left``,
    ``p_right_zero``, ``p_right_right`` (e.g. ``simulate_cohort(..., log="sessions").sessions``);
    returns the same columns as :func:`session_metrics` on the trials behind them.
    """
    require_columns(sessions, ["mouse", "session", "n_trials", "accuracy", "p_right_left", "p_right_zero",
                               "p_right_right"], "sessions")
    out = sessions[["mouse", "session", "n_trials", "accuracy", "p_right_left", "p_right_zero", "p_right_right"]]
    return _bias_and_slopes(out.sort_values(["mouse", "session"], kind="stable").reset_index(drop=True))


def _bias_and_slopes(out: pd.DataFrame) -> pd.DataFrame:
    """Add bias, slopes, slope_diff and metric_definition to per-session P(R) columns (warning about NaNs)."""
    out = out.copy()
    has_zero = out["p_right_zero"].notna()
    both_sides = out["p_right_left"].notna() & out["p_right_right"].notna()
    midpoint = ~has_zero & both_sides
    centre = out["p_right_zero"].where(has_zero, (out["p_right_left"] + out["p_right_right"]) / 2)
    out["bias"] = centre - 0.5
    out["left_slope"] = centre - out["p_right_left"]
    out["right_slope"] = out["p_right_right"] - centre
    out["slope_diff"] = (out["right_slope"] - out["left_slope"]).where(has_zero)
    out["metric_definition"] = np.where(has_zero, "zero", np.where(midpoint, "midpoint", "undefined"))
    _warn_missing(out.assign(_m=np.where(midpoint, np.nan, 0.0)), "_m",
                  "no zero-contrast trials, so bias/left_slope/right_slope use the midpoint of P(R|L) and P(R|R) "
                  "as P(R|0) (metric_definition='midpoint') and slope_diff is undefined (NaN)")
    _warn_missing(out.assign(_m=np.where(~has_zero & ~both_sides, np.nan, 0.0)), "_m",
                  "no zero-contrast trials and a side without trials, so bias/left_slope/right_slope/slope_diff "
                  "are NaN (metric_definition='undefined')")
    _warn_missing(out, "p_right_left",
                  "no left-stimulus (c < 0) trials, so p_right_left/left_slope/slope_diff are NaN")
    _warn_missing(out, "p_right_right",
                  "no right-stimulus (c > 0) trials, so p_right_right/right_slope/slope_diff are NaN")
    _warn_missing(out, "accuracy", "no non-zero-contrast trials, so accuracy is NaN")
    return out


def wilson_interval(k, n, confidence: float = 0.95):
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    k : array_like
        Number of successes (may be non-integer, e.g. summed probabilities).
    n : array_like
        Number of trials (> 0).
    confidence : float
        Two-sided coverage, e.g. 0.95.

    Returns
    -------
    low, high : ndarray
        Interval bounds (proportions in [0, 1]).
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = stats.norm.ppf(0.5 + confidence / 2.0)
    p = k / n
    denom = 1.0 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def psychometric(trials: pd.DataFrame, by=("mouse", "session"), use_model: bool = False,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Psychometric curve: P(Right) at each signed contrast, with Wilson CIs.

    Parameters
    ----------
    trials : pandas.DataFrame
        Trial table with ``signed_contrast``, ``choice`` (or ``p_right``) and
        the grouping columns ``by``.
    by : sequence of str
        Grouping columns; default one curve per (mouse, session). Use e.g.
        ``("session",)`` to pool mice, or ``()`` for one pooled curve.
    use_model : bool
        Average the model's ``p_right`` instead of the choices.
    confidence : float
        Coverage of the Wilson score interval (default 95 %).

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``*by, signed_contrast`` (fraction of full
        contrast), ``n`` (trials), ``p_right``, ``ci_low``, ``ci_high``.
    """
    by = list(by)
    require_columns(trials, by + ["signed_contrast", "p_right" if use_model else "choice"],
                    "trials")
    work = trials[by].copy()
    work["signed_contrast"] = np.round(_contrast(trials), 6)
    work["y"] = _response(trials, use_model)
    out = (
        work.groupby(by + ["signed_contrast"], sort=True, observed=True)["y"]
        .agg(n="size", k="sum")
        .reset_index()
    )
    out["p_right"] = out["k"] / out["n"]
    out["ci_low"], out["ci_high"] = wilson_interval(out["k"], out["n"], confidence)
    return out.drop(columns="k")


def label_learner_side(late_slope_diff, threshold: float = LEARNER_SIDE_THRESHOLD):
    """Label mice as left / balanced / right learners.

    Parameters
    ----------
    late_slope_diff : float, array_like or pandas.Series
        Late right slope minus left slope (units of P(Right)).
    threshold : float
        ``> threshold`` -> ``'right'`` (right stimulus learned better),
        ``< -threshold`` -> ``'left'``, otherwise ``'balanced'``.

    Returns
    -------
    str, ndarray of object or pandas.Series
        Matching the input's kind; NaN inputs give NaN labels.
    """
    values = np.asarray(late_slope_diff, dtype=float)
    left, balanced, right = LEARNER_SIDES
    labels = np.full(values.shape, balanced, dtype=object)
    labels[values > threshold] = right
    labels[values < -threshold] = left
    labels[np.isnan(values)] = np.nan
    if isinstance(late_slope_diff, pd.Series):
        return pd.Series(labels, index=late_slope_diff.index, name="learner_side")
    return labels.item() if labels.ndim == 0 else labels


def early_late_metrics(session_table: pd.DataFrame, early=(4, 8), late_n: int = 5,
                       criterion: float = 0.7,
                       side_threshold: float = LEARNER_SIDE_THRESHOLD,
                       slope_threshold: float = DEFAULT_SLOPE_THRESHOLD) -> pd.DataFrame:
    """Per-mouse early/late summary used in the paper (mouse_rl/MODEL.md section 6).

    Parameters
    ----------
    session_table : pandas.DataFrame
        Output of :func:`session_metrics` (columns ``mouse``, ``session``,
        ``accuracy``, ``bias``, ``left_slope``, ``right_slope``).
    early : (int, int)
        Inclusive range of 1-based session numbers averaged for the early bias.
    late_n : int
        Number of last sessions (by session number) averaged for late metrics;
        may overlap the early window when a mouse has few sessions.
    criterion : float
        Accuracy criterion for ``sessions_to_70`` (default 0.7).
    side_threshold : float
        Threshold of :func:`label_learner_side`.
    slope_threshold : float
        Threshold of :func:`mouse_rl.strategy.strategy_from_behaviour`.

    Returns
    -------
    pandas.DataFrame
        One row per mouse: ``n_sessions``, ``early_bias``, ``late_bias``,
        ``late_left_slope``, ``late_right_slope``, ``late_slope_diff``
        (= late right - late left slope; with a ``metric_definition`` column the
        slopes are averaged over ``"zero"``-definition sessions only), ``late_accuracy`` (mean of session
        accuracies), ``first_session_accuracy``, ``last_session_accuracy``,
        ``sessions_to_70`` (first session number with accuracy >= criterion,
        NaN if never), ``learner_side`` (left/balanced/right) and
        ``late_strategy`` (strategy name of the late mean slopes).

    Raises
    ------
    ValueError
        Naming each mouse lacking any session of the early window or having
        fewer than ``late_n`` sessions.
    """
    cols = ["mouse", "session", "accuracy", "bias", "left_slope", "right_slope"]
    require_columns(session_table, cols, "session_table")
    first, last = int(early[0]), int(early[1])
    if not 1 <= first <= last or late_n < 1:
        raise ValueError(f"need 1 <= early[0] <= early[1] and late_n >= 1, got {early}, {late_n}")
    st = session_table[cols].sort_values(["mouse", "session"], kind="stable")
    if "metric_definition" in session_table.columns:
        # per-side slopes only where P(R|0) was measured: a midpoint session says nothing about the side split
        split = session_table.loc[st.index, "metric_definition"].to_numpy() == "zero"
        st = st.assign(left_slope=st["left_slope"].where(split), right_slope=st["right_slope"].where(split))
    if st.duplicated(["mouse", "session"]).any():
        raise ValueError("session_table has duplicate (mouse, session) rows")
    per_mouse = st.groupby("mouse", sort=True, observed=True)

    n_sessions = per_mouse.size()
    in_early = st[st["session"].between(first, last)]
    n_early = in_early.groupby("mouse", observed=True).size().reindex(n_sessions.index, fill_value=0)
    short = n_sessions.index[(n_early < last - first + 1) | (n_sessions < late_n)]
    if len(short):
        detail = "; ".join(f"mouse {m!r}: sessions {sorted(st.loc[st['mouse'] == m, 'session'].tolist())}"
                           for m in short)
        raise ValueError(f"too few sessions: need every session {first}..{last} and at least "
                         f"{late_n} sessions; {detail}")

    late = per_mouse.tail(late_n).groupby("mouse", sort=True, observed=True)[
        ["bias", "left_slope", "right_slope", "accuracy"]].mean()
    reached = st[st["accuracy"] >= criterion].groupby("mouse", observed=True)["session"].min()
    out = pd.DataFrame({
        "n_sessions": n_sessions,
        "early_bias": in_early.groupby("mouse", observed=True)["bias"].mean(),
        "late_bias": late["bias"],
        "late_left_slope": late["left_slope"],
        "late_right_slope": late["right_slope"],
        "late_accuracy": late["accuracy"],
        "first_session_accuracy": per_mouse["accuracy"].first(skipna=False),
        "last_session_accuracy": per_mouse["accuracy"].last(skipna=False),
        "sessions_to_70": reached.reindex(n_sessions.index).astype(float),
    })
    out.insert(5, "late_slope_diff", out["late_right_slope"] - out["late_left_slope"])
    out.index.name = "mouse"
    out = out.reset_index()
    out["learner_side"] = label_learner_side(out["late_slope_diff"], side_threshold)
    late_slopes = out[["mouse"]].assign(left_slope=out["late_left_slope"],
                                         right_slope=out["late_right_slope"])
    out["late_strategy"] = strategy_from_behaviour(late_slopes, slope_threshold)["strategy_name"]
    for column in ["early_bias", "late_bias", "late_slope_diff", "late_accuracy",
                   "first_session_accuracy"]:
        _warn_missing(out, column, f"{column} is NaN (its sessions lack the needed trials)",
                      keys=("mouse",))
    return out


#: The paper's cohort relations: Pearson r across its 30 mice (MODEL.md section 6) for (x, y) columns of
#: :func:`early_late_metrics`.
PAPER_COHORT_R = {("early_bias", "late_slope_diff"): 0.69, ("early_bias", "late_bias"): -0.53}
COHORT_PAIRS = tuple(PAPER_COHORT_R)


def cohort_correlations(early_late: pd.DataFrame, pairs=COHORT_PAIRS) -> pd.DataFrame:
    """Pearson correlations across mice (paper: r = 0.69 and r = -0.53).

    Parameters
    ----------
    early_late : pandas.DataFrame
        Output of :func:`early_late_metrics` (one row per mouse).
    pairs : sequence of (str, str)
        Column pairs to correlate.

    Returns
    -------
    pandas.DataFrame
        Columns ``x``, ``y``, ``n`` (mice used; rows with NaN in either column
        are dropped with a warning), ``r`` (Pearson r) and ``p`` (two-sided).
    """
    require_columns(early_late, sorted({c for pair in pairs for c in pair}), "early_late")
    rows = []
    for x, y in pairs:
        xy = early_late[[x, y]].astype(float)
        ok = xy.notna().all(axis=1)
        if not ok.all():
            warnings.warn(f"{x} vs {y}: dropped {int((~ok).sum())} mice with NaN values",
                          MissingTrialsWarning, stacklevel=2)
        if ok.sum() < 3:
            raise ValueError(f"{x} vs {y}: need at least 3 mice with values, got {int(ok.sum())}")
        result = stats.pearsonr(xy.loc[ok, x], xy.loc[ok, y])
        rows.append({"x": x, "y": y, "n": int(ok.sum()),
                     "r": float(result.statistic), "p": float(result.pvalue)})
    return pd.DataFrame(rows)
