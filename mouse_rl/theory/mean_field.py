"""Mean-field ("theory") dynamics: the expected trial update, iterated once per trial.

"Three uses, one function": the map is :func:`mouse_rl.network.trial_update`
itself, called with ``positive=False`` on a batch laid out as
``(n_init, n_classes, 2 actions)`` with the expected reward ``r(s, o)``; the
new weights are averaged with weights ``p_s * pi_o(s)`` (class probability
times the policy), then the reflecting boundary ``|.|`` is applied if
``params.positive``. No update equation is written here.

``mean_field_trajectory(..., closure="unscented")`` adds the trial-to-trial
fluctuations of a cohort (a Gaussian moment closure, see there); the spread
of the per-(class, action) new weights of the same enumeration is the
per-trial noise.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from envs.task import TaskConfig

from ..network import (Forward, Weights, flat_weights, forward, inactive, init_weights, p_right, trial_update,
                       weights_from_flat, with_crosstalk)
from ..params import ModelParams
from ..schema import WEIGHT_COLUMNS
from .classes import STIMULUS_SIDE_NAMES, StimulusClasses, stimulus_classes

__all__ = ["MeanFieldMap", "MeanFieldStep", "MeanFieldResult", "mean_field_step", "mean_field_trajectory",
           "as_weights", "n_batch", "folded_normal_mean", "CLOSURES", "flat_weights", "weights_from_flat",
           "PathwayCoords", "pathway_coords"]

#: Fluctuation closures of :func:`mean_field_trajectory` (``closure``).
CLOSURES = ("none", "unscented")
#: Number of weights (a: 3, U: 6) = dimension of the closure's state.
N_WEIGHTS = 9
#: Unscented-transform spread parameter, ``kappa = 3 - D`` (matches the Gaussian fourth moment).
UT_KAPPA = 3.0 - N_WEIGHTS


class MeanFieldStep(NamedTuple):
    """One mean-field trial: new weights and the per-class expectations at the old weights.

    weights : averaged new weights ``a (N, 3)``, ``U (N, 2, 3)``.
    p_right : ``P(R | class)``, ``(N, C)``.
    delta_tot, delta_stim, delta_const : expected teaching signals per class,
        ``sum_o pi_o(s) delta(s, o)``, ``(N, C)`` (None if not requested).
    cov : per-trial covariance of the new weights over stimulus classes and
        actions (boundary off), ``(N, 9, 9)`` in the order ``a, U.flatten()``
        (:data:`mouse_rl.schema.WEIGHT_COLUMNS`); None unless requested.
    """

    weights: Weights
    p_right: torch.Tensor
    delta_tot: torch.Tensor | None
    delta_stim: torch.Tensor | None
    delta_const: torch.Tensor | None
    cov: torch.Tensor | None = None


def n_batch(params: ModelParams, init: Weights | None) -> int:
    """Batch size implied by per-mouse parameters and/or initial weights."""
    sizes = set()
    hint = params.n_mice_hint()
    if hint is not None:
        sizes.add(hint)
    if init is not None:
        a = torch.as_tensor(init[0])
        if a.ndim == 2:
            sizes.add(a.shape[0])
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"init: {sorted(sizes)} inconsistent batch sizes between params (per-mouse values) and init")
    return sizes.pop() if sizes else 1


def as_weights(init, n: int, device, dtype) -> Weights:
    """``init`` (a ``Weights`` or ``(a, U)`` pair, batched or not) as ``(n, 3)``, ``(n, 2, 3)`` tensors."""
    try:
        a, U = init
    except (TypeError, ValueError):
        raise ValueError("init: give a Weights(a, U) or an (a, U) pair") from None
    a = torch.as_tensor(a, device=device, dtype=dtype)
    U = torch.as_tensor(U, device=device, dtype=dtype)
    if a.shape[-1:] != (3,) or U.shape[-2:] != (2, 3) or a.ndim > 2 or U.ndim > 3:
        raise ValueError(f"init: a must be (3,) or (n, 3) and U (2, 3) or (n, 2, 3); got {tuple(a.shape)}, {tuple(U.shape)}")
    return Weights(a.expand(n, 3).clone(), U.expand(n, 2, 3).clone())


def folded_normal_mean(m: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``E|m + s Z|``, ``Z ~ N(0, 1)``, ``s = sqrt(var)``: ``s sqrt(2/pi) exp(-m^2/2s^2) + m (1 - 2 Phi(-m/s))``.

    Equals ``|m|`` where ``var = 0``.
    """
    s = var.clamp_min(0).sqrt()
    safe = torch.where(s > 0, s, torch.ones_like(s))
    z = m / safe
    out = safe * math.sqrt(2 / math.pi) * torch.exp(-0.5 * z * z) + m * (1 - 2 * torch.special.ndtr(-z))
    return torch.where(s > 0, out, m.abs())


