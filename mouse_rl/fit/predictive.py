"""Laplace posterior-predictive scoring of fitted choice models.

A fit gives a point estimate ``u`` (unconstrained parameters) per mouse. The
plug-in score uses ``P(choice_t | u)``. Where the training choices leave a
direction of ``u`` unconstrained (typical for a deep network fitted on early
sessions only: any weight take-off after the last training trial fits them
equally well), the plug-in prediction is an arbitrary point of that flat
direction and can be confidently wrong. The posterior predictive averages
over it instead:

    P(choice_t) ~= (1/K) sum_k P(choice_t | u_k),   u_k ~ N(u, Sigma),

with the Laplace covariance ``Sigma = (H + I / prior_sd^2)^-1``: ``H`` is the
Hessian of the training negative log-likelihood at ``u`` (eigenvalues clipped
at 0, so a saddle or a bound adds no curvature) and ``prior_sd`` the weak
Gaussian prior of ``map_prior`` (:data:`mouse_rl.fit.fitting.PRIOR_SD`,
unconstrained units). Sample 0 is ``u`` itself, so the plug-in score comes
from the same run. The score is pointwise (the log of each held-out trial's
averaged probability, summed), as in the log pointwise predictive density.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .likelihood import masked_sum
from .population import posterior_precisions
from .prior import GaussianPrior

PREDICTIVES = ("plugin", "laplace")


def check_predictive(predictive: str) -> str:
    if predictive not in PREDICTIVES:
        raise ValueError(f"predictive: must be one of {PREDICTIVES}, got {predictive!r}")
    return predictive


def laplace_covariance(hessian, prior_sd) -> torch.Tensor:
    """Posterior covariances ``(M, P, P)`` from per-mouse Hessians ``(M, P, P)`` of the negative log-likelihood.

    ``prior_sd``: the Gaussian prior's sd in unconstrained units, a scalar or one per parameter ``(P,)``.
    Non-finite Hessians are replaced by 0 (prior only); negative eigenvalues are clipped at 0 (the precision
    of :func:`mouse_rl.fit.population.posterior_precisions`, inverted). Returned in ``hessian``'s dtype and
    device.
    """
    hessian = torch.as_tensor(hessian)
    P = hessian.shape[-1]
    sd = np.broadcast_to(np.asarray(torch.as_tensor(prior_sd).cpu(), dtype=float), (P,))
    if not np.all(sd > 0):
        raise ValueError(f"prior_sd: must be > 0, got {prior_sd!r}")
    prior = GaussianPrior(tuple(range(P)), np.zeros(P), np.diag(sd ** 2))
    precision = posterior_precisions(hessian.detach().cpu().double().numpy(), prior)
    return torch.linalg.inv(torch.as_tensor(precision, dtype=hessian.dtype, device=hessian.device))


def laplace_samples(u: torch.Tensor, cov: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
    """``(K, M, P)`` draws from ``N(u[m], cov[m])``; draw 0 is ``u`` itself."""
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples: must be a positive integer, got {n_samples!r}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn(n_samples, *u.shape, generator=gen, dtype=u.dtype).to(u.device)
    L = torch.linalg.cholesky(cov)
    draws = u + torch.einsum("mij,kmj->kmi", L, z)
    draws[0] = u
    return draws


def predictive_trial_logp(logp_fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, cov: torch.Tensor,
                          n_samples: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-trial log P(choice) ``(T, M)`` in nats: Laplace posterior predictive and plug-in.

    Parameters
    ----------
    logp_fn : maps ``(K * M, P)`` parameters (column ``k * M + m`` = draw k of
        mouse m) to per-trial ``log P(choice)`` ``(T, K * M)``.
    u, cov : point estimates ``(M, P)`` and covariances ``(M, P, P)``.
    n_samples : K posterior draws (draw 0 = ``u``).
    """
    K, (M, P) = n_samples, u.shape
    draws = laplace_samples(u, cov, K, seed).reshape(K * M, P)
    with torch.no_grad():
        lp = logp_fn(draws)
    lp = lp.reshape(lp.shape[0], K, M)
    return torch.logsumexp(lp, dim=1) - math.log(K), lp[:, 0]


def predictive_loglik(logp_fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, cov: torch.Tensor,
                      mask: torch.Tensor, n_samples: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mouse log-likelihoods (nats) of the trials in ``mask`` ``(T, M)``: (predictive, plug-in), ``(M,)`` each.

    See :func:`predictive_trial_logp` for the arguments.
    """
    pointwise, plugin = predictive_trial_logp(logp_fn, u, cov, n_samples, seed)
    return masked_sum(pointwise, mask), masked_sum(plugin, mask)
