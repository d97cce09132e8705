"""Closed-form learning curves of one mode (mouse_rl/MODEL.md section 4), vectorised.

All functions broadcast over their arguments and accept NumPy arrays, Python
scalars or torch tensors (the result has the type of the inputs: torch if any
argument is a tensor). Time ``t`` and the time constant ``tau`` share one unit
(trials, or sessions if you pass ``tau`` in sessions).

Notation: mode strength ``s`` (input-output correlation), decay ``lam``
(input variance), asymptote ``A = s / lam``, initial value ``a0``, time
constant ``tau`` (for the network, ``tau = 1 / eta`` trials).

Which ODE each formula solves (checked by differentiation, and numerically in
``tests/test_theory.py``):

* :func:`shallow_trajectory` ``a(t) = A (1 - e^{-t/tau}) + a0 e^{-t/tau}``
  solves ``tau da/dt = s/lam - a`` (equivalently ``lam tau da/dt = s - lam a``).
  It coincides with the solution of ``tau da/dt = s - lam a`` only when
  ``lam = 1``; that ODE has rate ``lam / tau`` instead of ``1 / tau``.
* :func:`two_layer_trajectory` ``a(t) = A / (1 - (1 - A/a0) e^{-2 s t / tau})``
  solves ``tau da/dt = 2 a (s - lam a)`` exactly: the product ``a = w1 w2`` of
  a balanced (``w1 = w2``) two-layer scalar chain trained by gradient flow on
  ``(s - lam w1 w2)^2 / (2 lam)``-type losses. For ``0 < a0 < A`` it is a
  sigmoid with a plateau near ``a0`` lasting about
  ``(tau / 2s) ln(s / (lam a0))`` (:func:`escape_time`).
"""
from __future__ import annotations

import sys

import numpy as np

__all__ = [
    "shallow_trajectory",
    "two_layer_trajectory",
    "shallow_rhs",
    "two_layer_rhs",
    "escape_time",
    "shallow_time_to_fraction",
    "two_layer_time_to_fraction",
    "learning_time_gap",
]


def _xp(*args):
    torch = sys.modules.get("torch")
    if torch is not None and any(isinstance(a, torch.Tensor) for a in args):
        return torch
    return np


def _prep(xp, names, values):
    out = []
    for name, v in zip(names, values):
        if xp is np:
            v = np.asarray(v, dtype=float)
        else:
            v = xp.as_tensor(v) if not isinstance(v, xp.Tensor) else v
            v = v if v.is_floating_point() else v.double()
        out.append(v)
    return out


def _check_positive(xp, **kw):
    for name, v in kw.items():
        arr = v.detach().cpu().numpy() if xp is not np else v
        if np.any(~(np.asarray(arr) > 0)):
            raise ValueError(f"{name}: must be > 0, got {arr}")


def shallow_trajectory(t, s, lam=1.0, a0=0.0, tau=1.0):
    """Shallow (one-layer) mode ``a(t) = (s/lam)(1 - e^{-t/tau}) + a0 e^{-t/tau}``.

    Solves ``tau da/dt = s/lam - a`` with ``a(0) = a0`` (identical to
    ``tau da/dt = s - lam a`` only for ``lam = 1``).

    Parameters
    ----------
    t : array_like or torch.Tensor
        Time (same unit as ``tau``: trials or sessions).
    s, lam, a0, tau : array_like or torch.Tensor
        Mode strength, decay (> 0), initial value, time constant (> 0).

    Returns
    -------
    ndarray or torch.Tensor
        ``a(t)``, broadcast over all arguments.
    """
    xp = _xp(t, s, lam, a0, tau)
    t, s, lam, a0, tau = _prep(xp, "t s lam a0 tau".split(), (t, s, lam, a0, tau))
    _check_positive(xp, lam=lam, tau=tau)
    decay = xp.exp(-t / tau)
    return (s / lam) * (1 - decay) + a0 * decay


def two_layer_trajectory(t, s, lam=1.0, a0=1e-3, tau=1.0):
    """Balanced two-layer mode ``a(t) = (s/lam) / (1 - (1 - s/(lam a0)) e^{-2 s t/tau})``.

    Solves ``tau da/dt = 2 a (s - lam a)`` with ``a(0) = a0`` (> 0).

    Parameters
    ----------
    t : array_like or torch.Tensor
        Time (unit of ``tau``: trials or sessions).
    s, lam, a0, tau : array_like or torch.Tensor
        Mode strength, decay (> 0), initial value (> 0), time constant (> 0).

    Returns
    -------
    ndarray or torch.Tensor
        ``a(t)``; sigmoidal with a plateau when ``a0 << s/lam``.
    """
    xp = _xp(t, s, lam, a0, tau)
    t, s, lam, a0, tau = _prep(xp, "t s lam a0 tau".split(), (t, s, lam, a0, tau))
    _check_positive(xp, lam=lam, tau=tau, a0=a0)
    A = s / lam
    return A / (1 - (1 - A / a0) * xp.exp(-2 * s * t / tau))