class PathwayCoords(NamedTuple):
    """Positions of one pathway's three weights in the flat vector of :func:`flat_weights`."""

    gain: int  # a_j
    u_left: int  # U[L, j]
    u_right: int  # U[R, j]


def pathway_coords(j: int) -> PathwayCoords:
    """Where pathway ``j`` (0 = L-stim, 1 = R-stim, 2 = bias) sits in the flat 9-vector: a_j, U[L, j], U[R, j]."""
    return PathwayCoords(j, 3 + j, 6 + j)


def _weight_columns(a: torch.Tensor, U: torch.Tensor) -> dict:
    """:data:`~mouse_rl.schema.WEIGHT_COLUMNS` of weights ``a (..., 3)``, ``U (..., 2, 3)``, leading axes flattened."""
    flat = flat_weights(Weights(a, U)).detach().cpu().double().numpy().reshape(-1, N_WEIGHTS)
    return {col: flat[:, j] for j, col in enumerate(WEIGHT_COLUMNS)}


def _side_columns(p_side: np.ndarray) -> dict:
    """``p_right_{left,zero,right}`` columns of P(R | stimulus side) ``(..., 3)``, leading axes flattened."""
    p_side = p_side.reshape(-1, len(STIMULUS_SIDE_NAMES))
    return {f"p_right_{name}": p_side[:, j] for j, name in enumerate(STIMULUS_SIDE_NAMES.values())}


def _strategy_columns(a: torch.Tensor, U: torch.Tensor) -> dict:
    """``strategy`` code and ``strategy_name`` of weights ``a (..., 3)``, ``U (..., 2, 3)``, leading axes flattened."""
    from ..strategy import STRATEGY_NAMES, strategy_of

    codes = strategy_of(a, U).cpu().numpy().reshape(-1)
    return {"strategy": codes, "strategy_name": np.asarray(STRATEGY_NAMES, dtype=object)[codes]}


