"""One trial of the fused simulation, written once for both fused engines (numba CPU and numba CUDA).

An accelerator's source, not a second model: :func:`trial_step` performs, in the
same floating-point order, what the reference path (:mod:`mouse_rl.rollout`)
does per trial after :func:`mouse_rl.network.encode`: :func:`~mouse_rl.network.forward`,
:func:`~mouse_rl.network.p_right`, the sampled choice, the task reward of
:class:`envs.CohortEnv`, :func:`~mouse_rl.network.learning_reward` and
:func:`~mouse_rl.network.trial_update`. The counter hash is that of
:mod:`envs.rng`. ``tests/test_sim_kernel.py`` and ``tests/test_sim_kernel_cuda.py``
check both compiled engines against the reference (float64 <= 1e-12, float32
<= 1e-5, identical choices).

The functions here are plain Python; :func:`compile_all` compiles the whole
family with one numba decorator (``numba.njit`` for the CPU kernel,
``numba.cuda.jit(device=True)`` for the GPU one), each function calling its
compiled siblings.
"""
from __future__ import annotations

import math
import types

import numpy as np

_M32 = 0xFFFFFFFF
_INV_TWO32 = 1.0 / 4294967296.0


def mix32(x):
    """The 32-bit finaliser of :func:`envs.rng._mix32` on an int64 holding a uint32."""
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


def stream_key(seed, stream):
    return mix32(seed ^ mix32((stream * 0x01000193) & _M32))


def counter_hash(key, counter):
    return mix32(key ^ mix32(mix32(counter & _M32) ^ (counter >> 32)))


def uniform(h, single):
    """(h + 0.5) / 2**32 in the working precision (float32 arithmetic when ``single``), as float64."""
    if single:
        return float((np.float32(h) + np.float32(0.5)) * np.float32(_INV_TWO32))
    return (float(h) + 0.5) * _INV_TWO32


def clip(v, bound):
    """torch.clamp(v, -bound, bound) (NaN stays NaN)."""
    if v > bound:
        return bound
    if v < -bound:
        return -bound
    return v


def settle(v, positive, wmax):
    """A weight after an update: |v| (``positive``), then saturated at +-wmax."""
    return clip(abs(v) if positive else v, wmax)


def trial_step(aL, aR, ab, ULL, ULR, ULb, URL, URR, URb, c, xL, xR, eta, beta, offset, lapse, use_lapse, u,
               zero_side, learns, settle_other, positive, zero_expected, zero, half, one, wmax, zmax):
    """One trial of one mouse: policy, choice, reward, teaching signals and (if ``learns``) the update.

    ``offset`` is added to the policy's logit (the side preference of :func:`mouse_rl.network.p_right`, computed
    by the caller with :func:`mouse_rl.network.preference_offsets`; ``zero`` without one: the same numbers bit for
    bit).
    ``u`` is the choice uniform, ``zero_side`` the rewarded side at c = 0 (1 = Right); ``zero``, ``half``,
    ``one``, ``wmax``, ``zmax`` (the largest exp argument used: 700 in float64, 80 in float32) are constants in
    the working dtype. ``settle_other``: also settle the unchosen row of U
    (needed once, on a mouse's first learning trial; from then on it is unchanged). Returns the 9 updated weights, then
    ``p, ch, rewarded, reward, qtL, qtR, qsL, qsR, qcL, qcR, d_tot, d_stim, d_const``.
    """
    hL, hR, hb = aL * xL, aR * xR, ab * one
    qsL = ULL * hL + ULR * hR
    qsR = URL * hL + URR * hR
    qcL = ULb * hb
    qcR = URb * hb
    qtL = qsL + qcL
    qtR = qsR + qcR
    z = -(beta * (qtR - qtL) + offset)
    if z > zmax:  # exp overflows to inf beyond it and P(R) is 0 either way (within 1e-34); Python's math.exp raises
        z = zmax
    p = one / (one + math.exp(z))
    if use_lapse:
        p = half * lapse + (one - lapse) * p
    right = u < p
    ch = 1 if right else 0
    rewarded = 1 if c > zero else (0 if c < zero else zero_side)
    reward = one if ch == rewarded else zero
    learn_r = half if (c == zero and zero_expected) else reward
    d_tot = learn_r - (qtR if right else qtL)
    d_stim = learn_r - (qsR if right else qsL)
    d_const = learn_r - (qcR if right else qcL)
    if learns:
        # the cortex by delta_tot, the chosen row of U by delta_stim / delta_const, both from pre-update weights
        cL = URL if right else ULL
        cR = URR if right else ULR
        cb = URb if right else ULb
        g = eta * d_tot
        gs = eta * d_stim
        gc = eta * d_const
        nL = settle(cL + gs * hL, positive, wmax)
        nR = settle(cR + gs * hR, positive, wmax)
        nb = settle(cb + gc * hb, positive, wmax)
        aL = settle(aL + g * cL * xL, positive, wmax)
        aR = settle(aR + g * cR * xR, positive, wmax)
        ab = settle(ab + g * cb * one, positive, wmax)
        if settle_other:
            ULL, ULR, ULb = settle(ULL, positive, wmax), settle(ULR, positive, wmax), settle(ULb, positive, wmax)
            URL, URR, URb = settle(URL, positive, wmax), settle(URR, positive, wmax), settle(URb, positive, wmax)
        if right:
            URL, URR, URb = nL, nR, nb
        else:
            ULL, ULR, ULb = nL, nR, nb
    return (aL, aR, ab, ULL, ULR, ULb, URL, URR, URb, p, ch, rewarded, reward, qtL, qtR, qsL, qsR, qcL, qcR,
            d_tot, d_stim, d_const)


def next_stimulus(key, t_next, thresholds, n_thresholds, current, repeat, T, reward, c, zero):
    """Index of trial ``t_next``'s contrast (:meth:`envs.CohortEnv.step`): a fresh draw from the ``STIMULUS``
    stream (``n_thresholds`` integer thresholds of the cumulative probabilities), or ``current`` again after
    an error at c != 0 within a session when ``repeat``."""
    hs = counter_hash(key, t_next)
    idx = 0
    for e in range(n_thresholds):
        idx += 1 if hs >= thresholds[e] else 0
    return current if (repeat and t_next % T != 0 and reward == zero and c != zero) else idx


_FAMILY = (mix32, stream_key, counter_hash, uniform, clip, settle, trial_step, next_stimulus)


def compile_all(decorator) -> types.SimpleNamespace:
    """The family compiled with ``decorator``; within it each function calls its compiled siblings."""
    scope = dict(globals())
    out = types.SimpleNamespace()
    for f in _FAMILY:
        clone = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__, f.__closure__)
        clone.__qualname__, clone.__module__ = f.__qualname__, f.__module__
        compiled = decorator(clone)
        scope[f.__name__] = compiled
        setattr(out, f.__name__, compiled)
    return out
