"""Fused free-running simulation of a cohort on a CUDA GPU (numba.cuda): one thread per mouse.

The GPU twin of :mod:`mouse_rl.sim_kernel`, running the same per-trial source
(:func:`mouse_rl.fused_step.trial_step` and the counter hash of :mod:`envs.rng`,
compiled as device functions): each thread keeps its mouse's 9 weights and its
session counters in registers across all trials of a call, so a trial costs
no memory traffic unless it is logged. Logs are trial-major ``(F, n, N)``
(neighbouring threads write neighbouring addresses); session summaries are
written once per session.

Why numba.cuda rather than Triton: the per-mouse loop is scalar code (one
mouse per thread, no tiles), which numba.cuda expresses directly, from the
same Python source as the CPU kernel; and numba's CUDA simulator runs this
kernel on a machine without a GPU, so CI tests it
(``tests/test_sim_kernel_cuda.py``) against :func:`mouse_rl.network.trial_update`.
On a GPU machine the same tests run on the device.

Not supported (the caller falls back to the reference path): per-trial delta
offsets or reward additions (optogenetics).
"""
from __future__ import annotations

import numpy as np

from envs import rng

from . import fused_step
from .network import MAX_WEIGHT
from .sim_kernel import LOG_CHOICES, LOG_NONE, LOG_TRIALS, LOG_TRIALS_WEIGHTS, _threshold

#: Threads per block.
THREADS = 128


def unavailable_reason() -> str | None:
    """Why numba cannot compile and launch the CUDA kernel here (None: it can: a GPU and its driver, or
    numba's CUDA simulator). Loads the CUDA target's registries, which a first compile would load: a
    numba-cuda that does not work with the installed numpy fails here, not in the middle of a simulation."""
    try:
        import importlib

        from numba import config, cuda

        if not cuda.is_available():
            return "no CUDA device or driver visible to numba"
        if not config.ENABLE_CUDASIM:
            importlib.import_module("numba.cuda.cudaimpl")
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable here, and why
        hint = ("; numba-cuda registers numpy's row_stack, removed in numpy 2.5, and is not updated for it "
                "(NVIDIA/numba-cuda#907): `pip install 'numpy<2.5'` for the fused CUDA engine"
                if "row_stack" in str(exc) else "")
        return f"numba.cuda does not work here ({type(exc).__name__}: {exc}){hint}"


def available() -> bool:
    """Whether numba can compile and launch the CUDA kernel here (see :func:`unavailable_reason`)."""
    return unavailable_reason() is None


_KERNEL = None
cuda = None  # numba.cuda, imported on first use; a module global so that numba's simulator can stand in for it