class MeanFieldMap:
    """The mean-field map, with its class x action batch layout built once.

    Parameters
    ----------
    params : ModelParams
        Hyperparameters (scalars or one value per batch element).
    task : TaskConfig
        Contrasts and probabilities (stimulus classes via :func:`stimulus_classes`).
    n : int
        Batch size (initial conditions / mice).
    device, dtype : where and in which precision to compute.
    reflect : ``"mean"`` (default; the boundary ``|.|`` is applied to the
        averaged new weights) or ``"sample"`` (``trial_update(positive=True)``
        per class and action, then averaged: ``E|w + dw|``). They differ only
        within ~eta of the wall ``a_j = 0``.
    """

    def __init__(self, params: ModelParams, task: TaskConfig, n: int, device=None, dtype=torch.float64,
                 reflect: str = "mean"):
        if reflect not in ("mean", "sample"):
            raise ValueError(f"reflect: must be 'mean' or 'sample', got {reflect!r}")
        self.reflect = reflect
        self.classes: StimulusClasses = stimulus_classes(task, params)
        self.params, self.task, self.n = params, task, int(n)
        self.positive = params.positive
        p = params.tensors(self.n, device=device, dtype=dtype)
        if not inactive(p.side_pref):
            raise ValueError("side_pref: the mean-field theory's policy does not change with the trial index, so it "
                             "has no fading side preference; set side_pref = 0 (simulate_cohort runs it)")
        self.net_params = p
        C, n = self.classes.n, self.n
        kw = dict(device=device, dtype=dtype)
        # (N, C, 3): each element's inputs, with its crosstalk (an option; 0 = MODEL.md)
        self.x_class = with_crosstalk(torch.as_tensor(self.classes.x, **kw).expand(n, C, 3), p.crosstalk[:, None])
        self.x = self.x_class[:, :, None, :].expand(n, C, 2, 3)
        self.choice = torch.tensor([0, 1], device=device).expand(n, C, 2)
        self.reward = torch.as_tensor(self.classes.reward, **kw).expand(n, C, 2)
        self.eta = p.eta[:, None, None].expand(n, C, 2)
        self.prob = torch.as_tensor(self.classes.prob, **kw)[None, :, None]  # (1, C, 1)
        self.beta = p.beta[:, None]
        self.lapse = p.lapse[:, None] if bool((p.lapse != 0).any()) else None

    def policy(self, weights: Weights) -> tuple[Forward, torch.Tensor]:
        """Action values per class ``(N, C, 2)`` and ``P(R | class)`` ``(N, C)``."""
        a, U = weights
        fwd = forward(Weights(a[:, None], U[:, None]), self.x_class)
        return fwd, p_right(fwd.q_tot, self.beta, self.lapse)

    def tile(self, k: int) -> "MeanFieldMap":
        """The same map on ``k`` stacked copies of the batch (batch index = copy * n + element)."""
        out = copy.copy(self)
        out.n = self.n * int(k)
        for name in ("x_class", "x", "choice", "reward", "eta", "beta", "lapse"):
            v = getattr(self, name)
            if v is not None:
                setattr(out, name, v.repeat(int(k), *([1] * (v.ndim - 1))))
        return out

    def __call__(self, weights: Weights, positive: bool | None = None, deltas: bool = True,
                 cov: bool = False) -> MeanFieldStep:
        """One mean-field trial from ``weights`` (``a (N, 3)``, ``U (N, 2, 3)``).

        ``cov``: also return the per-trial covariance of the new weights over
        classes and actions (:attr:`MeanFieldStep.cov`, the trial noise).
        """
        a, U = weights
        n, C = self.n, self.classes.n
        if a.shape != (n, 3) or U.shape != (n, 2, 3):
            raise ValueError(f"weights: expected a ({n}, 3) and U ({n}, 2, 3), got {tuple(a.shape)}, {tuple(U.shape)}")
        fwd, pr = self.policy(weights)
        pi = torch.stack([1 - pr, pr], dim=-1)  # (N, C, 2)
        w = pi * self.prob
        fwd_b = Forward(*(q[:, :, None, :].expand(n, C, 2, 2) for q in fwd))
        batch = Weights(a[:, None, None, :].expand(n, C, 2, 3), U[:, None, None].expand(n, C, 2, 2, 3))
        positive = self.positive if positive is None else positive
        per_sample = positive and self.reflect == "sample"
        step = trial_update(batch, self.x, self.choice, self.reward, self.eta, positive=per_sample, fwd=fwd_b)
        new_a = (w[..., None] * step.weights.a).sum((1, 2))
        new_U = (w[..., None, None] * step.weights.U).sum((1, 2))
        noise = None
        if cov:
            dev = flat_weights(step.weights) - flat_weights(Weights(new_a, new_U))[:, None, None]  # (N, C, 2, 9)
            noise = (w[..., None, None] * dev[..., :, None] * dev[..., None, :]).sum((1, 2))  # no bmm: tiny
        if positive and not per_sample:
            new_a, new_U = new_a.abs(), new_U.abs()
        if deltas:
            d = [(pi * x).sum(-1) for x in (step.delta_tot, step.delta_stim, step.delta_const)]
        else:
            d = [None, None, None]
        return MeanFieldStep(Weights(new_a, new_U), pr, *d, cov=noise)

    def flow(self, weights: Weights) -> Weights:
        """Expected weight change per trial without the boundary (the ODE right-hand side, per trial)."""
        new = self(weights, positive=False, deltas=False).weights
        return Weights(new.a - weights.a, new.U - weights.U)


