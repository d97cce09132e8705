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


def telling_mice(scores: pd.DataFrame, model: str, reference: str, n: int = 2) -> list:
    """The ``n`` mice where ``model`` beats ``reference`` by most and the ``n`` where it loses by most."""
    w = scores.pivot(index="mouse", columns="model", values="log_loss")
    d = (w[model] - w[reference]).sort_values()
    return list(dict.fromkeys([*d.index[:n], *d.index[::-1][:n]]))


def forecast_figures(predictions: pd.DataFrame, scores: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The two figures of a forecast run: ``reliability`` and ``psychometrics`` (the network, its
    recalibration and the reference GLM on the mice where the network gains and loses most)."""
    from .scoring import reliability

    models = list(summary["model"])
    reference = summary["reference"].iloc[0]
    main = next((m for m in ("network", "network_recalibrated") if m in models), models[0])
    shown = [m for m in dict.fromkeys((main, "network_recalibrated", reference)) if m in models]
    mice = telling_mice(scores, main, reference) if main != reference else sorted(scores["mouse"].unique())[:4]
    return {"reliability": plot_reliability(reliability(predictions), shown),
            "psychometrics": plot_psychometrics(predictions, mice, shown)}
