"""The network fitted by its free-running behaviour (:mod:`mouse_rl.fit.freerun`) as a forecaster.

Each forecast mouse's parameters θ are chosen on its context only, by the energy score of its context
sessions' choice rates under free-running copies (:func:`mouse_rl.fit.freerun.fit_free_running`). Two
forecasts of the horizon, both averaging P(Right) over ``n_copies`` copies with fresh choice streams:

* ``network_freerun``: copies run free from the first context session through the gap to the horizon (the
  real stimuli and session lengths): the model's own learning trajectory, from θ alone;
* ``network_freerun_tf``: copies are teacher-forced through the mouse's context (they learn from its real
  choices and rewards), then run free through the gap and horizon: θ plus the mouse's own history.

No reference mouse is used (there is no population prior for this criterion).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..fit.batch import make_batch, prepare_trials
from ..fit.checks import copy_seeds, free_run
from ..fit.cv import NetworkModel
from ..fit.freerun import fit_free_running
from .learners import copies_mean_by_row, placeholder_table


class FreeRunForecaster:
    """See the module docstring. ``n_copies``: forecast copies per mouse; ``fit``: keyword arguments of
    :func:`~mouse_rl.fit.freerun.fit_free_running` (its own ``n_copies`` is the fit's)."""

    name = "network_freerun"

    def __init__(self, n_copies: int = 100, seed: int = 0, fit: dict | None = None):
        if int(n_copies) != n_copies or n_copies < 1:
            raise ValueError(f"n_copies: must be a positive integer, got {n_copies!r}")
        self.n_copies, self.seed, self.fit_kw = int(n_copies), seed, dict(fit or {})

    def fit(self, observed: pd.DataFrame, targets) -> "FreeRunForecaster":
        ctx = observed[(observed["phase"] == "context") & observed["mouse"].isin(targets)].drop(columns="phase")
        self.context = prepare_trials(ctx)
        self.result = fit_free_running(self.context, seed=self.seed, **self.fit_kw)
        return self

    def predict(self, schedule: pd.DataFrame) -> dict:
        res, K = self.result, self.n_copies
        fixed = res.transform.fixed
        u = np.tile(res.u, (K, 1))  # column k * M + m: copy k of mouse m
        params = res.transform.params(torch.as_tensor(u, dtype=torch.float64))
        seeds = copy_seeds(sorted(res.params["mouse"]), K, self.seed + 1).reshape(-1)
        ahead = prepare_trials(placeholder_table(schedule))
        cols = [c for c in ahead.columns if c in self.context.columns]  # the task and the choices, no model output
        whole = prepare_trials(pd.concat([self.context[cols], ahead[cols]], ignore_index=True))
        wb = make_batch(whole, fixed.zero_reward, "cpu", torch.float64, prepared=True)
        sb = make_batch(ahead, fixed.zero_reward, "cpu", torch.float64, prepared=True)
        with torch.no_grad():
            _, p_free = free_run(wb.repeat(K), params, seeds, fixed.encoding, fixed.positive, fixed.zero_reward)
            tf = NetworkModel(self.context, free=res.transform.free, fixed=fixed)
            p_tf = tf.forecast_p_right(u, sb, self.seed + 1)
        return {"network_freerun": copies_mean_by_row(p_free, K, wb, whole, schedule),
                "network_freerun_tf": copies_mean_by_row(p_tf, K, sb, ahead, schedule)}


__all__ = ["FreeRunForecaster"]
