"""Fixed points of the mean-field dynamics and their stability.

The mean-field ODE is the expected weight change per trial,
``F(w) = E[trial_update(w)] - w`` (:meth:`MeanFieldMap.flow`, no boundary).
A *strategy* fixes which pathways are silent: a silent pathway ``j`` has
``a_j = 0``, which freezes its striatal weights ``U[:, j]`` (their update is
proportional to ``h_j = a_j x_j``) and removes it from the policy. The
*reduced system* is ``F = 0`` on the coordinates of the active pathways only;
the silent ``a_j`` sit on the reflecting boundary ``a_j = 0``, where their
drift ``F_{a_j}`` (the *boundary drive*, mouse_rl/MODEL.md ``G_s`` up to ``eta p_s``)
need not vanish: a negative drive pins ``a_j`` at the wall, a positive drive
pushes it into the interior (an escape direction).

Each active pathway has a one-parameter family of equivalent roots
(``a_j -> c a_j``, ``U[:, j] -> U[:, j] / c`` leaves every action value, hence
``F = 0``, unchanged); roots are reported in the *balanced* representative
``a_j = ||U[:, j]||``, which also gives one zero eigenvalue per active pathway.

Stability, in units of 1/trial (eigenvalues of the Jacobian of ``F``, by
:func:`torch.autograd.functional.jacobian`):

* ``eig_sub``: the reduced system (active coordinates only);
* ``eig_full``: all 9 coordinates, evaluated at the point on the boundary.

A fixed point is a *saddle* (``unstable``) if ``eig_full`` has an eigenvalue
with real part ``> tol`` or a silent pathway has a positive boundary drive.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import optimize

from envs.task import TaskConfig

from ..network import Weights, init_weights
from ..params import ModelParams
from .mean_field import N_WEIGHTS, MeanFieldMap, as_weights, flat_weights, pathway_coords, weights_from_flat

__all__ = ["FixedPoint", "find_fixed_points", "fixed_points_frame", "PATHWAYS", "flow_jacobian"]

#: Pathway names, index j of a[j] and of the column U[:, j].
PATHWAYS = ("L", "R", "b")


@dataclass
class FixedPoint:
    """One fixed point of the mean-field ODE (single parameter set).

    silent : silent pathways (``"L"``, ``"R"``, ``"b"``), ``a_j = 0``.
    a, U : balanced weights ``(3,)``, ``(2, 3)``.
    strategy, strategy_name : :func:`mouse_rl.strategy.strategy_of` of the point.
    residual : max |F| over the active coordinates, per trial.
    tol : threshold on eigenvalue real parts and boundary drives (1/trial).
    boundary_drive : ``F_{a_j}`` (per trial) of each silent pathway.
    eig_full, eig_sub : Jacobian eigenvalues (1/trial), full and reduced system.
    unstable_vectors : ``(k, 9)`` real unstable directions of the full system
        (eigenvectors with Re > tol, real and imaginary parts), flat (a, U).
    p_right : P(R | class) at the point.
    q_tot : action values ``Q^tot`` per class and action ``(C, 2)`` at the point.
    """

    silent: tuple
    a: np.ndarray
    U: np.ndarray
    strategy: int
    strategy_name: str
    residual: float
    boundary_drive: dict
    eig_full: np.ndarray
    eig_sub: np.ndarray
    unstable_vectors: np.ndarray
    p_right: np.ndarray
    q_tot: np.ndarray
    tol: float = 1e-9

    @property
    def unstable(self) -> bool:
        """Saddle/repeller: an eigenvalue with positive real part or a positive boundary drive."""
        return bool(np.max(self.eig_full.real, initial=-np.inf) > self.tol
                    or any(v > self.tol for v in self.boundary_drive.values()))

    @property
    def unstable_sub(self) -> bool:
        return bool(np.max(self.eig_sub.real, initial=-np.inf) > self.tol)

    @property
    def weights(self) -> Weights:
        return Weights(torch.as_tensor(self.a), torch.as_tensor(self.U))

    def label(self) -> str:
        silent = ",".join(self.silent) or "none"
        return f"{self.strategy_name} (silent: {silent})"


def flow_jacobian(mf: MeanFieldMap, w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """Flow ``F`` (9,) and its Jacobian (9, 9) at the single point ``w`` (a (3,), U (2, 3)), float64."""
    v0 = flat_weights(Weights(torch.as_tensor(w.a, dtype=torch.float64), torch.as_tensor(w.U, dtype=torch.float64)))

    def F(v):
        return flat_weights(mf.flow(weights_from_flat(v[None])))[0]

    J = torch.autograd.functional.jacobian(F, v0)
    with torch.no_grad():
        f = F(v0)
    return f.numpy(), J.numpy()


def _balance(v: np.ndarray, active: list[int]) -> np.ndarray:
    """The balanced representative ``a_j = ||U[:, j]||`` of each active pathway of the flat weights ``v``."""
    v = v.copy()
    for j in active:
        gain, *column = pathway_coords(j)
        norm_u = np.linalg.norm(v[column])
        if v[gain] > 0 and norm_u > 0:
            c = np.sqrt(norm_u / v[gain])
            v[gain] *= c
            v[column] /= c
    return v


def find_fixed_points(
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    frozen: Weights | None = None,
    n_starts: int = 24,
    seed: int = 0,
    tol: float = 1e-6,
    min_gain: float = 1e-4,
    include_bias_silent: bool = True,
    maxiter: int = 600,
) -> list[FixedPoint]:
    """Enumerate fixed points of the mean-field ODE by root finding on each reduced system.

    Parameters
    ----------
    params : ModelParams
        Scalar hyperparameters (one parameter set).
    task : TaskConfig
    frozen : Weights, optional
        Weights whose ``U[:, j]`` are used for silent pathways (and as the
        centre of the random starts). Default: :func:`init_weights` without jitter.
    n_starts : int
        Random starts per silent set (``scipy.optimize.root``, Levenberg-Marquardt).
    seed : int
        Seed of the random starts.
    tol : float
        Accept a root if its max ``|F| / eta`` over the active coordinates is
        below ``tol`` (dimensionless; near experts the wrong-action weights
        relax at a rate ~ pi_wrong, so roots are polished only to ~1e-6).
        ``tol * eta`` is also the threshold on eigenvalue real parts (1/trial).
    min_gain : float
        Active gains must exceed this (smaller ones belong to another silent set).
    include_bias_silent : bool
        Also enumerate silent sets in which the bias pathway is silent.
    maxiter : int
        Iteration limit of each root search.

    Notes
    -----
    Duplicates are removed in function space (same silent set, strategy and
    P(R | class) to 1e-3), keeping the smallest residual.

    Returns
    -------
    list of FixedPoint
        Deduplicated, ordered by strategy code then number of silent pathways.
    """
    from ..strategy import STRATEGY_NAMES, strategy_of

    params = params or ModelParams()
    task = task or TaskConfig()
    if params.n_mice_hint() not in (None, 1):
        raise ValueError("params: find_fixed_points takes one parameter set (scalar hyperparameters)")
    if int(n_starts) < 1:
        raise ValueError(f"n_starts: must be >= 1, got {n_starts!r}")
    mf = MeanFieldMap(params, task, 1, "cpu", torch.float64)
    eta = float(mf.net_params.eta[0])
    base = init_weights(mf.net_params) if frozen is None else as_weights(frozen, 1, "cpu", torch.float64)
    base_v = flat_weights(base)[0].numpy()
    rng = np.random.default_rng(seed)
    found: list[FixedPoint] = []
    bias_options = (False, True) if include_bias_silent else (False,)
    for silent_L, silent_R, silent_b in itertools.product((False, True), (False, True), bias_options):
        silent = [j for j, s in enumerate((silent_L, silent_R, silent_b)) if s]
        active = [j for j in range(len(PATHWAYS)) if j not in silent]
        if not active:
            continue
        idx = sorted(i for j in active for i in pathway_coords(j))

        def full(z, silent=silent, idx=idx):
            v = base_v.copy()
            for j in silent:
                v[pathway_coords(j).gain] = 0.0
            v[idx] = z
            return v

        def residual(z, idx=idx, full=full):
            v = torch.as_tensor(full(z))
            with torch.no_grad():
                f = flat_weights(mf.flow(weights_from_flat(v[None])))[0].numpy()
            return f[idx] / eta

        for start in range(int(n_starts)):
            # search in y with weights z = y**2 >= 0 (the reachable region of the positive model);
            # odd starts are random, even ones "associated" (a_j U[correct, j] ~ 1, U[wrong, j] small)
            z0 = full(rng.uniform(0.05, 2.0, size=len(idx)))
            if start % 2 == 0:
                for j in active:
                    g = rng.uniform(0.3, 1.5)
                    gain, u_left, u_right = pathway_coords(j)
                    z0[gain] = g
                    if j < 2:  # stimulus pathway: associated with its correct action (row j)
                        correct, wrong = (u_left, u_right) if j == 0 else (u_right, u_left)
                        z0[correct] = rng.uniform(0.7, 1.3) / g
                        z0[wrong] = rng.uniform(0.0, 0.1)
                    else:
                        z0[[u_left, u_right]] = rng.uniform(0.0, 1.0, size=2) / g
            z0 = z0[idx]
            sol = optimize.root(lambda y: residual(y * y), np.sqrt(z0), method="lm",
                                options={"xtol": 1e-14, "ftol": 1e-14, "maxiter": int(maxiter)})
            v = full(sol.x ** 2)
            if any(v[j] <= min_gain for j in active):
                continue  # collapsed onto another silent set, found there
            v = _balance(v, active)
            res = np.max(np.abs(residual(v[idx])))
            if not np.isfinite(res) or res > tol or np.max(np.abs(v)) > 1e3:
                continue
            fp = _describe(mf, v, silent, active, idx, res, eta, tol, strategy_of, STRATEGY_NAMES)
            dup = [k for k, other in enumerate(found) if _same(fp, other)]
            if not dup:
                found.append(fp)
            elif fp.residual < found[dup[0]].residual:
                found[dup[0]] = fp
    found.sort(key=lambda fp: (fp.strategy, len(fp.silent), fp.silent))
    return found


def _same(p: FixedPoint, q: FixedPoint) -> bool:
    return (p.silent == q.silent and p.strategy == q.strategy
            and np.max(np.abs(p.p_right - q.p_right)) < 1e-3)


def _describe(mf, v, silent, active, idx, res, eta, tol, strategy_of, names) -> FixedPoint:
    w = weights_from_flat(torch.as_tensor(v.copy()))
    f, J = flow_jacobian(mf, w)
    tol = tol * eta
    eig_full, vecs = np.linalg.eig(J)
    eig_sub = np.linalg.eigvals(J[np.ix_(idx, idx)])
    unstable = []
    for k in np.flatnonzero(eig_full.real > tol):
        for part in (vecs[:, k].real, vecs[:, k].imag):
            if np.linalg.norm(part) > 1e-8:
                unstable.append(part / np.linalg.norm(part))
    gains = {j: pathway_coords(j).gain for j in silent}
    drive = {PATHWAYS[j]: float(f[gain]) for j, gain in gains.items()}
    for gain in gains.values():
        if f[gain] > tol:
            e = np.zeros(N_WEIGHTS)
            e[gain] = 1.0
            unstable.append(e)
    a, U = w.a.numpy().copy(), w.U.numpy().copy()
    code = int(strategy_of(a, U))
    with torch.no_grad():
        fwd, pr = mf.policy(Weights(torch.as_tensor(a)[None], torch.as_tensor(U)[None]))
    return FixedPoint(
        silent=tuple(PATHWAYS[j] for j in silent), a=a, U=U, strategy=code, strategy_name=names[code],
        residual=float(res * eta), boundary_drive=drive, eig_full=eig_full, eig_sub=eig_sub,
        unstable_vectors=np.array(unstable).reshape(-1, N_WEIGHTS), p_right=pr[0].numpy(),
        q_tot=fwd.q_tot[0].numpy(), tol=tol,
    )


def fixed_points_frame(fixed_points: list[FixedPoint]) -> pd.DataFrame:
    """One row per fixed point: strategy, silent set, weights, residual, max Re eigenvalue, saddle flag."""
    from ..schema import WEIGHT_COLUMNS

    rows = []
    for fp in fixed_points:
        row = {"strategy": fp.strategy, "strategy_name": fp.strategy_name, "silent": ",".join(fp.silent),
               "residual": fp.residual, "max_re_eig_full": float(fp.eig_full.real.max()),
               "max_re_eig_sub": float(fp.eig_sub.real.max()),
               "max_boundary_drive": max(fp.boundary_drive.values(), default=np.nan),
               "unstable": fp.unstable, "unstable_sub": fp.unstable_sub}
        row.update(dict(zip(WEIGHT_COLUMNS, flat_weights(fp.weights).numpy())))
        rows.append(row)
    return pd.DataFrame(rows)
