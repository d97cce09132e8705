"""The model network (mouse_rl/MODEL.md) trained on the IBL protocol, a whole cohort in one batched run.

Each trial: x = ``mouse_rl.network.encode`` (the model's input encoding) of
the signed contrast the :class:`envs.ibl_cohort.IBLCohortEnv` shows; P(R) from
``forward`` and ``p_right`` (with the side preference of the trial's index, an
option); the choice drawn from the mouse's own ``CHOICE`` stream
(:mod:`envs.rng`); the reward from the env; learning by ``trial_update`` from
``learning_reward`` (the zero-contrast rule of the model, ``zero_reward``). The curriculum advances on the simulated mouse's own
performance (training phases within sessions, the biased stage after the
training criterion).
"""
from __future__ import annotations

import pandas as pd
import torch

from . import rng
from .ibl_cohort import IBLCohortEnv

__all__ = ["simulate_ibl_cohort"]


def simulate_ibl_cohort(n_mice: int = 10, n_sessions: int = 20, params=None, trials_per_session: int = 600,
                        seed: int = 0, dtype=torch.float64, **env_kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``n_mice`` network mice for ``n_sessions`` sessions of the IBL protocol.

    Parameters
    ----------
    n_mice, n_sessions : cohort size and sessions (counts).
    params : :class:`mouse_rl.params.ModelParams` (default: the MODEL.md defaults; per-mouse values allowed).
    trials_per_session : trials per session (count).
    seed : cohort seed in [0, 2**32 - 1]; mouse i gets ``envs.rng.mouse_seeds(seed, n_mice)[i]``.
    dtype : float dtype of the network.
    **env_kwargs : passed to :class:`envs.ibl_cohort.IBLCohortEnv` (``start_phase``, ``debias``,
        ``biased_after``, ``no_go``...).

    Returns
    -------
    trials : pandas.DataFrame
        :meth:`IBLCohortEnv.trial_table` plus ``p_right`` (the network's P(Right) on that trial).
    status : pandas.DataFrame
        One row per mouse and session: ``mouse``, ``session``, ``status`` (IBL status after the session,
        ``"biased"`` once in the biased stage).
    """
    from mouse_rl.network import (encode, forward, inactive, init_weights, learning_reward, p_right, side_preference,
                                  trial_update)
    from mouse_rl.params import ModelParams

    params = params or ModelParams()
    for name, value in (("n_mice", n_mice), ("n_sessions", n_sessions)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    seeds = rng.mouse_seeds(seed, n_mice)
    env = IBLCohortEnv(n_mice, seeds=seeds, trials_per_session=trials_per_session, dtype=dtype, **env_kwargs)
    p = params.tensors(n_mice, dtype=dtype)
    weights = init_weights(p, env.seeds, params.jitter)
    _, info = env.reset()
    choice_key = rng.stream_key(env.seeds, rng.CHOICE)
    p_log = []
    with torch.no_grad():
        pref = not inactive(p.side_pref)
        for t in range(n_sessions * trials_per_session):
            c = info["signed_contrast"].to(dtype)
            x = encode(c, params.encoding, p.crosstalk)
            fwd = forward(weights, x)
            offset = side_preference(t, p.side_pref, p.side_pref_tau) if pref else None
            pr = p_right(fwd.q_tot, p.beta, p.lapse, offset)
            u = rng.uniform(env.seeds, rng.CHOICE, env.global_trial, dtype, choice_key)
            choice = (u < pr).long()
            p_log.append(pr)
            _, reward, _, _, info = env.step(choice)
            r = learning_reward(c, reward.to(dtype), params.zero_reward)
            weights = trial_update(weights, x, choice, r, p.eta, params.positive, fwd).weights
    trials = env.trial_table()
    pr = torch.stack(p_log).cpu().numpy()  # (S * T, N), session-major like the table within each mouse
    trials["p_right"] = pr.T.reshape(-1)
    status = pd.DataFrame([{"mouse": f"m{i:03d}", "session": s + 1, "status": st[i]}
                           for s, st in enumerate(env.status_history) for i in range(n_mice)])
    return trials, status
