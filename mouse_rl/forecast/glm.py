"""Descriptive competitors of the forecast: pooled logistic GLMs of the psychometric curve.

Features (``cL``, ``cR`` the left and right contrasts, fractions; ``h`` = 1 on horizon rows;
``b`` the mouse's early bias, :func:`early_bias`):

* ``"psychometric"``: 1, cL, cR.
* ``"late_phase"``: + h, h cL, h cR.
* ``"early_bias"``: + b, b h (with the horizon x contrast terms of ``late_phase``).

Fitted on every observed row of a fold (reference mice's context and horizon, the forecast
mice's context) by L-BFGS on the summed log loss (nats) + ``l2 / 2 * |w|^2`` (intercept not
penalised, ``l2 = 0.02``: a Gaussian prior of sd ~7 on each weight, next to nothing beside
~10^5 trials).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

GLM_KINDS = ("psychometric", "late_phase", "early_bias")
#: Sessions (ranked, 1-based) over which a mouse's early bias is averaged.
EARLY_BIAS_SESSIONS = (4, 8)


def early_bias(rows: pd.DataFrame, sessions=EARLY_BIAS_SESSIONS) -> pd.Series:
    """Per mouse: mean over sessions ``sessions[0]..sessions[1]`` (ranked within the mouse) of the session
    ``bias`` of :func:`mouse_rl.analysis.session_metrics` (P(Right | c = 0) - 0.5), over the sessions with
    zero-contrast trials; 0 for a mouse without any."""
    from ..analysis import session_metrics

    sm = session_metrics(rows)
    rank = sm.groupby("mouse")["session"].rank(method="dense")
    sel = sm[(rank >= sessions[0]) & (rank <= sessions[1]) & (sm["metric_definition"] == "zero")]
    out = sel.groupby("mouse")["bias"].mean()
    return out.reindex(sorted(rows["mouse"].unique())).fillna(0.0)


def features(rows: pd.DataFrame, kind: str, bias: pd.Series | None = None) -> np.ndarray:
    """Design matrix ``(n, k)`` of ``kind`` for rows with a ``phase`` column."""
    if kind not in GLM_KINDS:
        raise ValueError(f"kind: must be one of {GLM_KINDS}, got {kind!r}")
    cl, cr = rows["contrastLeft"].to_numpy(float), rows["contrastRight"].to_numpy(float)
    cols = [np.ones(len(rows)), cl, cr]
    if kind != "psychometric":
        h = (rows["phase"].astype(str) == "horizon").to_numpy(float)
        cols += [h, h * cl, h * cr]
        if kind == "early_bias":
            b = rows["mouse"].map(bias).to_numpy(float)
            cols += [b, b * h]
    return np.column_stack(cols)


class LogisticGLM:
    """One pooled GLM of a fold: ``fit(observed, targets)``, ``predict(schedule)`` -> P(Right) of its rows."""

    def __init__(self, kind: str = "early_bias", l2: float = 0.02):
        if kind not in GLM_KINDS:
            raise ValueError(f"kind: must be one of {GLM_KINDS}, got {kind!r}")
        self.kind, self.l2 = kind, float(l2)
        self.name = f"glm_{kind}"

    def fit(self, observed: pd.DataFrame, targets) -> "LogisticGLM":
        self.bias = early_bias(observed)
        return self.fit_design(features(observed, self.kind, self.bias), observed["choice"].to_numpy(float))

    def predict(self, schedule: pd.DataFrame) -> np.ndarray:
        return self.predict_design(features(schedule, self.kind, self.bias))

    def predict_design(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-X @ self.w))

    def fit_design(self, X: np.ndarray, y: np.ndarray) -> "LogisticGLM":
        """Fit the weights on a design matrix whose first column is the (unpenalised) intercept."""
        n = len(y)  # the loss is divided by n only to keep L-BFGS's tolerances in per-trial units
        pen = np.ones(X.shape[1])
        pen[0] = 0.0

        def loss(w):
            z = X @ w
            p = 1.0 / (1.0 + np.exp(-z))
            f = np.sum(np.logaddexp(0, z) - y * z) + 0.5 * self.l2 * np.sum(pen * w**2)
            return f / n, (X.T @ (p - y) + self.l2 * pen * w) / n

        self.w = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B").x
        return self
