"""IBL's psychometric function and its maximum-likelihood fit.

The model is ``psychofit.erf_psycho_2gammas`` (the function ibllib's
``brainbox.behavior.training.compute_psychometric`` fits to decide the
training status)::

    P(Right | c) = lapse_low + (1 - lapse_low - lapse_high) * (erf((c - bias) / threshold) + 1) / 2

with the signed contrast ``c`` in **percent** (-100..100; negative = stimulus
on the left), ``bias`` and ``threshold`` in percent contrast, the lapse rates
dimensionless in [0, 1] (``lapse_low`` = P(Right) far left, ``lapse_high`` =
P(Left) far right). Note: no sqrt(2) in the erf argument, as in psychofit.

The fit follows ``psychofit.mle_fit_psycho``: binomial negative
log-likelihood, a hard penalty (1e7) outside the parameter box, Nelder-Mead
(``scipy.optimize.fmin``) from the start point, then ``n_fits - 1`` restarts
from uniform random points in the box; the best fit wins. The boxes are the two
ibllib uses (``compute_psychometric``): :data:`CRITERION_BOX` (start
``[mean(c), 20, .05, .05]``, bounds ``[min(c), 0, 0, 0]`` .. ``[max(c), 100, 1,
1]``, 5 fits: the psychofit default) decides ``trained_1a/1b``;
:data:`PLOTTING_BOX` (start ``[0, 40, .1, .1]``, bounds ``[-50, 10, 0, 0]`` ..
``[50, 50, .2, .2]``, 10 fits) is ibllib's ``plotting=True`` fit. Restarts use
a seeded numpy generator, so fits are reproducible (psychofit uses the global
numpy RNG).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import erf

__all__ = [
    "PSYCHOMETRIC_PARAMETERS",
    "PsychometricBox",
    "CRITERION_BOX",
    "PLOTTING_BOX",
    "erf_psychometric",
    "fit_psychometric_counts",
    "fit_psychometric",
]

#: Fitted parameter names, in psychofit's order.
PSYCHOMETRIC_PARAMETERS = ("bias", "threshold", "lapse_low", "lapse_high")
_PENALTY = 1e7  # psychofit.neg_likelihood's value outside the box
_THRESHOLD_FLOOR = 1e-9  # percent; avoids 0/0 at the box's threshold = 0 edge
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class PsychometricBox:
    """Start point, bounds and number of fits of an IBL psychometric fit.

    ``None`` for a bias entry means "the mean / min / max of the contrasts in
    the data" (percent), as ibllib's criterion fit does.
    """

    name: str
    start: tuple
    lower: tuple
    upper: tuple
    n_fits: int

    def resolve(self, contrasts_pct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(start, lower, upper)`` arrays for these contrasts (percent)."""
        fill = {"start": float(np.mean(contrasts_pct)), "lower": float(np.min(contrasts_pct)),
                "upper": float(np.max(contrasts_pct))}
        out = []
        for key in ("start", "lower", "upper"):
            values = list(getattr(self, key))
            values[0] = fill[key] if values[0] is None else values[0]
            out.append(np.asarray(values, dtype=float))
        return tuple(out)


#: ibllib ``compute_psychometric(plotting=False)``: decides the training status.
CRITERION_BOX = PsychometricBox("ibllib-criterion", (None, 20.0, 0.05, 0.05), (None, 0.0, 0.0, 0.0),
                                (None, 100.0, 1.0, 1.0), n_fits=5)
#: ibllib ``compute_psychometric(plotting=True)``: better-behaved, for figures.
PLOTTING_BOX = PsychometricBox("ibllib-plotting", (0.0, 40.0, 0.1, 0.1), (-50.0, 10.0, 0.0, 0.0),
                               (50.0, 50.0, 0.2, 0.2), n_fits=10)


def erf_psychometric(contrast_pct, bias: float, threshold: float, lapse_low: float, lapse_high: float) -> np.ndarray:
    """P(choice = Right) at signed contrast ``contrast_pct`` (percent), psychofit's ``erf_psycho_2gammas``.

    ``bias`` and ``threshold`` are in percent contrast; the lapses in [0, 1].
    """
    c = np.asarray(contrast_pct, dtype=float)
    scale = max(float(threshold), _THRESHOLD_FLOOR)
    return lapse_low + (1.0 - lapse_low - lapse_high) * (erf((c - bias) / scale) + 1.0) / 2.0