def _kernel():
    """Compile on first use (importing numba.cuda needs no GPU, compiling does)."""
    global _KERNEL, cuda
    if _KERNEL is not None:
        return _KERNEL
    from numba import cuda

    F = fused_step.compile_all(cuda.jit(device=True))
    stream_key, counter_hash, uniform, trial_step, next_stimulus = (
        F.stream_key, F.counter_hash, F.uniform, F.trial_step, F.next_stimulus)

    @cuda.jit
    def cohort(w, c_idx, eta, beta, offsets, offset, lapse, seeds, start, stop, T, contrasts, x_table, thresholds,
               n_thresholds, zero_threshold, repeat, given, given_c, given_x, valid, positive, zero_expected,
               use_lapse, single, consts, log_mode, log, summarise, summary):
        m = cuda.grid(1)
        n = w.shape[0]
        if m >= n:
            return
        zero, half, one, wmax, zmax = consts[0], consts[1], consts[2], consts[3], consts[4]
        aL, aR, ab, ULL, ULR, ULb, URL, URR, URb = w[m, 0], w[m, 1], w[m, 2], w[m, 3], w[m, 4], w[m, 5], \
            w[m, 6], w[m, 7], w[m, 8]
        ci = c_idx[m]
        k_stim = stream_key(seeds[m], rng.STIMULUS)
        k_zero = stream_key(seeds[m], rng.ZERO_REWARD_SIDE)
        k_choice = stream_key(seeds[m], rng.CHOICE)
        e, b, lp = eta[m], beta[m], lapse[m]
        fresh = True
        n_tr = n_left = n_zero = n_right = r_left = r_zero = r_right = n_rew = 0
        for t in range(start, stop):
            learns = True
            if given:
                c, xL, xR = given_c[t, m], given_x[t, m, 0], given_x[t, m, 1]
                learns = valid[t, m]
            else:
                c, xL, xR = contrasts[ci], x_table[ci, 0], x_table[ci, 1]
            if log_mode == LOG_TRIALS_WEIGHTS:
                log[13, t, m], log[14, t, m], log[15, t, m] = aL, aR, ab
                log[16, t, m], log[17, t, m], log[18, t, m] = ULL, ULR, ULb
                log[19, t, m], log[20, t, m], log[21, t, m] = URL, URR, URb
            u = uniform(counter_hash(k_choice, t), single)
            zero_side = 1 if counter_hash(k_zero, t) < zero_threshold else 0
            (aL, aR, ab, ULL, ULR, ULb, URL, URR, URb, p, ch, rewarded, reward, qtL, qtR, qsL, qsR, qcL, qcR,
             d_tot, d_stim, d_const) = trial_step(aL, aR, ab, ULL, ULR, ULb, URL, URR, URb, c, xL, xR, e, b,
                                                  offset[t - start, m] if offsets else zero, lp, use_lapse, u,
                                                  zero_side, learns, fresh, positive, zero_expected, zero, half, one,
                                                  wmax, zmax)
            if learns:
                fresh = False
            if log_mode == LOG_CHOICES:
                log[0, t, m] = ch if learns else 0
                log[1, t, m] = p
            elif log_mode >= LOG_TRIALS:
                log[0, t, m], log[1, t, m], log[2, t, m], log[3, t, m] = c, ch, reward, p
                log[4, t, m], log[5, t, m], log[6, t, m], log[7, t, m] = qtL, qtR, qsL, qsR
                log[8, t, m], log[9, t, m] = qcL, qcR
                log[10, t, m], log[11, t, m], log[12, t, m] = d_tot, d_stim, d_const
            if summarise:
                n_tr += 1
                n_rew += 1 if ch == rewarded else 0
                if c < zero:
                    n_left += 1
                    r_left += ch
                elif c > zero:
                    n_right += 1
                    r_right += ch
                else:
                    n_zero += 1
                    r_zero += ch
                if (t + 1) % T == 0 or t + 1 == stop:  # session end (or the end of this call): flush
                    s = t // T
                    summary[m, s, 0] += n_tr
                    summary[m, s, 1] += n_left
                    summary[m, s, 2] += n_zero
                    summary[m, s, 3] += n_right
                    summary[m, s, 4] += r_left
                    summary[m, s, 5] += r_zero
                    summary[m, s, 6] += r_right
                    summary[m, s, 7] += n_rew
                    n_tr = n_left = n_zero = n_right = r_left = r_zero = r_right = n_rew = 0
            if not given:
                ci = next_stimulus(k_stim, t + 1, thresholds, n_thresholds, ci, repeat, T, reward, c, zero)
        w[m, 0], w[m, 1], w[m, 2], w[m, 3], w[m, 4] = aL, aR, ab, ULL, ULR
        w[m, 5], w[m, 6], w[m, 7], w[m, 8] = ULb, URL, URR, URb
        c_idx[m] = ci

    _KERNEL = cohort
    return cohort


