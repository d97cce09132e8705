"""Hierarchical (population) fit: a Gaussian population over each mouse's unconstrained parameters.

Model: every mouse's free parameters ``u_m`` (unconstrained units of its
model's transform) are drawn from one population ``N(mu, Sigma)``; its choices
follow the learner (network, shallow network or Q-learning) at ``u_m``.
``mu`` and ``Sigma`` are fitted by empirical Bayes with a Laplace E-step
(EM for a Gaussian random-effects model):

* E-step: each mouse's MAP ``u_m`` under the current population
  (per-mouse Newton / L-BFGS, warm-started from its previous optimum and the
  population mean) and its Laplace posterior covariance
  ``C_m = (H_m + Sigma^-1)^-1`` (``H_m`` the likelihood Hessian, eigenvalues
  clipped at 0).
* M-step: ``mu = mean_m u_m``,
  ``Sigma = (sum_m [(u_m - mu)(u_m - mu)^T + C_m] + kappa Sigma_0) / (M + kappa)``:
  the moment update (``kappa = 0``, the default: plain EM; ``Sigma`` stays
  positive definite because every ``C_m`` is), optionally shrunk by ``kappa``
  pseudo-mice towards the registry's weak prior covariance ``Sigma_0``.

The Laplace approximation to the log marginal likelihood (nats) is reported
at every iteration; the fit stops when it changes by less than ``tol`` nats.
The first E-step uses the weak registry priors (the ordinary per-mouse fit),
with the usual restarts; later E-steps only refine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .prior import GaussianPrior


@dataclass
class MapFit:
    """Per-mouse MAP under a prior: ``u`` ``(M, P)``, ``nll`` ``(M,)`` (likelihood only, nats),
    ``hessian`` ``(M, P, P)`` of the negative log-likelihood in ``u``."""

    u: np.ndarray
    nll: np.ndarray
    hessian: np.ndarray


@dataclass
class PopulationFit:
    """Result of :func:`fit_population`.

    Attributes
    ----------
    model : the learner that was fitted (its ``name``, ``free`` and ``natural``).
    prior : the fitted population ``N(mu, Sigma)`` (a :class:`GaussianPrior`, unconstrained units).
    mice : mouse names (rows of ``u``).
    u : ``(M, P)`` each mouse's MAP under the population.
    posterior_cov : ``(M, P, P)`` Laplace posterior covariances of ``u``.
    nll : ``(M,)`` negative log-likelihood of each mouse's fitted choices at ``u`` (nats).
    history : one row per EM iteration: ``log_evidence`` (Laplace, nats) and the population mean and sd.
    converged : the evidence changed by less than ``tol`` before ``n_iter`` ran out.
    """

    model: object
    prior: GaussianPrior
    mice: list
    u: np.ndarray
    posterior_cov: np.ndarray
    nll: np.ndarray
    history: pd.DataFrame
    converged: bool
    options: dict = field(default_factory=dict)

    @property
    def params(self) -> pd.DataFrame:
        """Per mouse: MAP parameters in natural units, their posterior sds (``se_<name>``, delta method) and ``loglik``."""
        theta, d1 = self.model.natural(self.u)
        out = pd.DataFrame({"mouse": self.mice})
        for j, name in enumerate(self.prior.names):
            out[name] = theta[:, j]
            out[f"se_{name}"] = np.abs(d1[:, j]) * np.sqrt(self.posterior_cov[:, j, j])
        out["loglik"] = -self.nll
        return out

    def population(self) -> pd.DataFrame:
        """Per parameter: population mean and sd (unconstrained units) and the natural-unit median and 95% range."""
        mu, sd = self.prior.mean, self.prior.sd
        lo, _ = self.model.natural(np.vstack([mu - 1.96 * sd, mu, mu + 1.96 * sd]))
        return pd.DataFrame({"parameter": self.prior.names, "mean_u": mu, "sd_u": sd,
                             "median": lo[1], "q2.5": lo[0], "q97.5": lo[2]})


def laplace_log_evidence(fit: MapFit, prior: GaussianPrior) -> np.ndarray:
    """Laplace approximation of each mouse's log marginal likelihood ``(M,)`` (nats) under ``prior``."""
    pen, _, _ = prior.penalty(fit.u)
    P = fit.u.shape[1]
    _, logdet = np.linalg.slogdet(posterior_precisions(fit.hessian, prior))
    return -fit.nll - pen + prior.log_norm() + 0.5 * P * math.log(2 * math.pi) - 0.5 * logdet


