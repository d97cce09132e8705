"""Fused free-running simulation of a cohort (numba, CPU): one compiled loop per mouse, mice in parallel.

An accelerator, not a second model. Each mouse's weights stay in local
variables across its trials; mice run in parallel (``prange``), each mouse's
trials on one thread. Per trial it performs, in the same floating-point order,
the operations of the reference path (:mod:`mouse_rl.rollout`) after
:func:`mouse_rl.network.encode` (whose inputs the caller passes in): :func:`~mouse_rl.network.forward`,
:func:`~mouse_rl.network.p_right`, the sampled choice, the task reward of
:class:`envs.CohortEnv`, :func:`~mouse_rl.network.learning_reward` and
:func:`~mouse_rl.network.trial_update`. The counter-based per-mouse streams of
:mod:`envs.rng` (stimulus, zero-contrast reward side, choice) are computed
inside the loop with the same hash, so choices, rewards and weights are those
of the reference path; P(R) differs only by the last bit of ``exp``
(``tests/test_sim_kernel.py`` checks float64 to 1e-12 and float32 to 1e-5
over random weights, inputs and parameters).

Not supported (the caller falls back to the reference path): per-trial delta
offsets or reward additions (optogenetics), devices other than the CPU. Like
the inputs, the policy's per-trial logit offsets (the side preference) come
from the caller (:func:`mouse_rl.network.preference_offsets`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np
import torch

from envs import rng

from . import fused_step, network
from .network import MAX_WEIGHT
from .numba_cache import source_fingerprint

#: Log layouts (``log_mode``): nothing; (choice, P(R)) only; the simulation's trial fields; those plus weights.
LOG_NONE, LOG_CHOICES, LOG_TRIALS, LOG_TRIALS_WEIGHTS = 0, 1, 2, 3
#: Fields of ``LOG_TRIALS`` in order (``LOG_TRIALS_WEIGHTS`` appends the 9 pre-update weights).
TRIAL_FIELDS = ("signed_contrast", "choice", "reward", "p_right", "q_tot_L", "q_tot_R", "q_stim_L", "q_stim_R",
                "q_const_L", "q_const_R", "delta_tot", "delta_stim", "delta_const")
#: Per-session counters of ``summary`` in order.
SUMMARY_FIELDS = ("n_trials", "n_left", "n_zero", "n_right", "right_left", "right_zero", "right_right", "rewarded")


_F = fused_step.compile_all(nb.njit(cache=True, inline="always"))
_stream_key, _counter_hash, _uniform, _trial_step, _next_stimulus = (
    _F.stream_key, _F.counter_hash, _F.uniform, _F.trial_step, _F.next_stimulus)


#: The other sources the kernels compile in (their cache is keyed on them, :mod:`mouse_rl.numba_cache`).
_SOURCES = source_fingerprint(fused_step, network, rng)

#: Mice a thread advances together, trial by trial: independent dependency chains overlap in the CPU.
BLOCK = 16


def _make_block(sources: str):
    """The per-block loop, its numba cache keyed on ``sources`` (:mod:`mouse_rl.numba_cache`)."""

    @nb.njit(cache=True)
    def _block(m0, m1, w, c_idx, eta, beta, offset, lapse, seeds, start, stop, T, contrasts, x_table,
               stim_thresholds, zero_threshold, repeat, given_c, given_x, valid, positive, zero_expected, use_lapse,
               single, consts, log_mode, log, summary, corrections, forced):
        """Run mice ``m0..m1-1`` over global trials ``[start, stop)``; ``w`` (N, 9) and ``c_idx`` (N,) updated in place.

        Random draws compare the 32-bit hash with integer thresholds where the reference compares
        ``(h + 0.5) / 2**32`` in float64 with a probability: the same decision, exactly.
        """
        sources  # noqa: B018 (in numba's cache key: see mouse_rl.numba_cache)
        zero, half, one, wmax, zmax = consts[0], consts[1], consts[2], consts[3], consts[4]
        K = m1 - m0
        W = np.empty((9, K), consts.dtype)  # weights a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb (mouse-minor)
        C = np.empty(K, np.int64)
        keys = np.empty((4, K), np.int64)
        for j in range(K):
            W[:, j] = w[m0 + j]
            C[j] = c_idx[m0 + j]
            keys[0, j] = _stream_key(seeds[m0 + j], rng.STIMULUS)
            keys[1, j] = _stream_key(seeds[m0 + j], rng.ZERO_REWARD_SIDE)
            keys[2, j] = _stream_key(seeds[m0 + j], rng.CHOICE)
            keys[3, j] = _stream_key(seeds[m0 + j], rng.CORRECTION)
        given = given_c.shape[1] > 0
        offsets = offset.shape[1] > 0
        fresh = np.ones(K, np.bool_)
        for t in range(start, stop):
            s = t // T
            for j in range(K):
                m = m0 + j
                learns = True
                if given:
                    c, xL, xR = given_c[m, t], given_x[m, t, 0], given_x[m, t, 1]
                    learns = valid[m, t]
                else:
                    c, xL, xR = contrasts[C[j]], x_table[C[j], 0], x_table[C[j], 1]
                if log_mode == LOG_TRIALS_WEIGHTS:  # the weights this trial's choice is made with
                    for i in range(9):
                        log[13 + i, m, t] = W[i, j]
                u = _uniform(_counter_hash(keys[2, j], t), single)
                zero_side = 1 if _counter_hash(keys[1, j], t) < zero_threshold else 0
                (aL, aR, ab, ULL, ULR, ULb, URL, URR, URb, p, ch, rewarded,
                 reward, qtL, qtR, qsL, qsR, qcL, qcR, d_tot, d_stim, d_const) = _trial_step(
                    W[0, j], W[1, j], W[2, j], W[3, j], W[4, j], W[5, j], W[6, j], W[7, j], W[8, j], c, xL, xR,
                    eta[m], beta[m], offset[m, t - start] if offsets else zero, lapse[m], use_lapse, u, zero_side,
                    learns, fresh[j], positive, zero_expected, zero, half, one, wmax, zmax)
                if learns:
                    W[0, j], W[1, j], W[2, j], W[3, j], W[4, j] = aL, aR, ab, ULL, ULR
                    W[5, j], W[6, j], W[7, j], W[8, j] = ULb, URL, URR, URb
                    if fresh[j]:
                        fresh[j] = False
                if corrections > 0 and given and learns and c != zero and reward == zero:
                    # hidden correction trials: the same stimulus until a correct choice (not logged)
                    for k in range(corrections):
                        if forced:  # the correct choice (u = 0 < P(R) for Right, u = 1 >= P(R) for Left)
                            u = zero if c > zero else one
                        else:
                            u = _uniform(_counter_hash(keys[3, j], t * rng.MAX_CORRECTIONS + k), single)
                        hidden = _trial_step(
                            W[0, j], W[1, j], W[2, j], W[3, j], W[4, j], W[5, j], W[6, j], W[7, j], W[8, j], c, xL,
                            xR, eta[m], beta[m], offset[m, t - start] if offsets else zero, lapse[m], use_lapse, u,
                            zero_side, True, False, positive, zero_expected, zero, half, one, wmax, zmax)
                        W[0, j], W[1, j], W[2, j] = hidden[0], hidden[1], hidden[2]
                        W[3, j], W[4, j], W[5, j] = hidden[3], hidden[4], hidden[5]
                        W[6, j], W[7, j], W[8, j] = hidden[6], hidden[7], hidden[8]
                        if hidden[12] != zero:
                            break
                if log_mode == LOG_CHOICES:
                    log[0, m, t] = ch if learns else 0
                    log[1, m, t] = p
                elif log_mode >= LOG_TRIALS:
                    log[0, m, t] = c
                    log[1, m, t] = ch
                    log[2, m, t] = reward
                    log[3, m, t] = p
                    log[4, m, t] = qtL
                    log[5, m, t] = qtR
                    log[6, m, t] = qsL
                    log[7, m, t] = qsR
                    log[8, m, t] = qcL
                    log[9, m, t] = qcR
                    log[10, m, t] = d_tot
                    log[11, m, t] = d_stim
                    log[12, m, t] = d_const
                if summary.shape[1] > 0:
                    cls = 1 if c < zero else (3 if c > zero else 2)
                    summary[m, s, 0] += 1
                    summary[m, s, cls] += 1
                    summary[m, s, cls + 3] += ch
                    summary[m, s, 7] += 1 if ch == rewarded else 0
                if not given:
                    C[j] = _next_stimulus(keys[0, j], t + 1, stim_thresholds, stim_thresholds.shape[0], C[j], repeat,
                                          T, reward, c, zero)
        for j in range(K):
            w[m0 + j] = W[:, j]
            c_idx[m0 + j] = C[j]

    return _block


_block = _make_block(_SOURCES)


def _make_cohort(sources: str):
    """Blocks of mice in parallel, its numba cache keyed on ``sources`` (:mod:`mouse_rl.numba_cache`)."""

    @nb.njit(cache=True, parallel=True)
    def _cohort(w, c_idx, eta, beta, offset, lapse, seeds, start, stop, T, contrasts, x_table, stim_thresholds,
                zero_threshold, repeat, given_c, given_x, valid, positive, zero_expected, use_lapse, single, consts,
                log_mode, log, summary, corrections, forced):
        sources  # noqa: B018 (in numba's cache key: see mouse_rl.numba_cache)
        n = w.shape[0]
        for b in nb.prange((n + BLOCK - 1) // BLOCK):
            _block(b * BLOCK, min(n, (b + 1) * BLOCK), w, c_idx, eta, beta, offset, lapse, seeds, start, stop, T,
                   contrasts, x_table, stim_thresholds, zero_threshold, repeat, given_c, given_x, valid, positive,
                   zero_expected, use_lapse, single, consts, log_mode, log, summary, corrections, forced)

    return _cohort


_cohort = _make_cohort(_SOURCES)


def _threshold(probability: float) -> int:
    """Smallest 32-bit hash h with (h + 0.5) / 2**32 >= probability (exact: all terms are exact in float64)."""
    return int(min(max(math.ceil(float(probability) * 4294967296.0 - 0.5), 0), 4294967296))


class FusedState(NamedTuple):
    """Per-mouse state the fused loop carries between calls (updated in place).

    weights : ``(N, 9)`` (a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb), in the working dtype.
    contrast_index : ``(N,)`` int64 index into the task's contrasts of the next trial (unused with given stimuli).
    """

    weights: np.ndarray
    contrast_index: np.ndarray


def run_fused(state: FusedState, eta, beta, lapse, seeds, start: int, stop: int, trials_per_session: int, *,
              contrasts=(0.0,), stimulus_x=None, cumulative=(1.0,), zero_reward_p_right: float = 0.5,
              repeat_after_error: bool = False, given_contrast: np.ndarray | None = None,
              given_x: np.ndarray | None = None, valid: np.ndarray | None = None, positive: bool = True,
              zero_reward: str = "expected", use_lapse: bool = True, log_mode: int = LOG_NONE,
              log: np.ndarray | None = None, summary: np.ndarray | None = None, offset: np.ndarray | None = None,
              corrections: int = 0, corrections_forced: bool = False, threads: int | None = None) -> None:
    """Run global trials ``[start, stop)`` of every mouse, updating ``state`` in place.

    The network inputs come from the caller (computed with :func:`mouse_rl.network.encode`, the one
    definition of the encoding): ``stimulus_x`` for the task's contrasts, or ``given_x`` per trial.

    Parameters
    ----------
    state : :class:`FusedState` (float32 or float64 weights; that dtype is the working precision).
    eta, beta, lapse : ``(N,)`` per-mouse learning rate, inverse temperature (1 / value unit), lapse rate.
    seeds : ``(N,)`` int64 per-mouse seeds (uint32 values, :mod:`envs.rng`).
    start, stop : global trial range; the counters of the random streams.
    trials_per_session : T (sessions of the summaries; repeat trials stop at a session end).
    contrasts, stimulus_x, cumulative : the task's signed contrasts ``(K,)``, their stimulus inputs
        ``(K, 2)`` (x_L, x_R) and cumulative probabilities ``(K,)``: stimuli are drawn from the
        ``STIMULUS`` stream, unless ``given_contrast`` ``(N, n)`` and ``given_x`` ``(N, n, 2)``
        (mouse-major) give them.
    zero_reward_p_right : P(Right rewarded) at c = 0 (``ZERO_REWARD_SIDE`` stream).
    repeat_after_error : repeat the contrast after an error at c != 0 within a session.
    valid : ``(N, n)`` bool with given stimuli: trials that exist (others neither learn nor choose).
    positive, zero_reward, use_lapse : model options (:class:`mouse_rl.params.ModelParams`).
    log_mode, log : ``LOG_*`` layout and its ``(F, N, n)`` array (working dtype), indexed by global trial.
    summary : ``(N, S, 8)`` int64 per-session counters (:data:`SUMMARY_FIELDS`), or None.
    offset : ``(N, stop - start)`` logit offsets of trials ``start .. stop - 1`` (the side preference,
        :func:`mouse_rl.network.side_preference`), or None (MODEL.md's policy).
    corrections : with given stimuli, the most hidden correction trials after an error at c != 0 (0 = none,
        at most :data:`envs.rng.MAX_CORRECTIONS`): the same stimulus until a correct choice, each trial learned
        from and not logged, with trial t's policy offset; choices from the ``CORRECTION`` stream
        (:func:`mouse_rl.simulate.simulate_on_stimuli`).
    corrections_forced : the hidden trials choose correctly (so one per error), instead of sampling.
    threads : numba threads for this call (default: numba's current setting); restored afterwards.
    """
    w, c_idx = state
    n, dt = w.shape[0], w.dtype
    if not 0 <= int(corrections) <= rng.MAX_CORRECTIONS:
        raise ValueError(f"corrections: expected 0 .. {rng.MAX_CORRECTIONS}, got {corrections!r}")
    consts = np.array([0.0, 0.5, 1.0, MAX_WEIGHT, 80.0 if dt == np.float32 else 700.0], dtype=dt)
    if given_contrast is None:
        given_c, given_x, valid = np.zeros((n, 0), dt), np.zeros((n, 0, 2), dt), np.ones((n, 0), np.bool_)
    else:
        given_c, given_x = np.ascontiguousarray(given_contrast, dt), np.ascontiguousarray(given_x, dt)
        valid = np.ascontiguousarray(np.ones(given_c.shape, np.bool_) if valid is None else valid, np.bool_)
    x_table = np.zeros((len(contrasts), 2), dt) if stimulus_x is None else np.ascontiguousarray(stimulus_x, dt)
    log = np.zeros((0, n, 0), dtype=dt) if log is None else log
    summary = np.zeros((n, 0, 8), dtype=np.int64) if summary is None else summary
    if offset is None:
        offset = np.zeros((n, 0), dt)
    else:
        offset = np.ascontiguousarray(offset, dt)
        if offset.shape != (n, stop - start):
            raise ValueError(f"offset: expected shape {(n, stop - start)} (mice x trials start..stop-1), "
                             f"got {offset.shape}")
    per_mouse = lambda v: np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dt), (n,)))  # noqa: E731
    stim_thresholds = np.array([_threshold(e) for e in np.asarray(cumulative, dtype=np.float64)[:-1]], np.int64)
    args = (w, c_idx, per_mouse(eta), per_mouse(beta), offset, per_mouse(lapse), np.asarray(seeds, dtype=np.int64),
            int(start), int(stop), int(trials_per_session), np.asarray(contrasts, dtype=dt), x_table,
            stim_thresholds, _threshold(zero_reward_p_right), bool(repeat_after_error), given_c, given_x, valid,
            bool(positive), zero_reward == "expected", bool(use_lapse), dt == np.float32, consts, int(log_mode),
            log, summary, int(corrections), bool(corrections_forced))
    torch_threads = torch.get_num_threads()  # first: starting numba's OpenMP layer may change it
    old_threads, old_chunk = nb.get_num_threads(), nb.get_parallel_chunksize()
    try:
        if threads is not None:
            nb.set_num_threads(max(1, min(int(threads), nb.config.NUMBA_NUM_THREADS)))
        nb.set_parallel_chunksize(1)  # blocks are handed out as threads come free: a busy core takes fewer
        _cohort(*args)
    finally:
        nb.set_parallel_chunksize(old_chunk)
        nb.set_num_threads(old_threads)
        if torch.get_num_threads() != torch_threads:  # numba's OpenMP layer shares torch's thread setting
            torch.set_num_threads(torch_threads)
