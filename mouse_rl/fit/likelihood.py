"""Exact, differentiable choice likelihood of the network, teacher-forced on a mouse's own trials.

The network is unrolled by the one rollout of simulation and fitting
(:func:`mouse_rl.rollout.rollout`, learning by :func:`mouse_rl.network.trial_update`): the
input is the mouse's own signed contrast, the chosen action its own choice,
and the reward the one it received (0.5 at zero contrast by default, see
:func:`mouse_rl.fit.batch.learning_reward`). The choice probability of each
trial comes from the pre-update weights through
:func:`mouse_rl.network.log_policy` (plus the innate side preference of the trial's index, an option).
All mice (and restarts) run in one batched unroll; trials where ``learn`` is False leave the weights unchanged
(``torch.where(learn, new, old)``), and only trials in ``score`` count.

Engines: ``"eager"`` (default) runs one PyTorch call per trial;
``"compile"`` runs chunks of trials through :func:`torch.compile` (the same
Python code, fused), ~7x faster per trial on CPU after a one-off compile of
~1 minute; it supports first derivatives only.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from ..network import (Weights, encode, forward, init_weights, log_policy, p_right, prediction_errors,
                       preference_offsets)
from ..network import weights_from_flat
from ..params import ModelParams, NetParams
from ..rollout import GivenChoices, GivenTrials, Trial, rollout
from ..schema import WEIGHT_COLUMNS
from .batch import TrialBatch, make_batch, prepare_trials

ENGINES = ("eager", "compile")
_CHUNK = 16


class Unroll(NamedTuple):
    """Per-trial read-outs of a teacher-forced run, each ``(T, B, ...)``.

    ``q_*`` are the action values (L, R) that produced the choice (pre-update
    weights); ``a``/``U`` those pre-update weights (only with ``record``).
    """

    q_tot: torch.Tensor
    q_stim: torch.Tensor | None = None
    q_const: torch.Tensor | None = None
    delta_tot: torch.Tensor | None = None
    delta_stim: torch.Tensor | None = None
    delta_const: torch.Tensor | None = None
    a: torch.Tensor | None = None
    U: torch.Tensor | None = None


def _steps(a, U, c, choice, reward, learn, params: NetParams, encoding: str, positive: bool, record: bool):
    """Teacher-forced :func:`mouse_rl.rollout.rollout` over ``len(c)`` trials; final (a, U) and stacked read-outs."""
    outs = []

    def keep(tr: Trial) -> None:
        f, s, w = tr.forward, tr.step, tr.weights
        outs.append((f.q_tot, f.q_stim, f.q_const, s.delta_tot, s.delta_stim, s.delta_const, w.a, w.U)
                    if record else (f.q_tot,))

    a, U = rollout(Weights(a, U), params, GivenTrials(c, reward), GivenChoices(choice), 0, c.shape[0],
                   encoding=encoding, positive=positive, zero_reward=None, use_lapse=False, learn=learn,
                   recorder=keep)
    return a, U, [torch.stack(z) for z in zip(*outs)]


_compiled = {}


def _compiled_steps(positive: bool):
    key = positive
    if key not in _compiled:
        def chunk(a, U, c, choice, reward, learn, params, encoding):
            return _steps(a, U, c, choice, reward, learn, params, encoding, positive, False)
        _compiled[key] = torch.compile(chunk, dynamic=False)
    return _compiled[key]


def unroll(batch: TrialBatch, params: NetParams, encoding: str = "side", positive: bool = True,
           learn: torch.Tensor | None = None, record: bool = False, engine: str = "eager") -> Unroll:
    """Teacher-forced run of the network over a :class:`TrialBatch`.

    Parameters
    ----------
    batch : padded trials, ``(T, B)``.
    params : :class:`NetParams` of ``(B,)`` tensors (may require grad).
    encoding, positive : model options (see :class:`ModelParams`).
    learn : ``(T, B)`` bool, trials whose update is applied (default ``batch.valid``).
    record : also return Q^stim, Q^const, the three deltas and the pre-update weights.
    engine : ``"eager"`` or ``"compile"`` (see module docstring; not with ``record``).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: must be one of {ENGINES}, got {engine!r}")
    learn = batch.valid if learn is None else learn & batch.valid
    c = batch.contrast
    a, U = init_weights(params)  # deterministic: no jitter when teacher-forced
    if engine == "eager" or record:
        _, _, outs = _steps(a, U, c, batch.choice, batch.reward, learn, params, encoding, positive, record)
        return Unroll(*outs)
    T = c.shape[0]
    pad = (-T) % _CHUNK
    if pad:  # padded trials: no learning, dropped below
        z = lambda t: torch.cat([t, t[-1:].expand(pad, *t.shape[1:]) * 0])  # noqa: E731
        c, choice, reward = z(c), z(batch.choice), z(batch.reward)
        learn = torch.cat([learn, torch.zeros(pad, *learn.shape[1:], dtype=torch.bool, device=learn.device)])
    else:
        choice, reward = batch.choice, batch.reward
    f = _compiled_steps(positive)
    qs = []
    for t0 in range(0, T + pad, _CHUNK):
        s = slice(t0, t0 + _CHUNK)
        a, U, (q,) = f(a, U, c[s], choice[s], reward[s], learn[s], params, encoding)
        qs.append(q)
    return Unroll(torch.cat(qs)[:T])


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over trials of per-trial values ``(T, B)`` where ``mask`` ``(T, B)`` is True (``(B,)``; differentiable)."""
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(0)


def _lapse(params: NetParams, use_lapse: bool):
    return params.lapse if use_lapse else None


def choice_logprob(batch: TrialBatch, params: NetParams, encoding: str = "side", positive: bool = True,
                   learn: torch.Tensor | None = None, use_lapse: bool = True, engine: str = "eager") -> torch.Tensor:
    """log P(observed choice) of every trial ``(T, B)`` in nats (0 on padding)."""
    run = unroll(batch, params, encoding, positive, learn, engine=engine)
    offset = preference_offsets(params, 0, batch.shape[0])
    logp = log_policy(run.q_tot, params.beta, _lapse(params, use_lapse), offset)
    lp = logp.gather(-1, batch.choice[..., None])[..., 0]
    return torch.where(batch.valid, lp, torch.zeros_like(lp))


def log_likelihood(trials, params, *, score: torch.Tensor | None = None, learn: torch.Tensor | None = None,
                   encoding: str = "side", positive: bool = True, zero_reward: str = "expected",
                   use_lapse: bool | None = None, engine: str = "eager", device=None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-mouse log-likelihood of the mice's own choices (nats), differentiable in ``params``.

    Parameters
    ----------
    trials : trial table (mice sorted by name) or a prepared :class:`TrialBatch`.
    params : :class:`NetParams` of ``(B,)`` tensors (B = number of mice, or of
        batch columns), or a :class:`ModelParams` (scalars or per-mouse values).
    score : ``(T, B)`` bool, trials whose choice counts (default all valid trials).
    learn : ``(T, B)`` bool, trials the learner learns from (default all valid trials).
    encoding, positive, zero_reward : model options (a ``ModelParams`` overrides them).
    use_lapse : apply the lapse (default: True unless every lapse is 0).
    engine : ``"eager"`` or ``"compile"``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` sum over scored trials of log P(choice), in nats.
    """
    if isinstance(params, ModelParams):
        encoding, positive, zero_reward = params.encoding, params.positive, params.zero_reward
    batch = trials if isinstance(trials, TrialBatch) else make_batch(trials, zero_reward, device, dtype)
    if isinstance(params, ModelParams):
        params = params.tensors(batch.shape[1], device=batch.contrast.device, dtype=batch.contrast.dtype)
    if use_lapse is None:
        use_lapse = bool(params.lapse.requires_grad or (params.lapse != 0).any())
    lp = choice_logprob(batch, params, encoding, positive, learn, use_lapse, engine)
    return lp.sum(0) if score is None else masked_sum(lp, score & batch.valid)


