"""Unconstrained <-> natural parameter maps for fitting the network.

Free parameters live in an unconstrained space ``u``: ``log`` for the
positive parameters (eta, beta, w0, s0, b_L, b_R, k), ``logit`` for the lapse
rate and the crosstalk (an option), the identity for the unbounded stim_skew (an option, not fitted by
default). ``u`` is clamped to a plausible box so that no restart can make the
unrolled network diverge (eta at most 0.2 per trial, beta at most 200 / Q unit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..params import PARAMS, ModelParams, NetParams, check_names
from .prior import GaussianPrior

#: Default free set, MODEL.md section 6's (any registry parameter may be freed): k is fixed at 1. Freeing it
#: (``mouse-rl fit --fit-k``) sets apart the bias values' start (b k) and their learning rate (eta a_b^2, a_b
#: starting at k); on simulated mice it is recovered in order (tests/test_fit_k.py).
DEFAULT_FREE = ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse")


def with_options(skew: bool = False, k: bool = False, base: tuple = DEFAULT_FREE, crosstalk: bool = False,
                 side_pref: bool = False) -> tuple:
    """``base`` plus the options beyond MODEL.md's fitted set that are asked for: ``stim_skew`` (``skew``), then
    ``k`` (``k``), then ``crosstalk``, then ``side_pref`` and ``side_pref_tau`` (``side_pref``); the order the CLI,
    the benches and the saved fits use."""
    return (*base, *(["stim_skew"] if skew else []), *(["k"] if k else []), *(["crosstalk"] if crosstalk else []),
            *(["side_pref", "side_pref_tau"] if side_pref else []))

#: Natural-space box used to clamp (lower, upper).
BOUNDS = {name: spec.fit_bounds for name, spec in PARAMS.items()}
#: Log-uniform (lapse: logit-uniform) ranges of the restarts (natural units); restart 0 uses the defaults.
INIT_RANGES = {name: spec.init_range for name, spec in PARAMS.items()}
START_RANGES = {name: spec.start_range or spec.init_range for name, spec in PARAMS.items()}
#: Start values of restart 0 (the paper's defaults; b's and lapse moved off the 0 boundary).
INIT_DEFAULT = {name: spec.fit_start for name, spec in PARAMS.items()}


def _to_u(name: str, value):
    v = torch.as_tensor(value)
    kind = PARAMS[name].transform
    return torch.logit(v) if kind == "logit" else v.clone() if kind == "identity" else torch.log(v)


def _from_u(name: str, u: torch.Tensor) -> torch.Tensor:
    lo, hi = BOUNDS[name]
    kind = PARAMS[name].transform
    if kind == "logit":
        return torch.sigmoid(u.clamp(math.log(lo / (1 - lo)), math.log(hi / (1 - hi))))
    if kind == "identity":
        return u.clamp(lo, hi)
    return torch.exp(u.clamp(math.log(lo), math.log(hi)))


@dataclass(frozen=True)
class ParamTransform:
    """Which NetParams are free and how they map from the unconstrained vector.

    Parameters
    ----------
    free : names of the free parameters (order = columns of ``u``).
    fixed : :class:`ModelParams` giving the value of every non-free parameter
        (default: the model defaults, i.e. k = 1; lapse = 0 if not free).
    """

    free: tuple = DEFAULT_FREE
    fixed: ModelParams = field(default_factory=ModelParams)

    def __post_init__(self):
        if self.free:  # an empty set is allowed here: every parameter fixed (e.g. scoring given values)
            check_names(self.free, "free")

    @property
    def n_free(self) -> int:
        return len(self.free)

    def params(self, u: torch.Tensor) -> NetParams:
        """Natural :class:`NetParams` ``(B,)`` tensors from ``u`` ``(B, n_free)`` (differentiable)."""
        base = self.fixed.tensors(u.shape[0], device=u.device, dtype=u.dtype)
        values = base._asdict()
        for j, name in enumerate(self.free):
            values[name] = _from_u(name, u[:, j])
        return NetParams(**values)

    def to_u(self, values: dict, n: int, device=None, dtype=torch.float64) -> torch.Tensor:
        """Unconstrained ``(n, n_free)`` tensor from natural values (scalars or length-n arrays)."""
        cols = []
        for name in self.free:
            lo, hi = BOUNDS[name]
            v = torch.as_tensor(np.array(values[name], dtype=float), dtype=dtype, device=device)
            cols.append(_to_u(name, v.clamp(lo, hi)).expand(n))
        return torch.stack(cols, dim=-1).clone()

    def jacobian_diag(self, u: torch.Tensor) -> torch.Tensor:
        """d theta / d u for each free parameter ``(B, n_free)`` (for the delta method)."""
        cols = []
        for j, name in enumerate(self.free):
            theta = _from_u(name, u[:, j])
            kind = PARAMS[name].transform
            cols.append(theta * (1 - theta) if kind == "logit" else torch.ones_like(theta) if kind == "identity"
                        else theta)
        return torch.stack(cols, dim=-1)

    # ---- numpy views used by the per-mouse Newton fit (mouse_rl.fit.objective) ----
    def bounds_u(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds ``(P,)`` of the free parameters in unconstrained units."""
        lo = [float(_to_u(n, torch.tensor(BOUNDS[n][0], dtype=torch.float64))) for n in self.free]
        hi = [float(_to_u(n, torch.tensor(BOUNDS[n][1], dtype=torch.float64))) for n in self.free]
        return np.array(lo), np.array(hi)

    def prior_u(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre and sd ``(P,)`` of the MAP prior in unconstrained units (see :data:`mouse_rl.params.PARAMS`)."""
        centre = self.to_u({n: PARAMS[n].prior_centre for n in self.free}, 1)[0].numpy()
        return centre, np.array([PARAMS[n].prior_sd for n in self.free])

    def registry_prior(self) -> GaussianPrior:
        """The weak MAP priors of :meth:`prior_u` as a :class:`~mouse_rl.fit.prior.GaussianPrior`."""
        return GaussianPrior.diagonal(self.free, *self.prior_u())

    def starts(self, n_restarts: int, seed: int = 0) -> np.ndarray:
        """Restart design ``(n_restarts, P)`` shared by every mouse (so a mouse's starts never depend on its batch).

        Row 0 is :data:`INIT_DEFAULT`; the others a scrambled Sobol design over
        :data:`START_RANGES` in unconstrained units (log / logit uniform)."""
        from scipy.stats import qmc

        first = self.to_u(INIT_DEFAULT, 1)[0].numpy()
        if n_restarts == 1:
            return first[None]
        lo = self.to_u({n: START_RANGES[n][0] for n in self.free}, 1)[0].numpy()
        hi = self.to_u({n: START_RANGES[n][1] for n in self.free}, 1)[0].numpy()
        m = int(np.ceil(np.log2(n_restarts - 1))) if n_restarts > 2 else 0
        z = qmc.Sobol(d=self.n_free, scramble=True, seed=seed).random_base2(m)[: n_restarts - 1]
        return np.vstack([first, lo + z * (hi - lo)])

    def natural(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All natural parameters ``(n, 12)`` (NetParams order) at ``u`` ``(n, P)``,
        with ``d theta / d u`` and ``d2 theta / d u2`` ``(n, P)`` of the free ones."""
        n = u.shape[0]
        base = self.fixed.tensors(n, dtype=torch.float64)
        theta = torch.stack(list(base), dim=-1).numpy().copy()
        d1 = np.empty_like(u)
        d2 = np.empty_like(u)
        order = list(NetParams._fields)
        for j, name in enumerate(self.free):
            if PARAMS[name].transform == "logit":
                t = 1.0 / (1.0 + np.exp(-u[:, j]))
                d1[:, j] = t * (1 - t)
                d2[:, j] = t * (1 - t) * (1 - 2 * t)
            elif PARAMS[name].transform == "identity":
                t = u[:, j].copy()
                d1[:, j], d2[:, j] = 1.0, 0.0
            else:
                t = np.exp(u[:, j])
                d1[:, j] = d2[:, j] = t
            theta[:, order.index(name)] = t
        return theta, d1, d2