class _Unscented:
    """Gaussian moment closure of the cohort by the unscented transform (see :func:`mean_field_trajectory`).

    State: mean ``m (N, 9)`` and covariance ``C (N, 9, 9)`` of the weights
    across mice. One trial: the ``2D + 1`` sigma points ``m``, ``m +- sqrt(D +
    kappa) * columns of sqrt(C)`` go through the map (boundary off), the new mean
    and covariance are their weighted moments plus the sigma-point average of
    the per-trial noise covariance; the boundary is the per-weight folded normal.
    With ``kappa = 3 - D < 0`` the centre weight is negative, so ``C`` is
    symmetrised and its negative eigenvalues clipped before taking sqrt(C).
    """

    def __init__(self, mf: MeanFieldMap, noise: float):
        D, kappa = N_WEIGHTS, UT_KAPPA
        self.n, self.k, self.noise = mf.n, 2 * D + 1, float(noise)
        self.big = mf.tile(self.k)
        kw = dict(device=mf.x.device, dtype=mf.x.dtype)
        self.wts = torch.full((self.k,), 1 / (2 * (D + kappa)), **kw)
        self.wts[0] = kappa / (D + kappa)
        self.scale = math.sqrt(D + kappa)

    def average(self, v: torch.Tensor) -> torch.Tensor:
        """Sigma-point average of ``(k * N, ...)`` values, ``(N, ...)``."""
        v = v.reshape(self.k, self.n, *v.shape[1:])
        return torch.tensordot(self.wts, v, dims=1)

    def __call__(self, m: torch.Tensor, C: torch.Tensor, positive: bool, deltas: bool):
        ev, evec = torch.linalg.eigh((C + C.mT) / 2)
        dirs = (evec * (ev.clamp_min(0).sqrt() * self.scale)[:, None, :]).mT  # (N, D, D), rows = directions
        pts = torch.cat([m[:, None], m[:, None] + dirs, m[:, None] - dirs], 1).transpose(0, 1).reshape(-1, N_WEIGHTS)
        out = self.big(weights_from_flat(pts), positive=False, deltas=deltas, cov=self.noise > 0)
        new_pts = flat_weights(out.weights).reshape(self.k, self.n, N_WEIGHTS)
        new = torch.tensordot(self.wts, new_pts, dims=1)
        dev = new_pts - new
        cov = (self.wts[:, None, None, None] * dev[..., :, None] * dev[..., None, :]).sum(0)
        if self.noise > 0:
            cov = cov + self.noise * self.average(out.cov)
        if positive:  # reflecting boundary: per-weight folded normal, correlations kept
            var = cov.diagonal(dim1=-2, dim2=-1).clamp_min(0)
            folded = folded_normal_mean(new, var)
            var_f = (new ** 2 + var - folded ** 2).clamp_min(0)
            r = torch.where(var > 0, var_f / torch.where(var > 0, var, torch.ones_like(var)), torch.ones_like(var)).sqrt()
            cov, new = cov * r[:, :, None] * r[:, None, :], folded
        d = [None if x is None else self.average(x) for x in (out.delta_tot, out.delta_stim, out.delta_const)]
        return new, cov, self.average(out.p_right), d


def mean_field_step(weights: Weights, params: ModelParams | None = None, task: TaskConfig | None = None,
                    positive: bool | None = None) -> MeanFieldStep:
    """One step of the mean-field map (one trial), see :class:`MeanFieldMap`.

    Parameters
    ----------
    weights : Weights
        ``a (N, 3)`` (or ``(3,)``) and ``U (N, 2, 3)`` (or ``(2, 3)``); device
        and dtype are taken from ``weights.a``.
    params, task : model and task (defaults: ``ModelParams()``, ``TaskConfig()``).
    positive : override ``params.positive`` (reflecting boundary).
    """
    params = params or ModelParams()
    task = task or TaskConfig()
    a0 = torch.as_tensor(weights[0])
    dtype = a0.dtype if a0.is_floating_point() else torch.float64
    n = n_batch(params, weights)
    w = as_weights(weights, n, a0.device, dtype)
    return MeanFieldMap(params, task, n, a0.device, dtype)(w, positive=positive)


