"""Scores of forecasts: per-trial log loss, animal-balanced means, paired bootstrap intervals, reliability."""
from __future__ import annotations

import numpy as np
import pandas as pd

#: Forecast probabilities are clipped to [EPS, 1 - EPS] before the log loss (a model that says 0 or 1 and
#: is wrong scores -log(EPS) = 27.6 nats on that trial, not infinity).
EPS = 1e-12


def log_loss(p_right: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Per-trial log loss in nats: ``-log P(observed choice)``; choice 1 = Right."""
    p = np.clip(np.asarray(p_right, float), EPS, 1 - EPS)
    y = np.asarray(choice, float)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def per_mouse(predictions: pd.DataFrame) -> pd.DataFrame:
    """Mean log loss per (model, mouse) of a predictions table (``model``, ``mouse``, ``p_right``, ``choice``)."""
    df = predictions.assign(log_loss=log_loss(predictions["p_right"], predictions["choice"]))
    return df.groupby(["model", "mouse"], sort=True).agg(log_loss=("log_loss", "mean"),
                                                         n_trials=("log_loss", "size")).reset_index()


def paired_bootstrap(diff: np.ndarray, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of per-mouse differences, resampling mice with replacement."""
    diff = np.asarray(diff, float)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarise(scores: pd.DataFrame, reference: str | None = None, n_boot: int = 10_000,
              seed: int = 0) -> pd.DataFrame:
    """Per model: animal-balanced mean log loss (nats/trial) and its difference from ``reference``
    (default: the best GLM) with a paired bootstrap 95% interval over mice (negative = better than it)."""
    wide = scores.pivot(index="mouse", columns="model", values="log_loss")
    if reference is None:
        glms = [m for m in wide.columns if m.startswith("glm_")]
        reference = wide[glms].mean().idxmin() if glms else wide.mean().idxmin()
    rows = []
    for model in wide.columns:
        d = (wide[model] - wide[reference]).to_numpy()
        lo, hi = paired_bootstrap(d, n_boot, seed)
        rows.append({"model": model, "log_loss": wide[model].mean(), "reference": reference,
                     "diff_vs_reference": d.mean(), "diff_ci_low": lo, "diff_ci_high": hi,
                     "better_than_reference": hi < 0, "n_mice": len(d)})
    return pd.DataFrame(rows).sort_values("log_loss").reset_index(drop=True)


def reliability(predictions: pd.DataFrame, n_bins: int = 10) -> pd.DataFrame:
    """Reliability curve per model: forecast P(Right) in ``n_bins`` equal-width bins vs the observed
    fraction of Right choices (``mean_forecast``, ``observed``, ``n_trials`` per bin)."""
    bins = np.clip((predictions["p_right"].to_numpy(float) * n_bins).astype(int), 0, n_bins - 1)
    df = predictions.assign(bin=bins)
    out = df.groupby(["model", "bin"]).agg(mean_forecast=("p_right", "mean"), observed=("choice", "mean"),
                                           n_trials=("choice", "size")).reset_index()
    return out
