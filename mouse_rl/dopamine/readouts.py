"""Model dopamine read-outs of a trial table (mouse_rl/MODEL.md section 5).

For every trial of a table with model columns (``q_*_L/R``, ``delta_*``,
see :mod:`mouse_rl.schema`):

* **stimulus-onset responses** (the model's value of the chosen action's
  stimulus pathway at stimulus onset):

  - ``stim_q_stim`` = Q^stim[choice];
  - ``stim_q_tot_minus_const`` = Q^tot[choice] - Q^const[choice].

  The network is linear (Q^tot = Q^stim + Q^const exactly), so the two columns
  are equal up to float rounding; both are reported so that tables from any
  source (e.g. a fitted model that logs only Q^tot and Q^const) can be checked.

* **outcome responses**: ``delta_tot``, ``delta_stim``, ``delta_const``
  (``reward_mode="experienced"``: reward actually received minus Q, the
  default; ``"model"``: the logged learning signals, which use reward 0.5 at
  c = 0 under ``zero_reward="expected"``).

Splits: signed contrast, reward, learning stage (``session_bin``; and
``strategy_name`` where weights are known) and the association state of the
presented stimulus (``presented_gain`` = a_L or a_R of the stimulus shown,
``association`` = "associated" if above ``gain_threshold`` else
"unassociated"; "none" at zero contrast).

Which weights are used (column ``weights_source``):

* ``"per-trial"``: the trial table itself carries the weight columns (e.g. the
  per-trial table of the teacher-forced fit, or
  :func:`mouse_rl.dopamine.optogenetics.simulate_opto` with
  ``record_weights=True``: weights *before* the trial's update);
* ``"previous-session-end"``: a per-session snapshot table
  (:attr:`mouse_rl.CohortResult.weights`: session 0 = initial weights,
  session s = after session s) joined so that every trial of session s gets
  the snapshot of session s - 1, i.e. the weights at the *start* of its
  session (within-session drift is ignored);
* ``"none"``: no weights, association and strategy are missing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from mouse_rl.schema import KEY_COLUMNS, WEIGHT_COLUMNS

from ._common import DELTAS, Q_COLUMNS, chosen, figure, outcome_deltas, require, stimulus_side

__all__ = [
    "STIMULUS_SIGNALS", "OUTCOME_SIGNALS", "DEFAULT_GAIN_THRESHOLD",
    "readout_table", "tidy_readouts", "summarise_readouts", "session_bins",
    "plot_delta_vs_contrast", "plot_delta_over_sessions",
]

STIMULUS_SIGNALS = ("stim_q_stim", "stim_q_tot_minus_const")
OUTCOME_SIGNALS = DELTAS
#: Cortical gain above which a stimulus counts as associated. Gains start at
#: w0 = 0.05; an unassociated stimulus decays towards 0, an associated one
#: grows to ~0.2-0.5 (default parameters).
DEFAULT_GAIN_THRESHOLD = 0.1


def session_bins(sessions, bins=5) -> pd.Categorical:
    """Ordered stage labels ``"1-5", "6-10", ...``.

    ``bins``: an int (sessions per bin) or a sequence of first sessions of each
    bin (e.g. ``[1, 4, 9, 21]``).
    """
    s = np.asarray(sessions, dtype=int)
    if np.isscalar(bins):
        if int(bins) < 1:
            raise ValueError(f"bins: sessions per bin must be >= 1, got {bins!r}")
        starts = np.arange(1, max(int(s.max()), 1) + 1, int(bins))
    else:
        starts = np.unique(np.asarray(bins, dtype=int))
        if starts.size == 0 or starts[0] > s.min():
            raise ValueError(f"bins: the first bin must start at or before session {s.min()}, got {list(starts)}")
    ends = np.append(starts[1:] - 1, max(int(s.max()), starts[-1]))
    labels = [f"{a}-{b}" if b > a else f"{a}" for a, b in zip(starts, ends)]
    code = np.searchsorted(starts, s, side="right") - 1
    return pd.Categorical.from_codes(code, categories=labels, ordered=True)


def _weights_for_trials(trials: pd.DataFrame, weights: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str]:
    if all(c in trials.columns for c in WEIGHT_COLUMNS):
        return trials[WEIGHT_COLUMNS].astype(float), "per-trial"
    if weights is None:
        return None, "none"
    require(weights, ["mouse", "session"] + WEIGHT_COLUMNS, "weights table")
    snap = weights[["mouse", "session"] + WEIGHT_COLUMNS].copy()
    snap["session"] = snap["session"].astype(int) + 1  # end of s-1 = start of s
    keys = trials[["mouse", "session"]].copy()
    keys["session"] = keys["session"].astype(int)
    joined = keys.merge(snap, on=["mouse", "session"], how="left", validate="many_to_one")
    joined.index = trials.index
    return joined[WEIGHT_COLUMNS], "previous-session-end"


def readout_table(trials: pd.DataFrame, weights: pd.DataFrame | None = None, *,
                  reward_mode: str = "experienced", bins=5,
                  gain_threshold: float = DEFAULT_GAIN_THRESHOLD,
                  strategy_threshold: float | None = None) -> pd.DataFrame:
    """One row per trial: keys, task variables, stimulus-onset and outcome responses, splits.

    Parameters
    ----------
    trials : trial table with model columns (simulation or fitted model).
    weights : optional per-session snapshot table (see module doc); ignored if
        ``trials`` has per-trial weight columns.
    reward_mode : ``"experienced"`` (default) or ``"model"`` (see module doc).
    bins : sessions per stage bin, or first sessions of the bins.
    gain_threshold : cortical gain above which the presented stimulus is "associated".
    strategy_threshold : threshold of :func:`mouse_rl.strategy.strategy_of` (Q units; default its own).

    Returns
    -------
    pandas.DataFrame with columns mouse, session, trial, signed_contrast,
    stimulus_side ("L"/"R"/"none"), choice, reward, rewarded ("rewarded"/"unrewarded"),
    the signals in :data:`STIMULUS_SIGNALS` and :data:`OUTCOME_SIGNALS`,
    session_bin, presented_gain, association, strategy_name, weights_source.
    """
    require(trials, KEY_COLUMNS + ["signed_contrast", "choice", "reward"] + Q_COLUMNS, "trial table")
    c = trials["signed_contrast"].to_numpy(float)
    out = trials[KEY_COLUMNS + ["signed_contrast"]].copy()
    out["stimulus_side"] = stimulus_side(c)
    out["choice"] = trials["choice"].to_numpy()
    out["reward"] = trials["reward"].to_numpy(float)
    out["rewarded"] = np.where(out["reward"] == 1, "rewarded", np.where(out["reward"] == 0, "unrewarded", "unknown"))
    out["stim_q_stim"] = chosen(trials, "q_stim")
    out["stim_q_tot_minus_const"] = chosen(trials, "q_tot") - chosen(trials, "q_const")
    deltas = outcome_deltas(trials, reward_mode)
    for name in DELTAS:
        out[name] = deltas[name].to_numpy()
    out["session_bin"] = session_bins(trials["session"], bins)
    w, source = _weights_for_trials(trials, weights)
    out["weights_source"] = source
    if w is None:
        out["presented_gain"] = np.nan
        out["association"] = pd.Series([None] * len(out), index=out.index, dtype=object)
        out["strategy_name"] = pd.Series([None] * len(out), index=out.index, dtype=object)
        return out
    gain = np.where(c < 0, w["a_L"].to_numpy(), np.where(c > 0, w["a_R"].to_numpy(), np.nan))
    out["presented_gain"] = gain
    assoc = np.where(gain > gain_threshold, "associated", "unassociated").astype(object)
    assoc[c == 0] = "none"
    assoc[(c != 0) & np.isnan(gain)] = None
    out["association"] = assoc
    from mouse_rl.strategy import strategy_from_weights_table  # noqa: PLC0415

    kw = {} if strategy_threshold is None else {"threshold": strategy_threshold}
    valid = w.notna().all(axis=1)
    names = pd.Series([None] * len(out), index=out.index, dtype=object)
    if valid.any():
        names[valid] = strategy_from_weights_table(w[valid], **kw)["strategy_name"].to_numpy()
    out["strategy_name"] = names
    return out


def tidy_readouts(table: pd.DataFrame, signals=None) -> pd.DataFrame:
    """Long format of :func:`readout_table`: one row per trial and signal.

    Adds ``signal`` (column name), ``epoch`` ("stimulus" or "outcome") and ``value``.
    """
    signals = list(signals) if signals is not None else list(STIMULUS_SIGNALS + OUTCOME_SIGNALS)
    require(table, signals, "read-out table")
    ids = [c for c in table.columns if c not in STIMULUS_SIGNALS + OUTCOME_SIGNALS]
    long = table.melt(id_vars=ids, value_vars=signals, var_name="signal", value_name="value")
    long["epoch"] = np.where(long["signal"].isin(STIMULUS_SIGNALS), "stimulus", "outcome")
    return long


def summarise_readouts(table: pd.DataFrame, by=("session_bin", "signed_contrast", "rewarded"),
                       signals=None) -> pd.DataFrame:
    """Mean, SEM and count of each signal per group (tidy: one row per group and signal)."""
    long = tidy_readouts(table, signals)
    by = list(by) + ["epoch", "signal"]
    g = long.groupby(by, observed=True, dropna=False)["value"]
    out = g.agg(mean="mean", sem="sem", n="count").reset_index()
    return out


def plot_delta_vs_contrast(table: pd.DataFrame, signals=("stim_q_stim",) + OUTCOME_SIGNALS,
                           stage: str = "session_bin", rewarded_only: bool | None = None) -> Figure:
    """One panel per signal: mean response vs signed contrast, one line per stage.

    Outcome signals are drawn separately for rewarded (solid) and unrewarded
    (dashed) trials unless ``rewarded_only`` is True/False (then only those).
    """
    require(table, list(signals) + ["signed_contrast", "rewarded", stage], "read-out table")
    fig, axes = figure(len(signals))
    data = table.copy()
    data[stage] = data[stage].astype(str)
    if rewarded_only is not None:
        data = data[data["rewarded"] == ("rewarded" if rewarded_only else "unrewarded")]
    order = [str(v) for v in pd.unique(table[stage].sort_values()) if pd.notna(v)]
    for ax, sig in zip(axes, signals):
        style = None if sig in STIMULUS_SIGNALS else "rewarded"
        sns.lineplot(data=data, x="signed_contrast", y=sig, hue=stage, hue_order=order, style=style,
                     style_order=["rewarded", "unrewarded"] if style else None, errorbar=None,
                     marker="o", palette="viridis", ax=ax, legend=ax is axes[-1])
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(title=sig, xlabel="signed contrast", ylabel="model response")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize="small")
    return fig


def plot_delta_over_sessions(table: pd.DataFrame, signals=("stim_q_stim", "delta_stim")) -> Figure:
    """One panel per signal: mean response per session on stimulus trials, associated vs unassociated."""
    require(table, list(signals) + ["session", "association"], "read-out table")
    data = table[table["association"].isin(["associated", "unassociated"])]
    fig, axes = figure(len(signals))
    for ax, sig in zip(axes, signals):
        if len(data):
            sns.lineplot(data=data, x="session", y=sig, hue="association",
                         hue_order=["associated", "unassociated"], style="stimulus_side",
                         errorbar=("se", 1), ax=ax, legend=ax is axes[-1])
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(title=sig, xlabel="session", ylabel="model response")
    return fig
