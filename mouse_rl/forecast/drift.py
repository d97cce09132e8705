"""The network's forecast with overnight weight drift of its free-running copies (``network_drift``).

As :class:`~mouse_rl.forecast.learners.LearnerForecaster` (population prior from the reference cohort,
MAP + Laplace on each forecast mouse's context, ``K`` parameter draws, each teacher-forced through the
context and then free-running through the gap and horizon), but every copy's weights jump overnight
(:mod:`mouse_rl.fit.drift`): before the first schedule session (the night after the last context
session) and before every later session, each log-weight of group ``"bias"`` (a_b, U_Lb, U_Rb) moves
by ``sigma_bias * eps`` and each of group ``"stim"`` (the six stimulus weights) by ``sigma_stim * eps``,
``eps ~ N(0, 1)``. Copies that drift spread out (some stay one-sided, some plateau lower), so the
predictive is less sure that every mouse becomes an expert.

The drift sds are chosen per fold on the reference cohort only: each reference mouse is forecast from
its own context fit as a forecast mouse is (its unobserved gap bridged by
:func:`~mouse_rl.forecast.learners.reference_schedule`), for every point of a grid of
``(sigma_bias, sigma_stim)``, and the point with the lowest animal-balanced log loss of the reference
mice's horizons wins. The recalibrated and stacked variants are then learned on that point's reference
forecasts. No forecast mouse's gap or horizon behaviour is read (the protocol's leak check holds for
every model); the drift noise is counter-based per copy, so every grid point sees the same noise and
choice streams (common random numbers), and ``sigma = 0`` gives the network's forecast exactly.

The noise of the first overnight uses counter ``0 .. 8`` of the drift stream
(:data:`mouse_rl.fit.drift.DRIFT_STREAM`), which :func:`~mouse_rl.fit.drift.free_run_drift` never uses
(its session starts are at trial ``t >= 1``, counters ``9 t + j``).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from envs import rng

from ..fit.checks import copy_seeds
from ..fit.drift import GROUPS, drift_noise, free_run_drift, log_jump, sigma_matrix
from ..network import flat_weights, weights_from_flat
from .glm import LogisticGLM, early_bias
from .learners import LearnerForecaster, apply_recalibration, fit_recalibration, stack_design
from .scoring import per_mouse

#: Default grid of the overnight sds (log-weight units per night), per group; the product is searched.
#: 0 = no drift; 0.1-0.4 spans the sds the free-running fits chose (README, drift table).
DEFAULT_GRID = {"bias": (0.0, 0.1, 0.2, 0.4), "stim": (0.0, 0.1, 0.2, 0.4)}
#: Reference scores that can pick the sds (:class:`DriftForecaster` ``select``).
SELECT = ("own", "recalibrated", "stacked")


def check_grid(grid) -> dict:
    """Validate a drift grid ``{group: sequence of sds >= 0}`` (groups of :data:`mouse_rl.fit.drift.GROUPS`)."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"sigma_grid: must be a non-empty dict group -> sds, got {grid!r}")
    out = {}
    for g, values in grid.items():
        if g not in GROUPS:
            raise ValueError(f"sigma_grid: unknown group {g!r}; choose from {tuple(GROUPS)}")
        v = np.atleast_1d(np.asarray(values, float))
        if v.ndim != 1 or not len(v) or not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"sigma_grid[{g!r}]: must be a non-empty list of finite sds >= 0, got {values!r}")
        out[g] = tuple(float(x) for x in v)
    return out


def drift_p_right(model, params, w, schedule, sigma: dict, seed: int = 0) -> np.ndarray:
    """P(Right) ``(T, K * M)`` of drifting free-running copies on ``schedule`` (a
    :class:`~mouse_rl.fit.batch.TrialBatch` of the ``M`` mice of ``model``), from the teacher-forced state
    ``(params, w)`` of :meth:`~mouse_rl.fit.cv.NetworkModel.context_state`; ``sigma``: ``{group: sd}``. Same
    choice streams as :meth:`~mouse_rl.fit.cv.NetworkModel.forecast_p_right` (``copy_seeds(mice, K, seed)``):
    with every sd 0 its numbers exactly."""
    fixed = model.transform.fixed
    M = model.batch.shape[1]
    B = int(params.eta.shape[0])
    K = B // M
    seeds = copy_seeds(model.batch.mice, K, seed).reshape(-1)  # column k * M + m
    sd = sigma_matrix(sigma, B)
    dtype = params.eta.dtype
    with torch.no_grad():
        flat = flat_weights(w).to(dtype)
        flat = log_jump(flat, torch.as_tensor(sd, dtype=dtype) * drift_noise(rng.as_seed_tensor(seeds), 0, dtype))
        _, p = free_run_drift(schedule.repeat(K), params, seeds, sd, fixed.encoding, fixed.positive,
                              fixed.zero_reward, init=weights_from_flat(flat))
    return p.cpu().numpy()


