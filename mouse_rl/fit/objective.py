"""The network's fitting objective in unconstrained units, with exact gradient and Hessian.

Wraps the fused kernel (:func:`mouse_rl.fit.kernel.nll_derivatives`, tested
against :func:`mouse_rl.network.trial_update`) for a :class:`TrialBatch`:
columns of ``u`` are (restart, mouse) pairs that share the mouse's data row,
the chain rule maps the natural-parameter derivatives to the free
parameters' unconstrained coordinates, and the MAP prior (if any) is added.
"""
from __future__ import annotations

import numpy as np
import torch

from ..network import encode
from .batch import TrialBatch
from .kernel import THETA, nll_derivatives
from .prior import GaussianPrior
from .transforms import ParamTransform


class KernelObjective:
    """Negative log-likelihood (+ prior) of the network per column, with gradient and Hessian in ``u``.

    Parameters
    ----------
    batch : the mice (one data row each).
    transform : free parameters and fixed model options.
    score, learn : ``(T, B)`` bool masks of trials whose choices count / the learner learns from
        (default: all valid trials).
    map_prior : add the weak Gaussian prior of :meth:`ParamTransform.prior_u` (registry priors).
    prior : a :class:`~mouse_rl.fit.prior.GaussianPrior` to add instead (e.g. a population
        distribution); overrides ``map_prior``.
    """

    def __init__(self, batch: TrialBatch, transform: ParamTransform, score: torch.Tensor | None = None,
                 learn: torch.Tensor | None = None, map_prior: bool = False, prior: GaussianPrior | None = None):
        valid = batch.valid
        score = valid if score is None else score & valid
        learn = valid if learn is None else learn & valid
        fixed = transform.fixed
        T = batch.shape[0]
        self.n_mice = batch.shape[1]
        self.transform = transform
        self.positive = fixed.positive
        self.use_lapse = "lapse" in transform.free or bool(np.any(np.asarray(fixed.lapse) != 0))
        host = lambda t: t.detach().cpu().numpy().T.copy()  # noqa: E731  (B, T) contiguous
        self.x = encode(batch.contrast.detach().cpu().double(), fixed.encoding).permute(1, 0, 2).contiguous().numpy()
        self.choice, self.reward = host(batch.choice), host(batch.reward).astype(float)
        self.learn, self.score = host(learn), host(score)
        # a column ends at its last scored trial (later trials cannot change the likelihood)
        s = self.score
        self.n_trials = np.where(s.any(1), T - np.argmax(s[:, ::-1], axis=1), 0).astype(np.int64)
        self.free_idx = np.array([THETA.index(n) for n in transform.free])
        if {"k", "stim_skew", "crosstalk"} <= set(transform.free):
            raise ValueError(f"free: fit at most two of k, stim_skew and crosstalk at once, got {transform.free}")
        #: the kernel propagates stim_skew derivatives only when it is fitted (a seventh dual coordinate)
        self.skew_derivatives = "stim_skew" in transform.free
        #: and k's only when k is fitted (the default fit fixes it: five dual coordinates instead of six)
        self.k_derivatives = "k" in transform.free
        #: and the crosstalk's only when it is fitted (the kernel applies its value to the inputs either way)
        self.crosstalk_derivatives = "crosstalk" in transform.free
        #: and the side preference's when rho or tau is fitted (policy terms only: no dual coordinates)
        self.side_pref_derivatives = bool({"side_pref", "side_pref_tau"} & set(transform.free))
        if prior is not None and tuple(prior.names) != tuple(transform.free):
            raise ValueError(f"prior: parameters {prior.names} differ from the free parameters {transform.free}")
        registry = transform.registry_prior()
        self.prior = prior if prior is not None else (registry if map_prior else None)
        self.map_prior = self.prior is not None
        #: scale of each coordinate (prior sd) for perturbations such as basin hopping
        self.sd = (self.prior or registry).sd
        self.work = 0  # column-trials run through the kernel so far (a load-independent cost measure)

    def loglik_derivatives(self, u: np.ndarray, rows: np.ndarray, order: int | str = 2):
        """Negative log-likelihood ``(n,)`` and its gradient / Hessian in ``u`` (no prior); ``order="gn"``: the
        gradient and the Gauss-Newton Hessian (first-order duals only, see :func:`nll_derivatives`)."""
        theta, d1, d2 = self.transform.natural(u)
        self.work += int(self.n_trials[rows].sum())
        gn = order == "gn"
        f, g, H = nll_derivatives(self.x, self.choice, self.reward, self.learn, self.score, self.n_trials, theta,
                                  self.positive, self.use_lapse, 1 if gn else order, rows,
                                  skew_derivatives=self.skew_derivatives, gauss_newton=gn,
                                  k_derivatives=self.k_derivatives,
                                  crosstalk_derivatives=self.crosstalk_derivatives,
                                  side_pref_derivatives=self.side_pref_derivatives)
        k = self.free_idx
        g_t = g[:, k]
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging start gives inf: the optimiser rejects it
            gu = g_t * d1
            Hu = H[:, k][:, :, k] * d1[:, :, None] * d1[:, None, :]
            Hu[:, np.arange(len(k)), np.arange(len(k))] += g_t * d2
        return f, gu, Hu

    def __call__(self, u: np.ndarray, cols: np.ndarray, order: int = 2):
        """Objective for columns ``cols`` (column c runs on mouse ``c % n_mice``) at points ``u`` ``(n, P)``;
        ``order`` < 2 leaves the Hessian (and 0 the gradient) of the likelihood out (zeros); ``"gn"`` gives
        the Gauss-Newton Hessian of the likelihood."""
        return self.add_prior(u, *self.loglik_derivatives(u, np.asarray(cols) % self.n_mice, order))

    def add_prior(self, u: np.ndarray, f: np.ndarray, g: np.ndarray, H: np.ndarray):
        """The objective from the likelihood terms at ``u``: adds the prior's value, gradient, Hessian (MAP only)."""
        if self.prior is None:
            return f, g, H
        fp, gp, Hp = self.prior.penalty(u)
        return f + fp, g + gp, H + Hp

    def choice_information(self, u: np.ndarray, cols: np.ndarray, step: float = 1e-5) -> np.ndarray:
        """Expected (Fisher) information ``(n, P, P)`` in ``u`` of the scored choices, columns ``cols``.

        ``I(u) = sum_t dp_t dp_t^T / (p_t (1 - p_t))`` with ``p_t`` = P(Right) on trial t (the network learning
        from the mouse's own choices and rewards, lapse included) and ``dp_t`` its gradient in ``u`` by
        central differences of :meth:`trial_logp` (``step`` in unconstrained units). Unlike the observed
        Hessian it is positive semi-definite at any ``u``, an optimum of this likelihood or not. No prior.
        """
        u = np.asarray(u, float)
        n, P = u.shape
        cols = np.asarray(cols) % self.n_mice
        shifts = np.concatenate([np.zeros((1, P)), step * np.eye(P), -step * np.eye(P)])  # (2P + 1, P)
        pts = (u[None] + shifts[:, None]).reshape(-1, P)
        lp = self.trial_logp(pts, np.tile(cols, 2 * P + 1)).T.reshape(2 * P + 1, n, -1)   # (2P+1, n, T)
        p = np.where(self.choice[cols][None] == 1, np.exp(lp), 1.0 - np.exp(lp))
        dp = (p[1:P + 1] - p[P + 1:]) / (2 * step)                                            # (P, n, T)
        w = self.score[cols] / np.clip(p[0] * (1 - p[0]), 1e-12, None)                         # (n, T)
        return np.einsum("int,nt,jnt->nij", dp, w, dp)

    def trial_logp(self, u: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """log P(observed choice) of every scored trial, ``(T, n)`` in nats (0 elsewhere), columns ``cols``."""
        theta, _, _ = self.transform.natural(u)
        *_, lp = nll_derivatives(self.x, self.choice, self.reward, self.learn, self.score, self.n_trials, theta,
                                 self.positive, self.use_lapse, 0, np.asarray(cols) % self.n_mice, trial_logp=True)
        return lp.T