def shallow_rhs(a, s, lam=1.0, tau=1.0):
    """``da/dt = (s/lam - a) / tau``, the ODE solved by :func:`shallow_trajectory` (per time unit)."""
    xp = _xp(a, s, lam, tau)
    a, s, lam, tau = _prep(xp, "a s lam tau".split(), (a, s, lam, tau))
    return (s / lam - a) / tau


def two_layer_rhs(a, s, lam=1.0, tau=1.0):
    """``da/dt = 2 a (s - lam a) / tau``, the ODE solved by :func:`two_layer_trajectory` (per time unit)."""
    xp = _xp(a, s, lam, tau)
    a, s, lam, tau = _prep(xp, "a s lam tau".split(), (a, s, lam, tau))
    return 2 * a * (s - lam * a) / tau


def escape_time(s, lam=1.0, a0=1e-3, tau=1.0, exact: bool = False):
    """Plateau (escape) time of the two-layer mode, in the unit of ``tau``.

    Approximation ``(tau / 2s) ln(s / (lam a0))`` (valid for ``a0 << s/lam``);
    with ``exact=True`` the time at which :func:`two_layer_trajectory` reaches
    half its asymptote, ``(tau / 2s) ln(s/(lam a0) - 1)``.
    """
    xp = _xp(s, lam, a0, tau)
    s, lam, a0, tau = _prep(xp, "s lam a0 tau".split(), (s, lam, a0, tau))
    _check_positive(xp, s=s, lam=lam, a0=a0, tau=tau)
    ratio = s / (lam * a0)
    return tau / (2 * s) * xp.log(ratio - 1 if exact else ratio)


def _check_fraction(xp, fraction):
    arr = fraction.detach().cpu().numpy() if xp is not np else fraction
    if np.any(~((np.asarray(arr) > 0) & (np.asarray(arr) < 1))):
        raise ValueError(f"fraction: must lie in (0, 1), got {arr}")


def shallow_time_to_fraction(fraction, s, lam=1.0, a0=0.0, tau=1.0):
    """Time at which :func:`shallow_trajectory` reaches ``fraction * s/lam`` (unit of ``tau``).

    ``tau ln((A - a0) / (A (1 - fraction)))``; 0 where ``a0`` is already past it.
    """
    xp = _xp(fraction, s, lam, a0, tau)
    f, s, lam, a0, tau = _prep(xp, "fraction s lam a0 tau".split(), (fraction, s, lam, a0, tau))
    _check_fraction(xp, f)
    _check_positive(xp, s=s, lam=lam, tau=tau)
    A = s / lam
    t = tau * xp.log((A - a0) / (A * (1 - f)))
    return xp.where(a0 >= f * A, xp.zeros_like(t), t)


def two_layer_time_to_fraction(fraction, s, lam=1.0, a0=1e-3, tau=1.0):
    """Time at which :func:`two_layer_trajectory` reaches ``fraction * s/lam`` (unit of ``tau``).

    ``(tau / 2s) ln(fraction (A/a0 - 1) / (1 - fraction))``; 0 where ``a0`` is already past it.
    """
    xp = _xp(fraction, s, lam, a0, tau)
    f, s, lam, a0, tau = _prep(xp, "fraction s lam a0 tau".split(), (fraction, s, lam, a0, tau))
    _check_fraction(xp, f)
    _check_positive(xp, s=s, lam=lam, a0=a0, tau=tau)
    A = s / lam
    t = tau / (2 * s) * xp.log(f * (A / a0 - 1) / (1 - f))
    return xp.where(a0 >= f * A, xp.zeros_like(t), t)


def learning_time_gap(s, lam=1.0, a0_deep=1e-3, a0_shallow=0.0, tau=1.0, fraction=0.5):
    """Deep-minus-shallow time to reach ``fraction`` of the asymptote (unit of ``tau``).

    ``two_layer_time_to_fraction(fraction, s, lam, a0_deep, tau)
    - shallow_time_to_fraction(fraction, s, lam, a0_shallow, tau)``.
    Dominated by the plateau ``(tau / 2s) ln(s / (lam a0_deep))`` for small
    ``a0_deep``: the gap grows like ``ln(1/a0)`` for a two-layer chain
    (``~ 1/(s a0^{D-2})`` for depth ``D > 2``, not computed here).
    """
    return (two_layer_time_to_fraction(fraction, s, lam, a0_deep, tau)
            - shallow_time_to_fraction(fraction, s, lam, a0_shallow, tau))