def animal_balanced_loss(rows: pd.DataFrame, p: np.ndarray) -> float:
    """Mean over mice of each mouse's mean per-trial log loss (nats) of forecasts ``p`` of ``rows``' choices."""
    table = pd.DataFrame({"model": "", "mouse": rows["mouse"].to_numpy(), "p_right": p,
                          "choice": rows["choice"].to_numpy(float)})
    return float(per_mouse(table)["log_loss"].mean())


class DriftForecaster(LearnerForecaster):
    """:class:`LearnerForecaster` of the network whose copies drift overnight (see the module docstring).

    Parameters
    ----------
    factory, name, n_copies, em_iter, recalibrate, seed : as :class:`LearnerForecaster` (the factory must
        build a :class:`~mouse_rl.fit.cv.NetworkModel` with positive weights; the population prior is
        required: the sds are chosen on the reference cohort).
    sigma_grid : ``{group: sds}`` (groups ``"bias"``, ``"stim"``); every combination is tried.
    select : the reference score that picks the sds: ``"own"`` (the drifting copies' own predictive),
        ``"recalibrated"`` or ``"stacked"`` (that variant fitted and scored on the same reference horizons,
        i.e. in-sample: 2 or 5 coefficients on the reference cohort's ~5 x 10^4 horizon trials).

    After ``fit``: ``sigma`` (the chosen ``{group: sd}``) and ``grid_scores`` (one row per grid point:
    the sds and ``log_loss``, the reference mice's animal-balanced horizon log loss).
    """

    tunes_on_reference = True

    def __init__(self, factory, name: str = "network_drift", n_copies: int = 100, em_iter: int = 6,
                 recalibrate: bool = True, seed: int = 0, sigma_grid: dict | None = None, select: str = "own"):
        super().__init__(factory, name, n_copies=n_copies, population=True, em_iter=em_iter,
                         recalibrate=recalibrate, seed=seed)
        self.grid = check_grid(DEFAULT_GRID if sigma_grid is None else sigma_grid)
        if select not in SELECT:
            raise ValueError(f"select: must be one of {SELECT}, got {select!r}")
        self.select = select
        self.sigma = None
        self.grid_scores = None

    @property
    def tuning(self) -> dict:
        """The chosen sds and the grid's reference scores (JSON-ready; the protocol keeps it per fold)."""
        if self.sigma is None:
            return {}
        return {"sigma": dict(self.sigma), "grid": self.grid_scores.to_dict("records")}

    def _reference_forecast(self, ref_model, schedule: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
        """Choose the sds on the reference horizons; return that point's forecasts of ``rows``."""
        horizon = (schedule["phase"] == "horizon").to_numpy()
        groups = list(self.grid)
        best, scores = None, []
        for values in itertools.product(*(self.grid[g] for g in groups)):
            self.sigma = dict(zip(groups, values))
            p = self._forecast(ref_model, schedule)[horizon]
            loss = animal_balanced_loss(rows, self._selected(rows, p))
            scores.append({**{f"sigma_{g}": v for g, v in self.sigma.items()}, "log_loss": loss})
            if best is None or loss < best[0]:
                best = (loss, self.sigma, p)
        self.grid_scores = pd.DataFrame(scores)
        self.sigma = best[1]
        self._state_for = None  # release the reference cohort's copies
        return best[2]

    def fit(self, observed: pd.DataFrame, targets) -> "DriftForecaster":
        self._observed_context = observed[observed["phase"] == "context"]  # for the stacked selection's bias
        return super().fit(observed, targets)

    def _selected(self, rows: pd.DataFrame, p: np.ndarray) -> np.ndarray:
        """The forecasts of the reference horizon ``rows`` that :attr:`select` scores."""
        if self.select == "own":
            return p
        truth = rows["choice"].to_numpy(float)
        if self.select == "recalibrated":
            return apply_recalibration(p, fit_recalibration(p, truth))
        X = stack_design(rows, p, early_bias(self._observed_context))
        return LogisticGLM("early_bias").fit_design(X, truth).predict_design(X)

    def _copies_p_right(self, model, draws: np.ndarray, batch) -> np.ndarray:
        """The drifting copies at :attr:`sigma` (teacher forcing through the context once per fitted model)."""
        if self.sigma is None:
            raise RuntimeError("forecast: network_drift has no drift sds yet (fit it on a fold with reference mice)")
        cached = getattr(self, "_state_for", None)
        if cached is None or cached[0] is not model or cached[1] is not model.u or cached[2] is not model.cov:
            self._state_for = (model, model.u, model.cov, model.context_state(draws))
        params, w = self._state_for[3]
        return drift_p_right(model, params, w, batch, self.sigma, self.seed)


__all__ = ["DEFAULT_GRID", "SELECT", "DriftForecaster", "animal_balanced_loss", "check_grid", "drift_p_right"]
