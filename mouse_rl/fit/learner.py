"""One base for the batched sequential learners fitted to mice (network, shallow network, Q-learning).

A :class:`BatchedLearner` holds a prepared trial table and its padded
:class:`~mouse_rl.fit.batch.TrialBatch` (one column per mouse). A subclass
says only what differs between models:

* ``free`` - names of the unconstrained parameters (columns of ``u``);
* ``registry_prior()`` - its weak Gaussian prior (:class:`~mouse_rl.fit.prior.GaussianPrior`);
* ``map_fit(train_mask, prior, init)`` - per-mouse MAP (or ML) fit -> :class:`~mouse_rl.fit.population.MapFit`;
* ``trial_logp(u)`` - per-trial log P(observed choice) ``(T, n)`` of ``n`` parameter columns
  (column ``k * M + m`` runs on mouse ``m``), learning from every trial;
* ``natural(u)`` - natural-unit values and ``d theta / d u`` of the free parameters.

The base supplies the cross-validation protocol (:class:`mouse_rl.fit.cv.CVModel`:
``fit(train_mask)``, ``score(mask)``), plug-in or Laplace-predictive
scoring, and the interface of :func:`mouse_rl.fit.population.fit_population`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .likelihood import masked_sum
from .population import MapFit, posterior_covariances
from .predictive import check_predictive, predictive_trial_logp
from .prior import GaussianPrior


class BatchedLearner:
    """Shared fit / score logic; see the module docstring for what a subclass defines."""

    name: str
    free: tuple
    trials: pd.DataFrame

    def __init__(self, predictive: str = "plugin", n_samples: int = 64, draw_seed: int = 0):
        self.predictive, self.n_samples, self.draw_seed = check_predictive(predictive), n_samples, draw_seed
        self.u = self.cov = self.prior = self._trial_logp = None
        self.map: MapFit | None = None

    # ---- subclass interface -------------------------------------------------------------------
    def registry_prior(self) -> GaussianPrior:
        raise NotImplementedError

    def map_fit(self, train_mask, prior: GaussianPrior | None = None, init: np.ndarray | None = None) -> MapFit:
        raise NotImplementedError

    def trial_logp(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def natural(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # ---- shared ---------------------------------------------------------------------------------
    def fit(self, train_mask, prior: GaussianPrior | None = None) -> "BatchedLearner":
        """Fit every mouse on the choices of ``train_mask`` rows (under ``prior``, default the model's own)."""
        self.map = self.map_fit(np.asarray(train_mask, dtype=bool), prior)
        self.prior = prior if prior is not None else self.registry_prior()
        self.u = torch.as_tensor(self.map.u)
        self.cov = torch.as_tensor(posterior_covariances(self.map, self.prior))
        self._trial_logp = None
        return self

    def score(self, mask) -> pd.DataFrame:
        """Held-out log-likelihoods per mouse (plug-in, or Laplace predictive with a ``loglik_plugin`` column)."""
        from .cv import score_frame

        if self.u is None:
            raise RuntimeError("call fit() first")
        m = self.batch.mask_from_rows(np.asarray(mask, dtype=bool)).cpu()
        n = m.sum(0).numpy()
        if self._trial_logp is None:  # the learner sees every trial: one run serves every mask
            def logp(u):
                return torch.as_tensor(self.trial_logp(u.cpu().numpy()))

            self._trial_logp = (logp(self.u),) if self.predictive == "plugin" else tuple(
                t.cpu() for t in predictive_trial_logp(logp, self.u, self.cov, self.n_samples, self.draw_seed))
        if self.predictive == "plugin":
            return score_frame(self.batch.mice, masked_sum(self._trial_logp[0], m).numpy(), n)
        ll, plug = (masked_sum(lp, m) for lp in self._trial_logp)
        return score_frame(self.batch.mice, ll.numpy(), n, plugin=plug.numpy())

    def fitted_params(self) -> pd.DataFrame:
        """Fitted free parameters per mouse, natural units."""
        theta, _ = self.natural(self.u.cpu().numpy())
        return pd.DataFrame({"mouse": self.batch.mice, **{k: theta[:, j] for j, k in enumerate(self.free)}})
