"""Unconstrained <-> natural parameter maps for fitting the network.

Free parameters live in an unconstrained space ``u``: ``log`` for the
positive parameters (eta, beta, w0, s0, b_L, b_R, k), ``logit`` for the lapse
rate. ``u`` is clamped to a plausible box so that no restart can make the
unrolled network diverge (eta at most 0.2 per trial, beta at most 200 / Q unit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..params import ModelParams, NetParams

#: Parameters the network fit may free (NetParams field names).
FITTABLE = ("eta", "beta", "w0", "k", "s0", "b_L", "b_R", "lapse")
#: Default free set: k is fixed at 1 (only a_b * U[., b] is identifiable with it).
DEFAULT_FREE = ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse")
#: Natural-space box used to clamp (lower, upper).
BOUNDS = {
    "eta": (1e-6, 0.2),
    "beta": (1e-2, 200.0),
    "w0": (1e-6, 10.0),
    "k": (1e-3, 10.0),
    "s0": (1e-6, 10.0),
    "b_L": (1e-6, 10.0),
    "b_R": (1e-6, 10.0),
    "lapse": (1e-6, 0.5),
}
#: Log-uniform ranges for random restarts (natural units); restart 0 uses the defaults.
INIT_RANGES = {
    "eta": (5e-4, 2e-2),
    "beta": (2.0, 20.0),
    "w0": (0.01, 0.5),
    "k": (0.5, 2.0),
    "s0": (0.05, 0.5),
    "b_L": (0.01, 0.3),
    "b_R": (0.01, 0.3),
    "lapse": (0.005, 0.1),
}
#: Start values of restart 0 (the paper's defaults; b's and lapse moved off the 0 boundary).
INIT_DEFAULT = {"eta": 0.0026, "beta": 9.0, "w0": 0.05, "k": 1.0, "s0": 0.2, "b_L": 0.05, "b_R": 0.05,
                "lapse": 0.02}


def _to_u(name: str, value):
    v = torch.as_tensor(value)
    return torch.logit(v) if name == "lapse" else torch.log(v)


def _from_u(name: str, u: torch.Tensor) -> torch.Tensor:
    lo, hi = BOUNDS[name]
    if name == "lapse":
        return torch.sigmoid(u.clamp(math.log(lo / (1 - lo)), math.log(hi / (1 - hi))))
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
        bad = [n for n in self.free if n not in FITTABLE]
        if bad:
            raise ValueError(f"free: unknown parameter(s) {bad}; choose from {FITTABLE}")
        if len(set(self.free)) != len(self.free):
            raise ValueError(f"free: duplicate names in {self.free}")

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
            v = torch.as_tensor(np.asarray(values[name], dtype=float), dtype=dtype, device=device)
            cols.append(_to_u(name, v.clamp(lo, hi)).expand(n))
        return torch.stack(cols, dim=-1).clone()

    def init_u(self, n: int, n_restarts: int, seed: int = 0, device=None, dtype=torch.float64) -> torch.Tensor:
        """Start points ``(n_restarts * n, n_free)``: restart 0 = defaults, others log-uniform in INIT_RANGES."""
        gen = np.random.default_rng(seed)
        blocks = [self.to_u(INIT_DEFAULT, n, device, dtype)]
        for _ in range(1, n_restarts):
            vals = {}
            for name in self.free:
                lo, hi = INIT_RANGES[name]
                vals[name] = np.exp(gen.uniform(np.log(lo), np.log(hi), size=n))
            blocks.append(self.to_u(vals, n, device, dtype))
        return torch.cat(blocks, dim=0)

    def jacobian_diag(self, u: torch.Tensor) -> torch.Tensor:
        """d theta / d u for each free parameter ``(B, n_free)`` (for the delta method)."""
        cols = []
        for j, name in enumerate(self.free):
            theta = _from_u(name, u[:, j])
            cols.append(theta * (1 - theta) if name == "lapse" else theta)
        return torch.stack(cols, dim=-1)