def simulated() -> bool:
    """Whether numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``): the CUDA kernel then runs on the CPU,
    slowly, from CPU tensors; the fused engine uses it in place of the CPU kernel (tests do this)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def run_fused_cuda(weights, contrast_index, eta, beta, lapse, seeds, start: int, stop: int, trials_per_session: int,
                   *, contrasts=(0.0,), stimulus_x=None, cumulative=(1.0,), zero_reward_p_right: float = 0.5,
                   repeat_after_error: bool = False, given_contrast=None, given_x=None, valid=None,
                   positive: bool = True, zero_reward: str = "expected", use_lapse: bool = True,
                   log_mode: int = LOG_NONE, log=None, summary=None, offset=None) -> None:
    """Run global trials ``[start, stop)`` of every mouse on the GPU, updating ``weights`` ``(N, 9)`` and
    ``contrast_index`` ``(N,)`` (torch tensors on one CUDA device; CPU tensors under numba's simulator) in place.

    Arguments as :func:`mouse_rl.sim_kernel.run_fused`, with these differences: ``weights`` sets the device and
    the working dtype; given stimuli are trial-major, ``given_contrast`` ``(n, N)``, ``given_x`` ``(n, N, 2)``,
    ``valid`` ``(n, N)``; ``log`` is a ``(F, n, N)`` tensor (trial-major: neighbouring threads write
    neighbouring addresses); ``summary`` an ``(N, S, 8)`` int64 tensor of per-session counters (added to);
    ``offset`` trial-major ``(stop - start, N)`` logit offsets (the side preference) or None.
    """
    import torch

    kernel = _kernel()
    n, dev, fdt = weights.shape[0], weights.device, weights.dtype

    def arr(v, dtype):
        return torch.as_tensor(v if torch.is_tensor(v) else np.asarray(v), dtype=dtype, device=dev).contiguous()

    given = given_contrast is not None
    if given:
        given_c, g_x = arr(given_contrast, fdt), arr(given_x, fdt)
        g_valid = arr(torch.ones(given_c.shape, dtype=torch.bool) if valid is None else valid, torch.bool)
    else:  # 1-element placeholders: the kernel does not read them
        given_c, g_x, g_valid = arr(np.zeros((1, 1)), fdt), arr(np.zeros((1, 1, 2)), fdt), arr([[True]], torch.bool)
    summarise = summary is not None and summary.shape[1] > 0
    offsets = offset is not None
    if offsets and tuple(offset.shape) != (stop - start, n):
        raise ValueError(f"offset: expected shape {(stop - start, n)} (trials start..stop-1 x mice), "
                         f"got {tuple(offset.shape)}")
    offset = arr(offset, fdt) if offsets else arr(np.zeros((1, 1)), fdt)
    log = arr(np.zeros((1, 1, 1)), fdt) if log is None or log_mode == LOG_NONE else log
    summary = summary if summarise else arr(np.zeros((1, 1, 8)), torch.int64)
    per_mouse = lambda v: arr(v, fdt).expand(n).contiguous()  # noqa: E731
    thresholds = [_threshold(e) for e in np.asarray(cumulative, dtype=np.float64)[:-1]]
    args = [weights, contrast_index, per_mouse(eta), per_mouse(beta), offsets, offset, per_mouse(lapse),
            arr(seeds, torch.int64), int(start), int(stop), int(trials_per_session),
            arr(np.asarray(contrasts, np.float64), fdt),
            arr(np.zeros((len(contrasts), 2)) if stimulus_x is None else stimulus_x, fdt),
            arr(thresholds or [0], torch.int64), len(thresholds), _threshold(zero_reward_p_right),
            bool(repeat_after_error), given, given_c, g_x, g_valid, bool(positive), zero_reward == "expected",
            bool(use_lapse), fdt == torch.float32, arr([0.0, 0.5, 1.0, MAX_WEIGHT, 80.0 if fdt == torch.float32 else 700.0], fdt), int(log_mode), log,
            summarise, summary]
    if dev.type == "cuda":
        stream = cuda.external_stream(torch.cuda.current_stream(dev).cuda_stream)
        args = [cuda.as_cuda_array(a) if torch.is_tensor(a) else a for a in args]
    else:  # numba's simulator: numpy views share the tensors' memory, so in-place updates land in them
        stream = 0
        args = [a.numpy() if torch.is_tensor(a) else a for a in args]
    kernel[(n + THREADS - 1) // THREADS, THREADS, stream](*args)
