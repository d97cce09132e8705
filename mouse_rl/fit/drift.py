"""Day-to-day weight drift of free-running copies (an option of the free-running fit and the checks).

Real mice swing their bias by about +-0.4 in P(R | c = 0) from one session to the next, and free-running
copies of the deterministic network (MODEL.md) are far too regular day to day. This module adds the
noisy learner's overnight jump (:mod:`mouse_rl.fit.statespace`, ``sigma_day``) to free-running copies:
before the first trial of every session but the first, each weight ``w_j`` (the nine of
:data:`mouse_rl.schema.WEIGHT_COLUMNS`: a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb) becomes

    w_j <- exp(log max(w_j, W_FLOOR) + sigma_j eps_j),   eps_j ~ N(0, 1)

(multiplicative noise on log-weights, as the statespace model's default ``noise="log"``; weights stay
positive). ``sigma_j`` (log-weight units, i.e. a relative change per night) is set per weight group
(:data:`GROUPS`): ``"bias"`` = the constant channel (a_b, U_Lb, U_Rb: the start bias and its drift),
``"stim"`` = the six stimulus weights (a_L, a_R, U_LL, U_LR, U_RL, U_RR). Within a session the copies
learn exactly as the network does (:func:`mouse_rl.network.trial_update`, run by the fused CPU kernel
:func:`mouse_rl.sim_kernel.run_fused` or the reference :func:`mouse_rl.rollout.rollout`, same numbers);
the noise is applied between the kernel's calls, one call per stretch of trials without a session start,
so the kernel itself is unchanged. With every ``sigma_j = 0`` the copies are those of
:func:`mouse_rl.fit.checks.free_run`, bit for bit.

Noise draws are counter-based (:mod:`envs.rng`, stream :data:`DRIFT_STREAM`, counter ``9 t + j`` at the
session's first trial ``t``) from each copy's seed: a copy's noise does not depend on its batch partners or
on sigma, so the free-running fit compares candidates on the same noise (common random numbers) and its
score is a smooth function of sigma.
"""
from __future__ import annotations

import numpy as np
import torch

from envs import rng

from ..network import Weights
from ..params import NetParams
from .batch import TrialBatch

#: Weight groups of the drift, as indices into the nine weights (a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb).
GROUPS = {"bias": (2, 5, 8), "stim": (0, 1, 3, 4, 6, 7)}
#: Random stream of the overnight noise (not used by :mod:`envs.rng`'s named streams nor optogenetics').
DRIFT_STREAM = 7
#: Floor before the log of a weight the rule set to exactly 0 (as :data:`mouse_rl.fit.statespace.W_FLOOR`).
W_FLOOR = 1e-12
#: Bounds of a fitted sigma_day (log-weight units) and the range of the free-running fit's start design.
SIGMA_BOUNDS = (1e-3, 3.0)
SIGMA_START = (0.02, 1.0)


def check_groups(groups) -> tuple[str, ...]:
    """Validate drift group names (a tuple of :data:`GROUPS` keys, no repeats)."""
    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"drift: unknown group {g!r}; choose from {tuple(GROUPS)}")
    if len(set(groups)) != len(groups):
        raise ValueError(f"drift: repeated group in {groups!r}")
    return groups


def sigma_matrix(sigma: dict, n: int) -> np.ndarray:
    """``(n, 9)`` per-weight sds from ``{group: scalar or (n,) sd}`` (log-weight units; groups absent: 0)."""
    out = np.zeros((n, 9))
    for g, v in sigma.items():
        check_groups((g,))
        v = np.broadcast_to(np.asarray(v, float), (n,))
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"sigma_day[{g!r}]: must be finite and >= 0, got {v}")
        out[:, list(GROUPS[g])] = v[:, None]
    return out