def _recorded_by_kernel(batch: TrialBatch, params: NetParams, encoding: str, positive: bool,
                       learn: torch.Tensor | None) -> Unroll:
    """:func:`unroll` with ``record=True`` on the CPU in float64, by the fused kernel
    (:func:`mouse_rl.fit.kernel.nll_derivatives`, tested against the reference rollout): one pass gives every
    trial's pre-update weights, then the action values and teaching signals of all trials at once
    (:func:`mouse_rl.network.forward`, :func:`mouse_rl.network.prediction_errors`)."""
    from .kernel import nll_derivatives

    learn = batch.valid if learn is None else learn & batch.valid
    T = lambda t: np.ascontiguousarray(t.transpose(0, 1).numpy())  # noqa: E731  (T, B, ...) -> (B, T, ...)
    B = batch.shape[1]
    # the kernel applies the crosstalk (a column of theta) itself
    theta = np.column_stack([np.broadcast_to(torch.as_tensor(v).detach().cpu().numpy(), (B,)) for v in params])
    *_, w = nll_derivatives(T(encode(batch.contrast, encoding)), T(batch.choice), T(batch.reward), T(learn),
                            T(batch.valid), batch.n_trials.numpy(), theta, positive, True, order=0,
                            trial_weights=True)
    weights = weights_from_flat(torch.from_numpy(w).transpose(0, 1))
    fwd = forward(weights, encode(batch.contrast, encoding, params.crosstalk))
    delta = prediction_errors(fwd, batch.choice, batch.reward)
    return Unroll(fwd.q_tot, fwd.q_stim, fwd.q_const, delta[..., 0], delta[..., 1], delta[..., 2], weights.a, weights.U)


