"""Figures of behavioural metrics (seaborn / matplotlib).

Every function builds its own :class:`matplotlib.figure.Figure` (no pyplot
state, no ``plt.show``), so it is safe under any backend, in tests and in
parallel workers. Save with ``fig.savefig(path)``; display in a notebook by
leaving the returned figure as the cell's value.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from mouse_rl.analysis.metrics import (
    LEARNER_SIDE_THRESHOLD,
    LEARNER_SIDES,
    cohort_correlations,
    label_learner_side,
    psychometric,
    require_columns,
)

__all__ = ["plot_learning_curves", "plot_psychometrics", "plot_early_late"]

_SIDE_COLOURS = dict(zip(LEARNER_SIDES, ("tab:blue", "tab:grey", "tab:red")))


def _figure(figsize=(5.0, 3.8)):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_learning_curves(session_table: pd.DataFrame, criterion: float = 0.7,
                         seed: int = 0) -> Figure:
    """Accuracy against session: each mouse thin, cohort mean with 95 % CI.

    Parameters
    ----------
    session_table : pandas.DataFrame
        Output of :func:`mouse_rl.analysis.session_metrics` (``mouse``,
        ``session``, ``accuracy``).
    criterion : float
        Accuracy drawn as a dotted reference line (fraction correct).
    seed : int
        Seed of the bootstrap CI of the mean.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(session_table, ["mouse", "session", "accuracy"], "session_table")
    data = session_table[["mouse", "session", "accuracy"]].copy()
    data["mouse"] = data["mouse"].astype(str)
    fig, ax = _figure()
    sns.lineplot(data=data, x="session", y="accuracy", units="mouse", estimator=None,
                 color="0.6", lw=0.6, alpha=0.6, ax=ax)
    sns.lineplot(data=data, x="session", y="accuracy", errorbar=("ci", 95), n_boot=500,
                 seed=seed, color="k", lw=2, ax=ax, label="cohort mean (95% CI)")
    ax.axhline(0.5, color="0.3", ls="--", lw=0.8)
    ax.axhline(criterion, color="tab:green", ls=":", lw=0.8)
    ax.set(xlabel="session", ylabel="accuracy (c \u2260 0)", ylim=(0.3, 1.0),
           title=f"learning curves (n = {data['mouse'].nunique()} mice)")
    return fig


def _session_bins(sessions: np.ndarray, spec) -> list[tuple[int, int]]:
    """Turn ``spec`` into inclusive (first, last) session ranges."""
    lo, hi = int(sessions.min()), int(sessions.max())
    if spec is None or isinstance(spec, (int, np.integer)):
        k = min(4 if spec is None else int(spec), hi - lo + 1)
        edges = np.linspace(lo, hi + 1, k + 1).round().astype(int)
        return [(int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    bins = []
    for item in spec:
        if np.ndim(item) == 0:
            bins.append((int(item), int(item)))
        else:
            first, last = item
            bins.append((int(first), int(last)))
    return bins


def plot_psychometrics(trials: pd.DataFrame, sessions=None, use_model: bool = False) -> Figure:
    """P(Right) against signed contrast, one line per bin of sessions (mice pooled).

    Parameters
    ----------
    trials : pandas.DataFrame
        Trial table (``session``, ``signed_contrast``, ``choice``; ``p_right``
        if ``use_model``).
    sessions : None, int, or sequence
        ``None``: 4 equal bins over the session range; an int k: k bins; a
        sequence of session numbers (one line each) or of inclusive
        ``(first, last)`` pairs.
    use_model : bool
        Plot the model's ``p_right`` instead of the choices.

    Returns
    -------
    matplotlib.figure.Figure
        Points with Wilson 95 % intervals, contrast as a fraction of full.
    """
    require_columns(trials, ["session", "signed_contrast", "p_right" if use_model else "choice"],
                    "trials")
    bins = _session_bins(trials["session"].to_numpy(), sessions)
    colours = sns.color_palette("viridis", len(bins))
    fig, ax = _figure()
    for (first, last), colour in zip(bins, colours):
        subset = trials[trials["session"].between(first, last)]
        if subset.empty:
            continue
        curve = psychometric(subset, by=(), use_model=use_model)
        x = curve["signed_contrast"].to_numpy()
        y = curve["p_right"].to_numpy()
        err = np.vstack([y - curve["ci_low"], curve["ci_high"] - y])
        label = f"session {first}" if first == last else f"sessions {first}\u2013{last}"
        ax.errorbar(x, y, yerr=err, color=colour, marker="o", ms=4, capsize=2, label=label)
    ax.axhline(0.5, color="0.5", ls="--", lw=0.8)
    ax.axvline(0.0, color="0.5", ls="--", lw=0.8)
    ax.set(xlabel="signed contrast (right \u2212 left)", ylabel="P(choose Right)",
           ylim=(-0.02, 1.02), title="psychometric curves")
    ax.legend(fontsize="small", frameon=False)
    return fig


def plot_early_late(early_late: pd.DataFrame, threshold: float = LEARNER_SIDE_THRESHOLD) -> Figure:
    """Early bias against late right-minus-left slope, coloured by learner side.

    Parameters
    ----------
    early_late : pandas.DataFrame
        Output of :func:`mouse_rl.analysis.early_late_metrics` (``early_bias``,
        ``late_slope_diff``; ``learner_side`` is computed if absent).
    threshold : float
        Learner-side threshold used when ``learner_side`` is absent.

    Returns
    -------
    matplotlib.figure.Figure
        Scatter with a least-squares line; Pearson r, p and n in the title.
    """
    require_columns(early_late, ["early_bias", "late_slope_diff"], "early_late")
    data = early_late.copy()
    if "learner_side" not in data.columns:
        data["learner_side"] = label_learner_side(data["late_slope_diff"], threshold)
    data = data.dropna(subset=["early_bias", "late_slope_diff"])
    fig, ax = _figure()
    sns.scatterplot(data=data, x="early_bias", y="late_slope_diff", hue="learner_side",
                    palette=_SIDE_COLOURS, hue_order=[k for k in _SIDE_COLOURS
                                                      if k in set(data["learner_side"])],
                    s=40, ax=ax)
    title = "early bias vs late slope difference"
    if len(data) >= 3:
        corr = cohort_correlations(data, pairs=[("early_bias", "late_slope_diff")]).iloc[0]
        if np.ptp(data["early_bias"]) > 0:
            slope, intercept = np.polyfit(data["early_bias"], data["late_slope_diff"], 1)
            xs = np.linspace(data["early_bias"].min(), data["early_bias"].max(), 2)
            ax.plot(xs, slope * xs + intercept, color="k", lw=1)
        title = f"r = {corr['r']:.2f}, p = {corr['p']:.2g}, n = {corr['n']}"
    ax.axhline(0.0, color="0.5", ls="--", lw=0.8)
    ax.axvline(0.0, color="0.5", ls="--", lw=0.8)
    ax.set(xlabel="early bias, sessions 4\u20138 (P(R|0) \u2212 0.5)",
           ylabel="late right \u2212 left slope", title=title)
    return fig