@dataclass
class MeanFieldResult:
    """Output of :func:`mean_field_trajectory` (leading axis = initial condition / mouse).

    trial : ``(R,)`` global trial index (from 0) of each record; a record holds
        the weights *before* that trial's update and the expectations at them.
    a, U : ``(N, R, 3)`` and ``(N, R, 2, 3)`` recorded weights.
    p_right, delta_tot, delta_stim, delta_const : ``(N, R, C)`` per class.
    session_p_right : ``(N, S, C)`` P(R | class) averaged over the trials of each session.
    session_a, session_U : ``(N, S + 1, ...)`` weights at session ends (index 0 = initial).
    classes : the :class:`StimulusClasses`.
    """

    trial: np.ndarray
    a: torch.Tensor
    U: torch.Tensor
    p_right: torch.Tensor
    delta_tot: torch.Tensor
    delta_stim: torch.Tensor
    delta_const: torch.Tensor
    session_p_right: torch.Tensor
    session_a: torch.Tensor
    session_U: torch.Tensor
    classes: StimulusClasses
    params: ModelParams
    task: TaskConfig
    meta: dict = field(default_factory=dict)

    @property
    def n_sessions(self) -> int:
        return self.session_p_right.shape[1]

    @property
    def final_weights(self) -> Weights:
        return Weights(self.session_a[:, -1], self.session_U[:, -1])

    def _side(self, values: torch.Tensor) -> np.ndarray:
        """Average per-class values ``(..., C)`` into left/zero/right ``(..., 3)``."""
        W = self.classes.side_weights()
        v = values.detach().cpu().double().numpy()
        return np.einsum("...c,cj->...j", v, np.nan_to_num(W)) + np.where(np.isnan(W).any(0), np.nan, 0.0)

    def p_right_side(self) -> np.ndarray:
        """P(R | left/zero/right) per record, ``(N, R, 3)``."""
        return self._side(self.p_right)

    def session_p_right_side(self) -> np.ndarray:
        """Session-averaged P(R | left/zero/right), ``(N, S, 3)``."""
        return self._side(self.session_p_right)

    def strategies(self, threshold: float | None = None) -> torch.Tensor:
        """Strategy code of every record, ``(N, R)`` (see :func:`mouse_rl.strategy.strategy_of`)."""
        from ..strategy import strategy_of

        return strategy_of(self.a, self.U) if threshold is None else strategy_of(self.a, self.U, threshold)

    def to_frame(self) -> pd.DataFrame:
        """One row per initial condition and record: ``init, trial, session, trial_in_session``,
        the weight columns, ``p_right_{left,zero,right}``, per-class ``p_right_<class>`` (magnitude
        encoding only) and ``delta_{tot,stim,const}_<class>``, ``strategy``, ``strategy_name``."""
        N, R = self.a.shape[:2]
        T = self.task.trials_per_session
        df = pd.DataFrame({
            "init": np.repeat(np.arange(N), R),
            "trial": np.tile(self.trial, N),
            "session": np.tile(self.trial // T + 1, N),
            "trial_in_session": np.tile(self.trial % T, N),
            **_weight_columns(self.a, self.U),
            **_side_columns(self.p_right_side()),
        })
        names = self.classes.names
        blocks = {"delta_tot": self.delta_tot, "delta_stim": self.delta_stim, "delta_const": self.delta_const}
        if self.params.encoding != "side":
            blocks = {"p_right": self.p_right, **blocks}
        for key, val in blocks.items():
            v = val.detach().cpu().double().numpy().reshape(N * R, -1)
            for c, name in enumerate(names):
                df[f"{key}_{name}"] = v[:, c]
        return df.assign(**_strategy_columns(self.a, self.U))

    def session_frame(self) -> pd.DataFrame:
        """One row per initial condition and session (from 1): session-averaged
        ``p_right_{left,zero,right}``, the weights at the session's end and their strategy."""
        N, S = self.session_p_right.shape[:2]
        a, U = self.session_a[:, 1:], self.session_U[:, 1:]
        return pd.DataFrame({
            "init": np.repeat(np.arange(N), S),
            "session": np.tile(np.arange(1, S + 1), N),
            **_side_columns(self.session_p_right_side()),
            **_weight_columns(a, U),
            **_strategy_columns(a, U),
        })


def mean_field_trajectory(
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    n_sessions: int = 25,
    init: Weights | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    record_every: int | None = 1,
    trials_per_step: int = 1,
    closure: str = "unscented",
    noise: float = 1.0,
) -> MeanFieldResult:
    """Iterate the mean-field map once per trial for ``n_sessions`` sessions.

    Two closures: ``closure="unscented"`` (default) predicts the mean of a
    simulated *cohort* (weights and P(R | stimulus) averaged over mice);
    ``closure="none"`` is the plain mean-field map, the trajectory of one
    noise-free mouse (cheaper, and the one the fixed points, the strategy
    graph and :func:`~mouse_rl.theory.predict_stages` follow).

    With ``trials_per_step = h > 1`` (``closure="none"`` only) the plain map is integrated as an ODE instead:
    time is measured in trials, the flow per trial is ``f(w) = M(w) - w``
    (the same averaged :func:`~mouse_rl.network.trial_update`, no boundary),
    and each step advances ``h`` trials with Heun's method,
    ``w <- |w + h/2 (f(w) + f(w + h f(w)))|`` (a map with learning rate
    ``h * eta`` evaluated twice). Session averages weight each step by ``h``
    trials. ``h`` must divide the session length; ``h = 20`` is within 0.01
    of the per-trial map on P(R | stimulus) at the defaults (tested) and
    ~10x faster.

    ``closure="unscented"`` follows the mean *and* the covariance of the
    weights of a cohort of simulated mice (which all start from the same
    weights and spread through the trial-to-trial sampling of stimuli and
    choices), instead of the weights of a noise-free mouse. It is an
    approximation, a Gaussian moment closure:

    * per trial, the noise covariance is ``sum_so p_s pi_o(s) (w'_so - w')(w'_so
      - w')^T`` over the same per-(class, action) new weights ``w'_so`` whose
      average is the map (reward noise at c = 0 is not included: with
      ``zero_reward="random"`` the drawn reward adds variance the map's
      expected reward does not have);
    * the cohort is taken as Gaussian, ``N(m, C)``, and pushed through the
      map with the unscented transform (``2 * 9 + 1`` sigma points, ``kappa =
      3 - 9``), so ``E[M(w)]`` and ``E[P(R | s)]`` include the curvature of
      the map and of the policy, and ``C`` grows along unstable directions;
    * the reflecting boundary acts per weight on the Gaussian: the new mean
      is the folded-normal mean ``E|m_j + s_j Z|`` (``s_j^2 = C_jj``) and the
      variance the folded one, correlations kept. With zero noise and zero
      covariance this is the plain map ``|M(w)|``.

    The recorded ``a``, ``U`` are then the cohort means and ``p_right`` /
    ``delta_*`` the cohort-averaged ones; ``meta["session_cov"]`` holds the
    session-end covariances ``(N, S + 1, 9, 9)`` (order of
    :data:`~mouse_rl.schema.WEIGHT_COLUMNS`). It starts from zero covariance
    (the simulation's ``jitter`` ~1e-5 is ignored) and needs
    ``trials_per_step = 1``; it costs ~19 map evaluations per trial (a few
    seconds for 25 sessions of one cohort). Against 2000 simulated mice
    (deep default, ``b_R = 0.05``, 25 sessions) it is within ~0.015 on
    session P(R | stimulus) where the plain map is off by up to ~0.09 (the
    plain map misses the mice whose bias and stimulus weights run ahead or
    behind the mean); see ``bench/theory_vs_simulation.py``. Heavy,
    non-Gaussian tails (e.g. the few mice whose unassociated gain ``a_L``
    never collapses to the wall) are not represented.

    Parameters
    ----------
    params : ModelParams
        Hyperparameters; per-mouse values give one trajectory each.
    task : TaskConfig
        Task (``trials_per_session`` sets the session length, in trials).
    n_sessions : int
        Number of sessions (each ``task.trials_per_session`` trials).
    init : Weights, optional
        Initial weights, ``a (3,)|(N, 3)``, ``U (2, 3)|(N, 2, 3)``. Default: the
        deterministic :func:`~mouse_rl.network.init_weights` (no jitter).
    device, dtype : where and in which precision to compute.
    record_every : int or None
        Record every ``record_every`` trials (1 = every trial; the session
        length = session starts). ``None`` records only trial 0. Session
        averages and session-end weights are always kept. Must be a multiple
        of ``trials_per_step``.
    trials_per_step : int
        Trials per integration step (1 = the exact per-trial map).
    closure : ``"unscented"`` (default: cohort mean and covariance, see
        above) or ``"none"`` (the plain map of one noise-free mouse).
    noise : scale of the per-trial noise covariance of the closure (1 = the
        model's; 0 = none, which reproduces ``closure="none"``).

    Returns
    -------
    MeanFieldResult
    """
    params = params or ModelParams()
    task = task or TaskConfig()
    if isinstance(n_sessions, bool) or int(n_sessions) != n_sessions or n_sessions < 1:
        raise ValueError(f"n_sessions: must be a positive integer, got {n_sessions!r}")
    if record_every is not None and (isinstance(record_every, bool) or int(record_every) != record_every or record_every < 1):
        raise ValueError(f"record_every: must be a positive integer or None, got {record_every!r}")
    if closure not in CLOSURES:
        raise ValueError(f"closure: must be one of {CLOSURES}, got {closure!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: must be finite and >= 0, got {noise!r}")
    if closure != "none" and trials_per_step != 1:
        raise ValueError(f"trials_per_step: closure={closure!r} needs trials_per_step=1, got {trials_per_step!r} "
                         "(pass closure='none' to integrate the plain map as an ODE)")
    device = torch.device(device)
    n = n_batch(params, init)
    mf = MeanFieldMap(params, task, n, device, dtype)
    w = init_weights(mf.net_params) if init is None else as_weights(init, n, device, dtype)
    T = task.trials_per_session
    total = int(n_sessions) * T
    every = total if record_every is None else int(record_every)
    h = trials_per_step
    if isinstance(h, bool) or int(h) != h or h < 1 or T % h != 0 or every % h != 0:
        raise ValueError(f"trials_per_step: must be a positive integer dividing the session length {T} "
                         f"and record_every {every}, got {h!r}")
    if h > 1:
        mf.eta = mf.eta * h
    recs = {k: [] for k in ("a", "U", "p_right", "delta_tot", "delta_stim", "delta_const")}
    sess_a, sess_U, sess_p = [w.a], [w.U], []
    acc = torch.zeros(n, mf.classes.n, device=device, dtype=dtype)
    ut = _Unscented(mf, noise) if closure == "unscented" else None
    cov = torch.zeros(n, N_WEIGHTS, N_WEIGHTS, device=device, dtype=dtype)
    sess_cov = [cov]
    with torch.no_grad():
        for t in range(0, total, h):
            rec = t % every == 0
            if ut is not None:
                new, cov, pr, d = ut(flat_weights(w), cov, params.positive, rec)
                out = MeanFieldStep(weights_from_flat(new), pr, *d)
            else:
                out = mf(w, deltas=rec, positive=False if h > 1 else None)
            acc += h * out.p_right
            if rec:
                for k, v in zip(recs, (w.a, w.U, out.p_right, out.delta_tot, out.delta_stim, out.delta_const)):
                    recs[k].append(v)
            if h > 1:  # Heun: average the Euler slope at w and at the Euler prediction
                predicted = mf(out.weights, deltas=False, positive=False).weights
                w = Weights((w.a + predicted.a) / 2, (w.U + predicted.U) / 2)
                if params.positive:
                    w = Weights(w.a.abs(), w.U.abs())
            else:
                w = out.weights
            if (t + h) % T == 0:
                sess_p.append(acc / T)
                acc = torch.zeros_like(acc)
                sess_a.append(w.a)
                sess_U.append(w.U)
                sess_cov.append(cov)
    stack = {k: torch.stack(v, dim=1) for k, v in recs.items()}
    return MeanFieldResult(
        trial=np.arange(0, total, every), **stack,
        session_p_right=torch.stack(sess_p, 1), session_a=torch.stack(sess_a, 1), session_U=torch.stack(sess_U, 1),
        classes=mf.classes, params=params, task=task,
        meta={"device": str(device), "dtype": str(dtype), "closure": closure, "noise": float(noise),
              **({"session_cov": torch.stack(sess_cov, 1)} if ut is not None else {})},
    )
