"""The cortex -> striatum deep linear network and its single-trial update.

Shapes use a leading batch (mouse) axis ``...``:

* ``a``: cortical gains ``(..., 3)`` for the channels (L-stim, R-stim, bias);
* ``U``: striatal weights ``(..., 2, 3)``; rows = actions (0 = L, 1 = R),
  columns = hidden units (L-stim, R-stim, bias);
* ``x``: input ``(..., 3)``; ``choice``: int64 ``(...)``; ``reward``: ``(...)``.

:func:`trial_update` is the single implementation of learning. Simulation
samples x and the choice, fitting feeds a mouse's own x and choice, and the
mean-field theory averages it over x and choice.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from envs import rng

from .params import ZERO_REWARD_MODES, NetParams


#: Saturation bound of every weight (see :func:`trial_update`).
MAX_WEIGHT = 1e6


class Weights(NamedTuple):
    a: torch.Tensor  # (..., 3)
    U: torch.Tensor  # (..., 2, 3)


def flat_weights(w: Weights) -> torch.Tensor:
    """Weights as one ``(..., 9)`` tensor: a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb
    (``a`` then ``U`` row by row; the order of :data:`mouse_rl.schema.WEIGHT_COLUMNS`)."""
    return torch.cat([w.a, w.U.flatten(-2)], -1)


def weights_from_flat(v) -> Weights:
    """Inverse of :func:`flat_weights`: ``(..., 9)`` -> ``a (..., 3)``, ``U (..., 2, 3)`` (views where possible).

    Also takes a NumPy array, e.g. a table's :data:`~mouse_rl.schema.WEIGHT_COLUMNS` as ``(rows, 9)``.
    """
    return Weights(v[..., :3], v[..., 3:].reshape(*v.shape[:-1], 2, 3))


class Forward(NamedTuple):
    """Action values of both actions, each ``(..., 2)`` (index 0 = L, 1 = R)."""

    q_tot: torch.Tensor
    q_stim: torch.Tensor
    q_const: torch.Tensor


class TrialStep(NamedTuple):
    weights: Weights
    forward: Forward
    delta_tot: torch.Tensor  # (...,)
    delta_stim: torch.Tensor
    delta_const: torch.Tensor


#: Graded encoding (``encoding="graded"``): Naka-Rushton contrast response g(c) = c^n / (c^n + c50^n),
#: scaled so that g(1) = 1 (full contrast gives the "side" input). Form: Albrecht & Hamilton (1982),
#: J Neurophysiol 48:217, the standard saturating contrast response of visual cortex. n = 2: the squaring
#: (contrast energy) nonlinearity of the normalisation model (Heeger 1992, Vis Neurosci 9:181). c50 = 0.08
#: (contrast fraction): 0.0807 rounded, the value for which g(0.25) / g(0.5) = 0.929, the ratio of late-session
#: logit sensitivities [logit P(R|+c) - logit P(R|-c)] at c = 0.25 and 0.5 pooled over 24 of the Liebana et al.
#: (2025) mice (``python bench/graded_contrast.py --constants``; DAP039 has no 0.25 contrast).
#: Then g(0.0625, 0.125, 0.25, 0.5, 1) = (0.38, 0.71, 0.91, 0.98, 1.0).
GRADED_EXPONENT = 2.0
GRADED_C50 = 0.08


def graded_contrast(c, exponent: float = GRADED_EXPONENT, c50: float = GRADED_C50):
    """Saturating contrast response g(c) = (1 + c50^n) c^n / (c^n + c50^n) of contrast fractions ``c >= 0``.

    g(0) = 0, g(1) = 1, g(c50) = (1 + c50^n) / 2; torch tensor in, same dtype out. See :data:`GRADED_C50`.
    """
    cn = c.clamp(min=0) ** exponent
    return (1.0 + c50 ** exponent) * cn / (cn + c50 ** exponent)


def encode(signed_contrast: torch.Tensor, encoding: str = "side", crosstalk=None) -> torch.Tensor:
    """Network input x ``(..., 3)`` for signed contrasts ``(...)`` (mouse_rl/MODEL.md section 1).

    ``"side"`` (default): [1,0,1] left, [0,1,1] right, [0,0,1] zero; ``"magnitude"``:
    [max(-c,0), max(c,0), 1]; ``"graded"``: [g(max(-c,0)), g(max(c,0)), 1] with the saturating
    contrast response :func:`graded_contrast` (g(1) = 1, so full contrast gives the side input).

    ``crosstalk`` (an option, :data:`mouse_rl.params.PARAMS`; None or 0 = MODEL.md): g, a scalar or a tensor
    broadcastable to ``signed_contrast`` (e.g. ``(n_mice,)`` against ``(..., n_mice)``); the stimulus inputs
    become x_L + g x_R and x_R + g x_L (side encoding: left [1, g, 1], right [g, 1, 1]; zero contrast
    unchanged): each grating also drives the other side's stimulus channel.
    """
    c = signed_contrast
    if encoding == "side":
        x = torch.stack([c < 0, c > 0, torch.ones_like(c, dtype=torch.bool)], dim=-1).to(c.dtype)
    elif encoding == "magnitude":
        x = torch.stack([torch.clamp(-c, min=0), torch.clamp(c, min=0), torch.ones_like(c)], dim=-1)
    elif encoding == "graded":
        x = torch.stack([graded_contrast(-c), graded_contrast(c), torch.ones_like(c)], dim=-1)
    else:
        raise ValueError(f"encoding: must be 'side', 'magnitude' or 'graded', got {encoding!r}")
    return with_crosstalk(x, crosstalk)


def with_crosstalk(x: torch.Tensor, crosstalk) -> torch.Tensor:
    """Inputs ``x`` ``(..., 3)`` with each stimulus input also driving the other side's by ``crosstalk`` g
    (broadcastable to ``x[..., 0]``): [x_L + g x_R, x_R + g x_L, x_b]; None or 0: ``x`` itself."""
    if not torch.is_tensor(crosstalk) and inactive(crosstalk):
        return x
    g = torch.as_tensor(crosstalk, dtype=x.dtype, device=x.device)
    xl, xr, xb = x.unbind(-1)
    return torch.stack(torch.broadcast_tensors(xl + g * xr, xr + g * xl, xb), dim=-1)


def init_weights(params: NetParams, seeds: torch.Tensor | None = None, jitter: float = 1e-5) -> Weights:
    """Initial weights a = (w0 / e, w0 e, k), U = [[s0 / e, s0 e, b_L], [s0 / e, s0 e, b_R]], plus |N(0, jitter^2)|.

    e = exp(stim_skew / 2): with the default stim_skew = 0, e = 1 and the
    weights are exactly MODEL.md's (w0, w0, k) and [[s0, s0, b_L], [s0, s0, b_R]];
    a skew (an option, :data:`mouse_rl.params.PARAMS`) starts one stimulus
    channel deeper on its plateau than the other. The jitter is drawn from each
    mouse's own counter-based stream, so a mouse starts identically whether
    simulated alone or in a cohort.
    """
    p = params
    half = 0.5 * torch.as_tensor(p.stim_skew, dtype=p.w0.dtype, device=p.w0.device)
    e_L, e_R = torch.exp(-half), torch.exp(half)
    aL, aR, k, sL, sR, bL, bR = torch.broadcast_tensors(p.w0 * e_L, p.w0 * e_R, p.k, p.s0 * e_L, p.s0 * e_R, p.b_L,
                                                        p.b_R)
    a = torch.stack([aL, aR, k], dim=-1)
    U = torch.stack([torch.stack([sL, sR, bL], dim=-1), torch.stack([sL, sR, bR], dim=-1)], dim=-2)
    if seeds is not None and jitter > 0:
        noise = torch.stack([rng.normal(seeds, rng.INIT_JITTER, j, a.dtype) for j in range(9)], dim=-1)
        a = a + jitter * noise[..., :3]
        U = U + jitter * noise[..., 3:].reshape(*noise.shape[:-1], 2, 3)
    return Weights(a.abs(), U.abs())


def forward(weights: Weights, x: torch.Tensor) -> Forward:
    """Q^tot, Q^stim (constant input zeroed) and Q^const for both actions."""
    h = weights.a * x
    q_stim = (weights.U[..., :2] * h[..., None, :2]).sum(-1)
    q_const = weights.U[..., 2] * h[..., None, 2]
    return Forward(q_stim + q_const, q_stim, q_const)


def inactive(option) -> bool:
    """True where an option of the model (the crosstalk, the side preference) is off: None, or 0 for every mouse
    and needing no gradient (then the MODEL.md code path runs). Tensors: one host sync."""
    if option is None:
        return True
    if not torch.is_tensor(option):
        return not np.any(np.asarray(option, dtype=float))
    return not (option.requires_grad or torch.compiler.is_compiling() or bool((option != 0).any()))


def side_preference(t, side_pref, side_pref_tau) -> torch.Tensor:
    """Innate side preference rho exp(-t / tau) on trial ``t`` (logit units, + = Right; an option,
    :data:`mouse_rl.params.PARAMS`): ``t`` the trial index from the mouse's first trial (0, 1, ...), ``side_pref``
    rho and ``side_pref_tau`` tau (trials) tensors broadcastable against it."""
    t = torch.as_tensor(t, dtype=side_pref.dtype, device=side_pref.device)
    return side_pref * torch.exp(-t / side_pref_tau)


def preference_offsets(params, start: int, stop: int) -> torch.Tensor | None:
    """The side preference (:func:`side_preference`) of trials ``start .. stop - 1`` (rows, counted from each
    mouse's first trial) of every mouse (columns): ``(stop - start, B)`` from ``params``'s ``(B,)`` ``side_pref``
    and ``side_pref_tau``; None where the option is off (:func:`inactive`)."""
    if inactive(params.side_pref):
        return None
    t = torch.arange(start, stop, device=params.side_pref.device)[:, None]
    return side_preference(t, params.side_pref, params.side_pref_tau)


def p_right(q_tot: torch.Tensor, beta: torch.Tensor, lapse: torch.Tensor | None = None,
            offset: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax policy P(R) = lapse/2 + (1 - lapse) * sigmoid(beta (Q_R - Q_L) + offset).

    ``offset``: a logit offset (the innate side preference, :func:`side_preference`); None = 0 (MODEL.md)."""
    logits = beta * (q_tot[..., 1] - q_tot[..., 0])
    p = torch.sigmoid(logits if offset is None else logits + offset)
    return p if lapse is None else 0.5 * lapse + (1 - lapse) * p


def log_policy(q_tot: torch.Tensor, beta: torch.Tensor, lapse: torch.Tensor | None = None,
               offset: torch.Tensor | None = None) -> torch.Tensor:
    """log P(L), log P(R) as ``(..., 2)``, numerically stable for large beta * dQ; ``offset`` as in
    :func:`p_right`."""
    logits = beta * (q_tot[..., 1] - q_tot[..., 0])
    if offset is not None:
        logits = logits + offset
    logp = torch.stack([torch.nn.functional.logsigmoid(-logits), torch.nn.functional.logsigmoid(logits)], -1)
    if lapse is None:
        return logp
    lapse = lapse[..., None]
    return torch.logaddexp(torch.log(lapse / 2), torch.log1p(-lapse) + logp)


def stimulus_reward(signed_contrast, choice):
    """Reward of the task for ``choice`` (0 = L, 1 = R): 1.0 on the stimulus side, else 0.0 (mouse_rl/MODEL.md section 1).

    Defined where ``signed_contrast != 0``; at zero contrast the rewarded side is drawn at random and the
    value here (1.0 for Left) is a placeholder that callers replace (:func:`learning_reward`,
    :func:`mouse_rl.data._tidy.derive_reward`). Torch tensors or NumPy arrays; float result of the same kind.
    """
    if torch.is_tensor(choice):
        return ((choice == 1) == (signed_contrast > 0)).to(signed_contrast.dtype)
    return ((np.asarray(choice) == 1) == (np.asarray(signed_contrast, dtype=float) > 0)).astype(float)


def learning_reward(signed_contrast, reward, zero_reward: str = "expected"):
    """Reward the network learns from on each trial (reward units, 0..1; mouse_rl/MODEL.md section 3).

    At non-zero contrast: ``reward``. At zero contrast (rewarded side random,
    p = 0.5): the expected reward 0.5 when ``zero_reward="expected"``; the
    reward received when ``zero_reward="random"``, and 0.5 where that is
    unknown (NaN; real data often do not store it). ``signed_contrast`` and
    ``reward`` are torch tensors or numpy arrays of the same shape; the result
    has the type of ``reward``.
    """
    if zero_reward not in ZERO_REWARD_MODES:
        raise ValueError(f"zero_reward: must be one of {ZERO_REWARD_MODES}, got {zero_reward!r}")
    if torch.is_tensor(reward):
        zero = signed_contrast == 0
        return torch.where(zero if zero_reward == "expected" else zero & torch.isnan(reward), 0.5, reward)
    zero = np.asarray(signed_contrast) == 0
    return np.where(zero if zero_reward == "expected" else zero & np.isnan(reward), 0.5, reward)


def prediction_errors(fwd: Forward, choice: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """``reward - Q^x[choice]`` for x = tot, stim, const, as ``(..., 3)`` (reward units).

    With the learning reward (:func:`learning_reward`) these are the three
    teaching signals of :func:`trial_update`; with the reward the mouse
    actually received they are the experienced RPEs a dopamine neuron sees
    (they differ only at c = 0 under ``zero_reward="expected"``).
    """
    idx = choice.long()[..., None]
    q = torch.stack([fwd.q_tot.gather(-1, idx)[..., 0], fwd.q_stim.gather(-1, idx)[..., 0],
                     fwd.q_const.gather(-1, idx)[..., 0]], dim=-1)
    return reward[..., None] - q


def trial_update(
    weights: Weights,
    x: torch.Tensor,
    choice: torch.Tensor,
    reward: torch.Tensor,
    eta: torch.Tensor,
    positive: bool = True,
    fwd: Forward | None = None,
    delta_offset: torch.Tensor | None = None,
) -> TrialStep:
    """One trial of learning with the three teaching signals (mouse_rl/MODEL.md section 3).

    delta_tot = Rew - Q^tot[ch] trains the cortex ``a`` (all three gains);
    delta_stim = Rew - Q^stim[ch] trains U[ch, L-stim] and U[ch, R-stim];
    delta_const = Rew - Q^const[ch] trains U[ch, bias]. The unchosen row of U
    is untouched. All gradients use pre-update weights; with ``positive`` the
    new weights are replaced by their absolute values. Weights saturate at
    ``±MAX_WEIGHT``: plain SGD diverges when eta * |w|^2 is large (e.g. eta
    near 1), and saturating keeps every value finite; learning that stays in
    the model's range (|w| ~ 1) never reaches the bound.

    ``fwd`` may pass the already computed :func:`forward` of (weights, x).
    ``delta_offset`` ``(..., 3)``, if given, is added to (delta_tot, delta_stim,
    delta_const) before the weight steps (optogenetic stimulation of a
    teaching signal, :mod:`mouse_rl.dopamine.optogenetics`); None = no change.
    """
    a, U = weights
    fwd = forward(weights, x) if fwd is None else fwd
    idx = choice.long()[..., None]
    d_tot, d_stim, d_const = prediction_errors(fwd, choice, reward).unbind(-1)
    if delta_offset is not None:
        d_tot, d_stim, d_const = d_tot + delta_offset[..., 0], d_stim + delta_offset[..., 1], d_const + delta_offset[..., 2]
    U_chosen = U.gather(-2, idx[..., None].expand(*U.shape[:-2], 1, 3))[..., 0, :]
    eta_ = eta[..., None]
    new_a = a + eta_ * d_tot[..., None] * U_chosen * x
    h = a * x
    signal = torch.stack([d_stim, d_stim, d_const], dim=-1)
    row_step = eta_ * signal * h
    right = choice.to(U.dtype)
    chosen = torch.stack([1 - right, right], dim=-1)  # one-hot without one_hot's host-side range check
    new_U = U + chosen[..., :, None] * row_step[..., None, :]
    if positive:
        new_a, new_U = new_a.abs(), new_U.abs()
    new_a, new_U = new_a.clamp(-MAX_WEIGHT, MAX_WEIGHT), new_U.clamp(-MAX_WEIGHT, MAX_WEIGHT)
    return TrialStep(Weights(new_a, new_U), fwd, d_tot, d_stim, d_const)
