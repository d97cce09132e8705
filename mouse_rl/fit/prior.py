"""Gaussian priors over a model's unconstrained parameters.

One class serves the weak per-parameter priors of the parameter registry
(:data:`mouse_rl.params.PARAMS`, diagonal) and the population distribution
of a hierarchical fit (:func:`mouse_rl.fit.population.fit_population`, full
covariance). Units: the unconstrained coordinates of the model's transform
(log for positive parameters, logit for rates, identity for values).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianPrior:
    """``u ~ N(mean, cov)`` over the free parameters ``names`` (unconstrained units).

    Attributes
    ----------
    names : free-parameter names, the order of ``u``'s columns.
    mean : ``(P,)`` centre.
    cov : ``(P, P)`` covariance (symmetric positive definite).
    """

    names: tuple
    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self):
        P = len(self.names)
        mean = np.asarray(self.mean, dtype=float)
        cov = np.asarray(self.cov, dtype=float)
        if mean.shape != (P,) or cov.shape != (P, P):
            raise ValueError(f"prior: mean must be ({P},) and cov ({P}, {P}) for {self.names}, "
                             f"got {mean.shape} and {cov.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("prior: mean and cov must be finite")
        cov = 0.5 * (cov + cov.T)
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("prior: cov must be positive definite")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "_precision", np.linalg.inv(cov))

    @classmethod
    def diagonal(cls, names, mean, sd) -> "GaussianPrior":
        """Independent priors: ``u_j ~ N(mean_j, sd_j^2)``."""
        sd = np.broadcast_to(np.asarray(sd, dtype=float), (len(names),))
        return cls(tuple(names), np.asarray(mean, dtype=float), np.diag(sd**2))

    @property
    def precision(self) -> np.ndarray:
        """``(P, P)`` inverse covariance."""
        return self._precision

    @property
    def sd(self) -> np.ndarray:
        """``(P,)`` marginal standard deviations."""
        return np.sqrt(np.diag(self.cov))

    def penalty(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Negative log density (up to its constant) ``(n,)`` at ``u`` ``(n, P)``, with gradient and Hessian."""
        z = np.asarray(u, dtype=float) - self.mean
        Lz = z @ self._precision
        return 0.5 * (Lz * z).sum(-1), Lz, np.broadcast_to(self._precision, (len(z),) + self._precision.shape)

    def log_norm(self) -> float:
        """log of the density's normalising constant, ``-0.5 (P log 2 pi + log det cov)``."""
        _, logdet = np.linalg.slogdet(self.cov)
        return -0.5 * (len(self.names) * np.log(2 * np.pi) + logdet)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``(n, P)`` draws (numpy ``default_rng(seed)``)."""
        return np.random.default_rng(seed).multivariate_normal(self.mean, self.cov, size=int(n))

    def to_dict(self) -> dict:
        return {"names": list(self.names), "mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "GaussianPrior":
        try:
            return cls(tuple(d["names"]), np.asarray(d["mean"], float), np.asarray(d["cov"], float))
        except KeyError as err:
            raise ValueError(f"prior: missing field {err.args[0]!r}") from None
