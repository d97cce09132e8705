"""Figures of forecasts: reliability curves and forecast vs real horizon psychometrics."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def plot_reliability(reliability: pd.DataFrame, models=None) -> Figure:
    """Observed fraction of Right choices against the forecast P(Right), one line per model."""
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for model, d in reliability.groupby("model"):
        if models is not None and model not in models:
            continue
        ax.plot(d["mean_forecast"], d["observed"], marker="o", ms=3, label=model)
    ax.set(xlabel="forecast P(Right)", ylabel="observed fraction Right", xlim=(0, 1), ylim=(0, 1),
           title="forecast calibration (horizon trials)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_psychometrics(predictions: pd.DataFrame, mice, models=("network", "glm_early_bias")) -> Figure:
    """Per mouse: the real horizon psychometric (P(Right) by signed contrast, black) and each model's forecast."""
    mice = list(mice)
    fig = Figure(figsize=(3.0 * len(mice), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(mice), sharey=True))
    for ax, mouse in zip(axes, mice):
        d = predictions[predictions["mouse"] == mouse]
        real = d[d["model"] == d["model"].iloc[0]].groupby("signed_contrast")["choice"].mean()
        ax.plot(real.index, real.to_numpy(), "k-o", ms=3, label="mouse")
        for model in models:
            f = d[d["model"] == model].groupby("signed_contrast")["p_right"].mean()
            if len(f):
                ax.plot(f.index, f.to_numpy(), marker=".", label=model)
        ax.set(title=str(mouse), xlabel="signed contrast", ylim=(0, 1))
    axes[0].set_ylabel("P(Right), final sessions")
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
