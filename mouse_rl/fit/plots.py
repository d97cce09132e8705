"""Per-mouse figures of a fit: data vs model psychometrics, learning curve, weights."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _bins(sessions, n_bins: int):
    s = np.sort(np.unique(sessions))
    return [b for b in np.array_split(s, min(n_bins, len(s))) if len(b)]


def plot_mouse_fit(fitted: pd.DataFrame, mouse: str | None = None, n_bins: int = 4) -> Figure:
    """Three panels for one mouse of a teacher-forced table (``FitResult.trials``).

    Left: P(Right) vs signed contrast per session bin, data (dots) and model
    (lines, mean of the model's P(Right) on the same trials). Middle: accuracy
    on c != 0 per session, data and model. Right: stimulus strengths
    w_L = a_L (U_LL - U_RL), w_R = a_R (U_RR - U_LR) and bias a_b (U_Rb - U_Lb)
    across trials (Q units).
    """
    from ..network import weights_from_flat
    from ..schema import WEIGHT_COLUMNS
    from ..strategy import stimulus_strength

    mouse = mouse if mouse is not None else str(fitted["mouse"].iloc[0])
    d = fitted[fitted["mouse"].astype(str) == str(mouse)]
    if d.empty:
        raise ValueError(f"mouse {mouse!r} not in the table")
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    colors = [f"C{i}" for i in range(10)]
    for i, b in enumerate(_bins(d["session"], n_bins)):
        db = d[d["session"].isin(b)]
        g = db.groupby("signed_contrast")
        label = f"sessions {b[0]}-{b[-1]}"
        ax1.plot(g["choice"].mean().index, g["choice"].mean(), "o", color=colors[i % 10], label=label)
        ax1.plot(g["p_right"].mean().index, g["p_right"].mean(), "-", color=colors[i % 10])
    ax1.set(xlabel="signed contrast", ylabel="P(Right)", ylim=(0, 1), title=f"{mouse}: data (dots) vs model")
    ax1.legend(fontsize=7)
    nz = d[d["signed_contrast"] != 0]
    correct_data = (nz["choice"] == (nz["signed_contrast"] > 0)).astype(float)
    correct_model = np.where(nz["signed_contrast"] > 0, nz["p_right"], 1 - nz["p_right"])
    acc = pd.DataFrame({"session": nz["session"], "data": correct_data, "model": correct_model}).groupby("session").mean()
    ax2.plot(acc.index, acc["data"], "o-", label="data")
    ax2.plot(acc.index, acc["model"], "s--", label="model")
    ax2.axhline(0.5, color="grey", lw=0.5)
    ax2.set(xlabel="session", ylabel="accuracy (c != 0)", ylim=(0.3, 1), title="learning curve")
    ax2.legend(fontsize=7)
    a, U = weights_from_flat(d[WEIGHT_COLUMNS].to_numpy())
    wl, wr = stimulus_strength(a, U)
    t = np.arange(len(d))
    ax3.plot(t, wl, label="w_L (left stim)")
    ax3.plot(t, wr, label="w_R (right stim)")
    ax3.plot(t, a[:, 2] * (U[:, 1, 2] - U[:, 0, 2]), label="bias (R - L)")
    for s in np.flatnonzero(np.diff(d["session"].to_numpy())):
        ax3.axvline(s + 1, color="grey", lw=0.3)
    ax3.set(xlabel="trial", ylabel="Q units", title="fitted weights")
    ax3.legend(fontsize=7)
    return fig


def plot_check(check, mouse: str) -> Figure:
    """Real vs free-running copies of one mouse (:class:`mouse_rl.fit.checks.CheckResult`).

    Left: accuracy on c != 0 per session, the mouse (dots; open where outside
    the band), the copies' median with their 5-95% band and, where the check has it, the fitted
    model's expected accuracy learning from the mouse's own choices (dashed). Middle: P(Right)
    for left and right stimuli per session, same layout. Right: the copies'
    late slope differences (histogram) with the mouse's value and the learner-side thresholds.
    """
    from ..analysis.metrics import LEARNER_SIDE_THRESHOLD

    s = check.per_session[check.per_session["mouse"] == str(mouse)]
    if s.empty:
        raise ValueError(f"mouse {mouse!r} not in the check")
    m = check.per_mouse.set_index("mouse").loc[str(mouse)]
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    x = s["session"].to_numpy()
    ax1.fill_between(x, s["accuracy_lo"], s["accuracy_hi"], color="0.8", label="copies 5-95%")
    ax1.plot(x, s["accuracy_median"], color="0.4", label="copies median")
    if "accuracy_teacher_forced" in s:
        ax1.plot(x, s["accuracy_teacher_forced"], "--", color="tab:green", lw=1, label="fit on mouse's choices")
    inside = s["accuracy_inside"].to_numpy(bool)
    ax1.plot(x[inside], s["accuracy"].to_numpy()[inside], "o", color="k", ms=4, label="mouse")
    ax1.plot(x[~inside], s["accuracy"].to_numpy()[~inside], "o", mfc="none", color="r", ms=5, label="outside")
    ax1.set(xlabel="session", ylabel="accuracy (c != 0)", ylim=(0.3, 1.0),
            title=f"{mouse}: {inside.mean():.0%} of sessions inside")
    ax1.legend(fontsize=7)
    for key, colour, label in (("p_right_left", "tab:blue", "left stim"), ("p_right_right", "tab:red", "right stim")):
        ax2.fill_between(x, s[f"{key}_lo"], s[f"{key}_hi"], color=colour, alpha=0.2)
        ax2.plot(x, s[f"{key}_median"], color=colour, lw=1)
        ax2.plot(x, s[key], "o", color=colour, ms=3, label=f"mouse, {label}")
    ax2.set(xlabel="session", ylabel="P(Right)", ylim=(0, 1), title="P(Right) by stimulus side")
    ax2.legend(fontsize=7)
    copies = check.copies[check.copies["mouse"] == str(mouse)]["late_slope_diff"].dropna()
    ax3.hist(copies, bins=20, color="0.6")
    ax3.axvline(m["late_slope_diff"], color="k", lw=2, label=f"mouse ({m['side']})")
    for t in (-LEARNER_SIDE_THRESHOLD, LEARNER_SIDE_THRESHOLD):
        ax3.axvline(t, color="0.3", ls=":")
    ax3.set(xlabel="late slope difference (right - left)", ylabel="copies",
            title=f"modal copy: {m['side_modal_sim']} ({m['side_share']:.0%} {m['side']})")
    ax3.legend(fontsize=7)
    return fig