def posterior_precisions(hessians: np.ndarray, prior: GaussianPrior) -> np.ndarray:
    """Laplace posterior precisions ``(M, P, P)``: each likelihood Hessian symmetrised with its negative
    eigenvalues clipped at 0 (0 if not finite: no information from the data), plus the prior precision."""
    out = np.empty_like(np.asarray(hessians, dtype=float))
    for m, h in enumerate(hessians):
        h = 0.5 * (h + h.T) if np.all(np.isfinite(h)) else np.zeros_like(h)
        e, V = np.linalg.eigh(h)
        out[m] = (V * np.clip(e, 0, None)) @ V.T + prior.precision
    return out


def posterior_covariances(fit: MapFit, prior: GaussianPrior) -> np.ndarray:
    """Laplace posterior covariances ``(M, P, P)``: ``(H_m^+ + Sigma^-1)^-1``."""
    return np.linalg.inv(posterior_precisions(fit.hessian, prior))


def m_step(fit: MapFit, cov_post: np.ndarray, base: GaussianPrior, kappa: float) -> GaussianPrior:
    """Population mean and (shrunk) covariance from the E-step (see the module docstring)."""
    M = len(fit.u)
    mu = fit.u.mean(0)
    dev = fit.u - mu
    scatter = dev.T @ dev + cov_post.sum(0)
    return GaussianPrior(base.names, mu, (scatter + kappa * base.cov) / (M + kappa))


def fit_population(model, train_mask=None, n_iter: int = 10, tol: float = 0.5, kappa: float = 0.0,
                   progress: bool = False) -> PopulationFit:
    """Empirical-Bayes population fit of one learner to every mouse of its table.

    Parameters
    ----------
    model : a learner with the population interface — :class:`mouse_rl.fit.cv.NetworkModel`
        (the network; ``NetworkModel.shallow`` for the shallow control) or
        :class:`mouse_rl.baselines.QLearningModel` (tabular or not): ``free``,
        ``registry_prior()``, ``map_fit(train_mask, prior, init)`` and ``natural(u)``.
    train_mask : bool array over the model's prepared table: trials whose choices are
        fitted (default: all).
    n_iter : at most this many EM iterations after the first (registry-prior) E-step.
    tol : stop when the Laplace log evidence of the cohort changes by less than this (nats).
    kappa : pseudo-mice of shrinkage towards the registry prior covariance (>= 0).
    progress : progress bar over EM iterations.

    Returns
    -------
    PopulationFit
    """
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa: must be finite and >= 0, got {kappa!r}")
    if int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter: must be a non-negative integer, got {n_iter!r}")
    if train_mask is None:
        train_mask = np.ones(len(model.trials), dtype=bool)
    base = model.registry_prior()
    prior = base
    fit = model.map_fit(train_mask, prior)
    history = []
    evidence = laplace_log_evidence(fit, prior).sum()
    converged = False
    bar = tqdm(range(int(n_iter)), desc=f"population {model.name}", unit="EM", disable=not progress, leave=False)
    for it in bar:
        history.append(_history_row(it, evidence, prior))
        new_prior = m_step(fit, posterior_covariances(fit, prior), base, kappa)
        starts = np.stack([fit.u, np.broadcast_to(new_prior.mean, fit.u.shape)])
        fit, prior = model.map_fit(train_mask, new_prior, init=starts), new_prior
        new_evidence = laplace_log_evidence(fit, prior).sum()
        change, evidence = new_evidence - evidence, new_evidence
        if abs(change) < tol:
            converged = True
            break
    history.append(_history_row(len(history), evidence, prior))
    bar.close()
    return PopulationFit(model, prior, list(model.batch.mice), fit.u, posterior_covariances(fit, prior), fit.nll,
                         pd.DataFrame(history), converged,
                         dict(n_iter=n_iter, tol=tol, kappa=kappa, model=model.name))


def _history_row(it: int, evidence: float, prior: GaussianPrior) -> dict:
    row = {"iteration": it, "log_evidence": float(evidence)}
    row.update({f"mean_{n}": float(v) for n, v in zip(prior.names, prior.mean)})
    row.update({f"sd_{n}": float(v) for n, v in zip(prior.names, prior.sd)})
    return row
