"""Q-learning baselines, batched over mice x restarts (torch, autograd).

Model: action values Q[s, a] for stimulus class s and action a (0 = L, 1 = R);
P(R) = sigmoid(beta (Q[s, R] - Q[s, L])); after the choice,
delta = r - Q[s, ch] and Q[s, ch] += alpha+ delta if delta > 0 else alpha- delta.
Stimulus-independent: one class (the paper's early-learning model). Tabular:
one class per distinct signed contrast. Initial values Q_L, Q_R (shared by
all classes) are free ("innate" values). The reward is the learning reward of
:func:`mouse_rl.network.learning_reward` (0.5 at zero contrast).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from envs import rng

from ..fit.batch import TrialBatch, make_batch, prepare_trials
from ..fit.fitting import PRIOR_SD
from ..fit.learner import BatchedLearner
from ..fit.likelihood import masked_sum
from ..fit.optim import batched_hessian, minimize_batched
from ..fit.population import MapFit
from ..fit.prior import GaussianPrior
from ..network import learning_reward, stimulus_reward

PARAM_NAMES = ("beta", "alpha_pos", "alpha_neg", "Q_L", "Q_R")
#: Unconstrained start of restart 0 and centre of the weak prior: beta 5, alpha+ = alpha- = 0.5, Q_L = Q_R = 0.5.
U_START = (math.log(5.0), 0.0, 0.0, 0.5, 0.5)


def q_update(Q, s_onehot, choice, reward, alpha_pos, alpha_neg):
    """One Q-learning trial. ``Q`` ``(B, S, 2)``, ``s_onehot`` ``(B, S)``; returns (new Q, q ``(B, 2)``, delta)."""
    q = (Q * s_onehot[..., None]).sum(-2)
    delta = reward - q.gather(-1, choice[..., None])[..., 0]
    alpha = torch.where(delta > 0, alpha_pos, alpha_neg)
    a_onehot = torch.nn.functional.one_hot(choice, 2).to(Q.dtype)
    return Q + (alpha * delta)[:, None, None] * s_onehot[..., None] * a_onehot[:, None, :], q, delta


def _natural(u):
    return (torch.exp(u[:, 0].clamp(-5, 6)), torch.sigmoid(u[:, 1]), torch.sigmoid(u[:, 2]), u[:, 3], u[:, 4])


def q_rollout(u, s_onehot, contrast, learn, choice=None, reward=None, seeds=None, Q=None):
    """One Q-learning scan over trials: teacher-forced or free-running.

    Parameters
    ----------
    u : ``(B, 5)`` unconstrained parameters (log beta, logit alpha+, logit alpha-, Q_L, Q_R).
    s_onehot : ``(T, B, S)`` stimulus classes; contrast : ``(T, B)`` signed contrasts.
    learn : ``(T, B)`` bool, trials whose update is applied.
    choice, reward : ``(T, B)`` given choices and learning rewards (teacher forcing), or None to
        sample choices from each column's counter-based ``CHOICE`` stream of ``seeds`` and take the
        task's reward (zero contrast: side from the ``ZERO_REWARD_SIDE`` stream; learned as
        :func:`mouse_rl.network.learning_reward`).
    Q : ``(B, S, 2)`` values before the first trial (default: Q_L, Q_R for every class).

    Returns
    -------
    (logit ``(T, B)`` of P(Right) before each choice, choices ``(T, B)``, task rewards ``(T, B)``, final Q)
    """
    beta, ap, an, ql, qr = _natural(u)
    T, B, S = s_onehot.shape
    if Q is None:
        Q = torch.stack([ql, qr], -1)[:, None, :].expand(B, S, 2)
    if choice is None:
        seeds = rng.as_seed_tensor(seeds, u.device)
        ckey, zkey = rng.stream_key(seeds, rng.CHOICE), rng.stream_key(seeds, rng.ZERO_REWARD_SIDE)
    logits, choices, rewards = [], [], []
    for t in range(T):
        q = (Q * s_onehot[t][..., None]).sum(-2)
        logit = beta * (q[:, 1] - q[:, 0])
        if choice is None:
            ch = (rng.uniform(seeds, rng.CHOICE, t, u.dtype, ckey) < torch.sigmoid(logit)).long()
            right = (rng.uniform(seeds, rng.ZERO_REWARD_SIDE, t, u.dtype, zkey) < 0.5).long()
            c = contrast[t]
            rew = torch.where(c == 0, (ch == right).to(u.dtype), stimulus_reward(c, ch))
            learn_r = learning_reward(c, rew)
        else:
            ch, rew = choice[t], reward[t]
            learn_r = rew
        newQ, _, _ = q_update(Q, s_onehot[t], ch, learn_r, ap, an)
        Q = torch.where(learn[t][:, None, None], newQ, Q)
        logits.append(logit)
        choices.append(ch)
        rewards.append(rew)
    return torch.stack(logits), torch.stack(choices), torch.stack(rewards), Q


def q_logprob(u, s_onehot, choice, reward, learn):
    """log P(choice) ``(T, B)`` for unconstrained parameters ``u`` ``(B, 5)`` (log beta, logit alphas, Q_L, Q_R)."""
    logit, *_ = q_rollout(u, s_onehot, None, learn, choice, reward)
    return torch.nn.functional.logsigmoid(torch.where(choice == 1, logit, -logit))


def _classes(contrast: torch.Tensor, tabular: bool, levels=None):
    if not tabular:
        return torch.ones(*contrast.shape, 1, dtype=contrast.dtype, device=contrast.device), None
    levels = torch.unique(contrast) if levels is None else levels
    idx = torch.bucketize(contrast.contiguous(), levels).clamp(max=len(levels) - 1)
    return torch.nn.functional.one_hot(idx, len(levels)).to(contrast.dtype), levels


class QLearningModel(BatchedLearner):
    """Q-learning baseline with the :class:`~mouse_rl.fit.cv.CVModel` interface.

    Parameters
    ----------
    trials : prepared trial table.
    tabular : stimulus-dependent Q[stimulus class, action] (classes = distinct signed contrasts).
    n_restarts, max_iter, method : optimiser settings (see :func:`mouse_rl.fit.optim.minimize_batched`).
    map_prior : fit under the weak prior :meth:`registry_prior` (default False: maximum likelihood).
    refine_iter : L-BFGS iterations from given per-mouse starts (``map_fit(..., init=...)``, e.g. the
        E-steps of :func:`mouse_rl.fit.population.fit_population`, which start next to the optimum).
    predictive, n_samples, draw_seed : ``"plugin"`` or ``"laplace"`` held-out scoring, as for
        :class:`mouse_rl.fit.cv.NetworkModel` (same weak prior, in this model's
        unconstrained units: log beta, logit alphas, Q_L, Q_R).
    """

    free = PARAM_NAMES

    def __init__(self, trials: pd.DataFrame, tabular: bool = False, name: str | None = None, n_restarts: int = 3,
                 max_iter: int = 100, method: str = "lbfgs", device="cpu", dtype=torch.float64, seed: int = 0,
                 progress: bool = False, map_prior: bool = False, predictive: str = "plugin", n_samples: int = 64,
                 draw_seed: int = 0, refine_iter: int = 30):
        super().__init__(predictive, n_samples, draw_seed)
        self.name = name or ("qlearning_tabular" if tabular else "qlearning")
        self.trials = prepare_trials(trials)
        self.batch = make_batch(self.trials, "expected", device, dtype, prepared=True)
        self.s, self.levels = _classes(self.batch.contrast, tabular)
        self.n_restarts, self.max_iter, self.method, self.seed, self.progress = n_restarts, max_iter, method, seed, progress
        self.map_prior, self.refine_iter = map_prior, refine_iter

    def registry_prior(self) -> GaussianPrior:
        """Weak prior: log beta ~ N(log 5, 2^2), logit alphas ~ N(0, 2^2), Q_L, Q_R ~ N(0.5, 2^2)."""
        return GaussianPrior.diagonal(PARAM_NAMES, U_START, PRIOR_SD)

    def _logp(self, T=None, repeat=1):
        b = self.batch
        T = T or b.shape[0]
        s, ch, r, learn = (z[:T].repeat(1, repeat) if z.dim() == 2 else z[:T].repeat(1, repeat, 1)
                           for z in (self.s, b.choice, b.reward, b.valid))
        return lambda u: q_logprob(u, s, ch, r, learn)

    def _nll(self, score, T=None, repeat=1, prior: GaussianPrior | None = None):
        T = T or self.batch.shape[0]
        logp = self._logp(T, repeat)
        sc = score[:T].repeat(1, repeat)
        if prior is None:
            return lambda u: -masked_sum(logp(u), sc)
        mean, prec = (torch.as_tensor(a, dtype=self.batch.contrast.dtype) for a in (prior.mean, prior.precision))

        def nll(u):
            z = u - mean
            return -masked_sum(logp(u), sc) + 0.5 * ((z @ prec) * z).sum(-1)
        return nll

    def map_fit(self, train_mask, prior: GaussianPrior | None = None, init: np.ndarray | None = None) -> MapFit:
        """Batched L-BFGS from ``n_restarts`` starts (or the per-mouse starts ``init`` ``(R, M, 5)``)."""
        b = self.batch
        M = b.shape[1]
        prior = prior if prior is not None else (self.registry_prior() if self.map_prior else None)
        score = b.mask_from_rows(train_mask)
        T = int(torch.nonzero(score.any(1)).max()) + 1 if bool(score.any()) else 1
        given = init is not None
        if not given:
            gen = np.random.default_rng(self.seed)
            starts = [np.tile(U_START, (M, 1))]
            for _ in range(1, self.n_restarts):
                starts.append(np.column_stack([gen.uniform(0, 3, M), gen.normal(0, 1.5, M), gen.normal(0, 1.5, M),
                                               gen.uniform(0, 1, M), gen.uniform(0, 1, M)]))
            init = np.stack(starts)
        R = len(init)
        u0 = torch.as_tensor(np.asarray(init, float).reshape(R * M, -1), dtype=b.contrast.dtype, device=b.contrast.device)
        n = score.sum(0).clamp(min=1).to(u0.dtype).repeat(R)
        iters = self.refine_iter if given else self.max_iter
        u, f, self.info = minimize_batched(self._nll(score, T, R, prior), u0, n, self.method, iters,
                                           progress=self.progress, desc=self.name)
        f = torch.nan_to_num(f.reshape(R, M), nan=float("inf"))
        best = f.argmin(0)
        ub = u.reshape(R, M, -1)[best, torch.arange(M)].detach()
        like = self._nll(score, T)
        with torch.no_grad():
            nll = like(ub)
        H = batched_hessian(like, ub)
        return MapFit(ub.cpu().numpy(), nll.cpu().numpy(), H.cpu().numpy())

    def trial_logp(self, u: np.ndarray) -> np.ndarray:
        ut = torch.as_tensor(u, dtype=self.batch.contrast.dtype, device=self.batch.contrast.device)
        with torch.no_grad():
            return self._logp(repeat=len(u) // self.batch.shape[1])(ut).cpu().numpy()

    def forecast_p_right(self, u: np.ndarray, schedule: TrialBatch, seed: int = 0) -> np.ndarray:
        """P(Right) ``(T, n)`` of free-running copies on ``schedule`` after teacher forcing through this
        model's trials (as :meth:`mouse_rl.fit.cv.NetworkModel.forecast_p_right`)."""
        from ..fit.checks import copy_seeds

        M = self.batch.shape[1]
        K = len(u) // M
        b, sched = self.batch.repeat(K), schedule.repeat(K)
        ut = torch.as_tensor(u, dtype=b.contrast.dtype)
        s_sched, _ = _classes(sched.contrast, self.levels is not None, self.levels)
        with torch.no_grad():
            *_, Q = q_rollout(ut, self.s.repeat(1, K, 1), b.contrast, b.valid, b.choice, b.reward)
            seeds = torch.as_tensor(copy_seeds(self.batch.mice, K, seed).reshape(-1))
            logit, *_ = q_rollout(ut, s_sched, sched.contrast, sched.valid, seeds=seeds, Q=Q)
        return torch.sigmoid(logit).cpu().numpy()

    def natural(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vals = [v.numpy() for v in _natural(torch.as_tensor(np.asarray(u, float)))]
        theta = np.column_stack(vals)
        d1 = np.column_stack([vals[0], vals[1] * (1 - vals[1]), vals[2] * (1 - vals[2]),
                              np.ones(len(u)), np.ones(len(u))])
        return theta, d1


def simulate_qlearning(contrast: np.ndarray, beta, alpha_pos, alpha_neg, Q_L, Q_R, tabular: bool = False,
                       seed: int = 0) -> pd.DataFrame:
    """Simulate Q-learners on given stimulus sequences (for parameter-recovery tests).

    Parameters
    ----------
    contrast : ``(n_mice, n_trials)`` signed contrasts (fraction).
    beta, alpha_pos, alpha_neg, Q_L, Q_R : scalars or ``(n_mice,)`` arrays.
    tabular : stimulus-dependent values.
    seed : seed of the learners' counter-based choice and zero-contrast reward streams.

    Returns
    -------
    pandas.DataFrame
        Trial table (one session per mouse); reward at zero contrast drawn with p = 0.5.
    """
    c = torch.as_tensor(np.asarray(contrast, float)).T  # (T, B)
    T, B = c.shape
    p = [np.broadcast_to(np.asarray(v, float), (B,)) for v in (beta, alpha_pos, alpha_neg, Q_L, Q_R)]
    u = torch.as_tensor(np.column_stack([np.log(p[0]), np.log(p[1] / (1 - p[1])), np.log(p[2] / (1 - p[2])),
                                         p[3], p[4]]))
    s, _ = _classes(c, tabular)
    seeds = torch.as_tensor(rng.mouse_seeds(seed, B), dtype=torch.int64)
    _, ch, rw, _ = q_rollout(u, s, c, torch.ones(T, B, dtype=torch.bool), seeds=seeds)
    ch, rw = ch.T.numpy().reshape(-1), rw.T.numpy().reshape(-1)
    cc = c.T.numpy().reshape(-1)
    df = pd.DataFrame({"mouse": np.repeat([f"q{i:03d}" for i in range(B)], T), "session": 1,
                       "trial": np.tile(np.arange(T), B)})
    df["contrastLeft"] = np.clip(-cc, 0, None) + 0.0
    df["contrastRight"] = np.clip(cc, 0, None) + 0.0
    df["signed_contrast"] = cc
    df["choice"] = ch.astype(np.int64)
    df["reward"] = rw
    df["feedbackType"] = 2 * rw - 1
    return df