def session_starts(batch: TrialBatch) -> np.ndarray:
    """``(T, B)`` bool: real trials that open a session other than the column's first."""
    sess = batch.session.cpu().numpy()
    valid = batch.valid.cpu().numpy()
    out = np.zeros(sess.shape, bool)
    for b in range(sess.shape[1]):
        rows = np.flatnonzero(valid[:, b])
        if len(rows) > 1:
            s = sess[rows, b]
            out[rows[1:][s[1:] != s[:-1]], b] = True
    return out


def drift_noise(seeds: torch.Tensor, t: int, dtype=torch.float64) -> torch.Tensor:
    """``(B, 9)`` standard normal overnight noise of each copy at session start ``t`` (counter ``9 t + j``)."""
    return torch.stack([rng.normal(seeds, DRIFT_STREAM, 9 * int(t) + j, dtype) for j in range(9)], -1)


def log_jump(w: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """Log-weight jump of flat weights ``w`` ``(n, 9)`` by ``sd`` ``(n, 9)`` (= sigma * eps); unchanged where sd = 0."""
    return torch.where(sd == 0, w, torch.exp(torch.log(w.clamp(min=W_FLOOR)) + sd))


def free_run_drift(batch: TrialBatch, params: NetParams, seeds, sigma_day, encoding: str = "side",
                   positive: bool = True, zero_reward: str = "expected", engine: str = "auto",
                   init: Weights | None = None, offset=None, gain=None, corrections: int = 0,
                   corrections_forced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running copies on each column's own stimuli and sessions, with overnight weight drift.

    Parameters
    ----------
    batch : the columns' trials (:class:`~mouse_rl.fit.batch.TrialBatch`; only stimuli, validity and
        sessions are used).
    params : :class:`NetParams` of ``(B,)`` tensors.
    seeds : ``(B,)`` per-column seeds (choices, rewarded side at c = 0 and the drift noise).
    sigma_day : ``(B, 9)`` sd of the overnight jump of each log-weight (relative change per night;
        :func:`sigma_matrix` builds it from groups), >= 0.
    encoding, positive, zero_reward : model options (``positive=True`` required: log-weight noise).
    engine : ``"auto"`` (fused CPU kernel where it can run, otherwise the reference rollout with a
        warning naming why), ``"fused"`` or ``"reference"``.
    init : starting weights (default :func:`mouse_rl.network.init_weights` without jitter).
    offset, gain : optional ``(T, B)`` logit offset and factor on beta of every trial (the session effects,
        :mod:`mouse_rl.fit.session_effects`).
    corrections, corrections_forced : hidden correction trials after errors
        (:func:`~mouse_rl.simulate.simulate_on_stimuli`).

    Returns
    -------
    ``(choice, p_right)``, each ``(T, B)``, as :func:`mouse_rl.fit.checks.free_run`.
    """
    from ..simulate import simulate_on_stimuli

    if not positive:
        raise ValueError("positive: the overnight drift is on log-weights and needs positive=True, got False")
    T, B = batch.shape
    dtype, device = params.eta.dtype, batch.contrast.device
    sd = torch.as_tensor(np.asarray(sigma_day, float), dtype=dtype, device=device)
    if sd.shape != (B, 9):
        raise ValueError(f"sigma_day: expected shape {(B, 9)} (columns x weights), got {tuple(sd.shape)}")
    if not bool(torch.isfinite(sd).all()) or bool((sd < 0).any()):
        raise ValueError("sigma_day: must be finite and >= 0")
    seeds = rng.as_seed_tensor(seeds, device)
    if seeds.shape != (B,):
        raise ValueError(f"seeds: expected {B} seeds, got {seeds.shape[0]}")
    starts_np = session_starts(batch)
    starts = torch.as_tensor(starts_np, device=device)

    def overnight(t: int, flat: torch.Tensor) -> torch.Tensor:
        """The jump of the columns whose session starts at trial ``t`` (the others unchanged, not computed)."""
        idx = torch.nonzero(starts[t]).squeeze(1)
        out = flat.clone()
        out[idx] = log_jump(flat[idx].to(dtype), sd[idx] * drift_noise(seeds[idx], t, dtype)).to(flat.dtype)
        return out

    cuts = [int(t) for t in np.flatnonzero(starts_np.any(1))]
    return simulate_on_stimuli(batch.contrast, batch.valid, params, seeds, init, encoding, positive, zero_reward,
                               engine=engine, cuts=cuts, between=overnight, offset=offset,
                               gain=gain, corrections=corrections, corrections_forced=corrections_forced)


def simulate_drifting(trials, params, sigma_day, seed: int = 0, session_bias_sd=None, session_gain_sd=None):
    """Mice learning free-running with overnight drift, on the stimuli and session lengths of ``trials``.

    Parameters
    ----------
    trials : trial table of M mice (only ``mouse``, ``session``, ``trial`` and ``signed_contrast`` are used).
    params : :class:`~mouse_rl.params.ModelParams` (scalars or length-M arrays, mice sorted by name; its
        ``encoding`` and ``positive`` options apply; ``zero_reward`` must be ``"expected"``).
    sigma_day : ``(M, 9)`` overnight log-weight sds (:func:`sigma_matrix`); zeros: the network of MODEL.md.
    seed : seed of the mice's choices and drift (:func:`mouse_rl.fit.checks.copy_seeds`, one copy).
    session_bias_sd, session_gain_sd : optional ``(M,)`` sds of the mice's session effects (each session's logit
        offset and log gain on beta, :mod:`mouse_rl.fit.session_effects`, drawn from the same seeds); None: none.

    Returns
    -------
    The prepared trial table (sorted by mouse, session, trial) with ``choice`` replaced by the simulated
    mice's, ``reward`` / ``feedbackType`` by the task's (:func:`mouse_rl.network.stimulus_reward`; on
    zero-contrast trials a fair coin from ``seed``) and ``p_right`` (the model's P(Right)); other model
    read-outs of ``trials`` (:data:`mouse_rl.schema.MODEL_COLUMNS`, weights) are dropped.
    """
    from ..network import stimulus_reward
    from ..schema import MODEL_COLUMNS, WEIGHT_COLUMNS
    from .batch import make_batch, prepare_trials
    from .checks import copy_seeds
    from .transforms import ParamTransform

    if params.zero_reward != "expected":  # the table's zero-contrast coin is not the one the mouse learned from
        raise ValueError(f"params.zero_reward: simulate_drifting supports 'expected' (the default), got "
                         f"{params.zero_reward!r}")
    df = prepare_trials(trials)
    batch = make_batch(df, params.zero_reward, "cpu", torch.float64, prepared=True)
    M = batch.shape[1]
    net = ParamTransform(free=(), fixed=params).params(torch.zeros(M, 0, dtype=torch.float64))
    seeds = copy_seeds(batch.mice, 1, seed)[0]
    from .session_effects import session_gains, session_offsets

    offset = None if session_bias_sd is None else session_offsets(batch, seeds, session_bias_sd)
    gain = None if session_gain_sd is None else session_gains(batch, seeds, session_gain_sd)
    with torch.no_grad():
        choice, p_right = free_run_drift(batch, net, seeds, sigma_day, params.encoding, params.positive,
                                         params.zero_reward, offset=offset, gain=gain)
    stale = [c for c in (*MODEL_COLUMNS, *WEIGHT_COLUMNS) if c in df.columns]  # read-outs of another model
    out = df.drop(columns=stale)
    out["choice"] = batch.to_rows(choice).astype(int)
    out["p_right"] = batch.to_rows(p_right)
    reward = stimulus_reward(out["signed_contrast"].to_numpy(), out["choice"].to_numpy()).astype(float)
    zero = out["signed_contrast"].to_numpy() == 0
    reward[zero] = (np.random.default_rng(seed).random(int(zero.sum())) < 0.5).astype(float)
    out["reward"] = reward
    out["feedbackType"] = 2 * reward - 1
    return out