def teacher_forced_values(batch: TrialBatch, params: NetParams, encoding: str = "side", positive: bool = True):
    """The policy's terms of every trial under teacher forcing, by the fused kernel (CPU, float64).

    Returns numpy ``(value, offset, lapse)``: ``value`` ``(T, B)`` beta (Q_R - Q_L) (the part a session gain
    scales, :mod:`mouse_rl.fit.session_effects`), ``offset`` ``(T, B)`` the side preference's logit (zeros
    without one) and ``lapse`` ``(B,)``; the network learns from every valid trial.
    """
    _check_kernel_batch(batch, "teacher_forced_values")
    with torch.no_grad():
        run = _recorded_by_kernel(batch, params, encoding, positive, None)
        value = (params.beta * (run.q_tot[..., 1] - run.q_tot[..., 0])).numpy()
        offset = preference_offsets(params, 0, batch.shape[0])
    return value, np.zeros_like(value) if offset is None else offset.numpy(), params.lapse.detach().numpy()


def teacher_forced_p_right(batch: TrialBatch, params: NetParams, encoding: str = "side",
                           positive: bool = True) -> np.ndarray:
    """P(Right) ``(T, B)`` of every trial under teacher forcing (the policy :func:`mouse_rl.network.p_right` on
    the recorded action values, as :func:`teacher_forced` reads it), by the fused kernel (CPU, float64); the
    network learns from every valid trial."""
    _check_kernel_batch(batch, "teacher_forced_p_right")
    with torch.no_grad():
        run = _recorded_by_kernel(batch, params, encoding, positive, None)
        return p_right(run.q_tot, params.beta, params.lapse, preference_offsets(params, 0, batch.shape[0])).numpy()


def _check_kernel_batch(batch: TrialBatch, caller: str) -> None:
    if batch.contrast.device.type != "cpu" or batch.contrast.dtype != torch.float64:
        raise ValueError(f"batch: {caller} runs the CPU kernel in float64, got a "
                         f"{batch.contrast.dtype} batch on {batch.contrast.device}")