def _neg_log_likelihood(pars, x, n, p, lower, upper) -> float:
    if np.any(pars < lower) or np.any(pars > upper):
        return _PENALTY
    probs = np.clip(erf_psychometric(x, *pars), _EPS, 1 - _EPS)
    return float(-np.sum(n * (p * np.log(probs) + (1 - p) * np.log(1 - probs))))


def fit_psychometric_counts(contrasts_pct, n_trials, p_right, box: PsychometricBox = CRITERION_BOX,
                            seed: int = 0) -> dict:
    """Maximum-likelihood fit of :func:`erf_psychometric` to counts per contrast.

    Parameters
    ----------
    contrasts_pct : array-like of float
        Distinct signed contrasts (percent, -100..100).
    n_trials : array-like of int
        Trials at each contrast (count, > 0).
    p_right : array-like of float
        Fraction of Right choices at each contrast, in [0, 1].
    box : PsychometricBox
        Start, bounds and number of fits (:data:`CRITERION_BOX` or :data:`PLOTTING_BOX`).
    seed : int
        Seed of the random restarts.

    Returns
    -------
    dict
        ``bias``, ``threshold`` (percent), ``lapse_low``, ``lapse_high``,
        ``neg_log_likelihood`` (nats) and ``n_trials`` (total count).
    """
    x = np.asarray(contrasts_pct, dtype=float).ravel()
    n = np.asarray(n_trials, dtype=float).ravel()
    p = np.asarray(p_right, dtype=float).ravel()
    if not (x.size == n.size == p.size) or x.size == 0:
        raise ValueError(f"contrasts_pct, n_trials, p_right: need equal, non-zero lengths, got {x.size}, {n.size}, {p.size}")
    if not np.isfinite(x).all() or np.abs(x).max() > 100:
        raise ValueError(f"contrasts_pct: must be finite percent in [-100, 100], got {x.tolist()}")
    if (n <= 0).any() or not np.isfinite(n).all():
        raise ValueError(f"n_trials: must be positive counts, got {n.tolist()}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p_right: must be fractions in [0, 1], got {p.tolist()}")
    start, lower, upper = box.resolve(x)
    rng = np.random.default_rng(seed)
    best, best_nll = None, np.inf
    for i in range(box.n_fits):
        pars = optimize.fmin(_neg_log_likelihood, start, args=(x, n, p, lower, upper), disp=False)
        nll = _neg_log_likelihood(pars, x, n, p, lower, upper)
        if nll < best_nll:
            best, best_nll = pars, nll
        start = lower + rng.random(lower.size) * (upper - lower)
    return dict(zip(PSYCHOMETRIC_PARAMETERS, map(float, best)),
                neg_log_likelihood=float(best_nll), n_trials=int(n.sum()))


def _contrast_counts(trials: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for col in ("signed_contrast", "choice"):
        if col not in trials.columns:
            raise ValueError(f"trials: missing required column {col!r}")
    if len(trials) == 0:
        raise ValueError("trials: the table is empty; nothing to fit")
    choice = trials["choice"].to_numpy(dtype=float)
    if not np.isin(choice, (0.0, 1.0)).all():
        bad = sorted(set(choice[~np.isin(choice, (0.0, 1.0))].tolist()))[:5]
        raise ValueError(f"choice: must be 0 (Left) or 1 (Right), got {bad}")
    c = np.round(trials["signed_contrast"].to_numpy(dtype=float) * 100, 6)
    if not np.isfinite(c).all():
        raise ValueError("signed_contrast: contains NaN")
    grouped = pd.Series(choice).groupby(c)
    return grouped.mean().index.to_numpy(float), grouped.size().to_numpy(float), grouped.mean().to_numpy(float)


def fit_psychometric(trials: pd.DataFrame, box: PsychometricBox = CRITERION_BOX, seed: int = 0) -> dict:
    """Fit IBL's psychometric to a trial table (all its rows pooled).

    ``trials`` needs ``signed_contrast`` (fraction; converted to percent as
    ibllib's ``get_signed_contrast`` does) and ``choice`` (1 = Right, 0 = Left).
    Returns :func:`fit_psychometric_counts`' dict.
    """
    x, n, p = _contrast_counts(trials)
    return fit_psychometric_counts(x, n, p, box=box, seed=seed)