def teacher_forced(trials: pd.DataFrame, params, *, encoding: str = "side", positive: bool = True,
                   zero_reward: str = "expected", learn_rows=None, device=None,
                   dtype: torch.dtype = torch.float64, threads: int | None = 1) -> pd.DataFrame:
    """Per-trial read-outs of the network run on each mouse's own trials.

    Parameters
    ----------
    trials : trial table; mice are ordered by name (the order of ``params``).
    params : :class:`ModelParams` (scalars or one value per mouse, in sorted
        mouse order), or :class:`NetParams` tensors, or a DataFrame with a
        ``mouse`` column and one column per parameter (e.g. ``FitResult.params``).
    learn_rows : optional bool array over the prepared table's rows: trials the
        learner learns from (default all).
    threads : torch intra-op CPU threads during the unroll, the caller's setting restored
        on return (``None``: unchanged; see :func:`mouse_rl.fit.optim.torch_threads`).

    Returns
    -------
    pandas.DataFrame
        The prepared (validated, sorted) trial table plus ``p_right``, ``logp_choice``
        (nats), ``q_{tot,stim,const}_{L,R}``, ``delta_{tot,stim,const}`` and the
        pre-update weights ``a_L ... U_Rb`` of :data:`mouse_rl.schema.WEIGHT_COLUMNS`.
    """
    df = prepare_trials(trials)
    if isinstance(params, ModelParams):
        encoding, positive, zero_reward = params.encoding, params.positive, params.zero_reward
    batch = make_batch(df, zero_reward, device, dtype, prepared=True)
    p = params_tensors(params, batch)
    learn = None if learn_rows is None else batch.mask_from_rows(learn_rows)
    from .optim import torch_threads

    with torch.no_grad(), torch_threads(threads):
        if batch.contrast.device.type == "cpu" and batch.contrast.dtype == torch.float64:
            run = _recorded_by_kernel(batch, p, encoding, positive, learn)
        else:
            run = unroll(batch, p, encoding, positive, learn, record=True)
        offset = preference_offsets(p, 0, batch.shape[0])
        pr = p_right(run.q_tot, p.beta, p.lapse, offset)
        logp = log_policy(run.q_tot, p.beta, p.lapse, offset).gather(-1, batch.choice[..., None])[..., 0]
    out = df.copy()
    out["p_right"] = batch.to_rows(pr)
    out["logp_choice"] = batch.to_rows(logp)
    for name in ("q_tot", "q_stim", "q_const"):
        v = batch.to_rows(getattr(run, name))
        out[f"{name}_L"], out[f"{name}_R"] = v[:, 0], v[:, 1]
    for name in ("delta_tot", "delta_stim", "delta_const"):
        out[name] = batch.to_rows(getattr(run, name))
    w = batch.to_rows(torch.cat([run.a, run.U.flatten(-2)], dim=-1))
    for j, col in enumerate(WEIGHT_COLUMNS):
        out[col] = w[:, j]
    return out


def params_tensors(params, batch: TrialBatch) -> NetParams:
    """Coerce ModelParams / NetParams / per-mouse DataFrame to ``(B,)`` tensors for ``batch``."""
    B, dev, dt = batch.shape[1], batch.contrast.device, batch.contrast.dtype
    if isinstance(params, NetParams):
        return NetParams(*(torch.as_tensor(v, device=dev, dtype=dt).detach().expand(B) for v in params))
    if isinstance(params, pd.DataFrame):
        table = params.set_index(params["mouse"].astype(str))
        missing = [m for m in batch.mice if m not in table.index]
        if missing:
            raise ValueError(f"params: no row for mice {missing}")
        d = ModelParams()
        vals = {f: np.array(table.loc[batch.mice, f], dtype=float) if f in table else getattr(d, f)
                for f in NetParams._fields}
        params = ModelParams(**vals)
    if isinstance(params, ModelParams):
        return params.tensors(B, device=dev, dtype=dt)
    raise TypeError(f"params: expected ModelParams, NetParams or DataFrame, got {type(params).__name__}")
