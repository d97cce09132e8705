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

from ..fit.batch import make_batch, prepare_trials
from ..fit.fitting import PRIOR_SD
from ..fit.optim import batched_hessian, minimize_batched, torch_threads
from ..fit.likelihood import masked_sum
from ..fit.predictive import check_predictive, laplace_covariance, predictive_trial_logp
from ..network import learning_reward

PARAM_NAMES = ("beta", "alpha_pos", "alpha_neg", "Q_L", "Q_R")


def q_update(Q, s_onehot, choice, reward, alpha_pos, alpha_neg):
    """One Q-learning trial. ``Q`` ``(B, S, 2)``, ``s_onehot`` ``(B, S)``; returns (new Q, q ``(B, 2)``, delta)."""
    q = (Q * s_onehot[..., None]).sum(-2)
    delta = reward - q.gather(-1, choice[..., None])[..., 0]
    alpha = torch.where(delta > 0, alpha_pos, alpha_neg)
    a_onehot = torch.nn.functional.one_hot(choice, 2).to(Q.dtype)
    return Q + (alpha * delta)[:, None, None] * s_onehot[..., None] * a_onehot[:, None, :], q, delta


def _natural(u):
    return (torch.exp(u[:, 0].clamp(-5, 6)), torch.sigmoid(u[:, 1]), torch.sigmoid(u[:, 2]), u[:, 3], u[:, 4])


def q_logprob(u, s_onehot, choice, reward, learn):
    """log P(choice) ``(T, B)`` for unconstrained parameters ``u`` ``(B, 5)`` (log beta, logit alphas, Q_L, Q_R)."""
    beta, ap, an, ql, qr = _natural(u)
    T, B, S = s_onehot.shape
    Q = torch.stack([ql, qr], -1)[:, None, :].expand(B, S, 2)
    out = []
    for t in range(T):
        newQ, q, _ = q_update(Q, s_onehot[t], choice[t], reward[t], ap, an)
        logit = beta * (q[:, 1] - q[:, 0])
        out.append(torch.stack([torch.nn.functional.logsigmoid(-logit), torch.nn.functional.logsigmoid(logit)], -1))
        Q = torch.where(learn[t][:, None, None], newQ, Q)
    logp = torch.stack(out)
    return logp.gather(-1, choice[..., None])[..., 0]


def _classes(contrast: torch.Tensor, tabular: bool, levels=None):
    if not tabular:
        return torch.ones(*contrast.shape, 1, dtype=contrast.dtype, device=contrast.device), None
    levels = torch.unique(contrast) if levels is None else levels
    idx = torch.bucketize(contrast.contiguous(), levels).clamp(max=len(levels) - 1)
    return torch.nn.functional.one_hot(idx, len(levels)).to(contrast.dtype), levels


class QLearningModel:
    """Q-learning baseline with the :class:`~mouse_rl.fit.cv.CVModel` interface.

    Parameters
    ----------
    trials : prepared trial table.
    tabular : stimulus-dependent Q[stimulus class, action] (classes = distinct signed contrasts).
    n_restarts, max_iter, method : optimiser settings (see :func:`mouse_rl.fit.optim.minimize_batched`).
    predictive, n_samples, draw_seed : ``"plugin"`` or ``"laplace"`` held-out scoring, as for
        :class:`mouse_rl.fit.cv.NetworkModel` (same weak prior, in this model's
        unconstrained units: log beta, logit alphas, Q_L, Q_R).
    """

    def __init__(self, trials: pd.DataFrame, tabular: bool = False, name: str | None = None, n_restarts: int = 3,
                 max_iter: int = 100, method: str = "lbfgs", device="cpu", dtype=torch.float64, seed: int = 0,
                 progress: bool = False, predictive: str = "plugin", n_samples: int = 64,
                 draw_seed: int = 0):
        self.name = name or ("qlearning_tabular" if tabular else "qlearning")
        self.trials = prepare_trials(trials)
        self.batch = make_batch(self.trials, "expected", device, dtype, prepared=True)
        self.s, self.levels = _classes(self.batch.contrast, tabular)
        self.n_restarts, self.max_iter, self.method, self.seed, self.progress = n_restarts, max_iter, method, seed, progress
        self.predictive, self.n_samples, self.draw_seed = check_predictive(predictive), n_samples, draw_seed
        self.u = self.cov = self._trial_logp = None

    def _logp(self, T=None, repeat=1):
        b = self.batch
        T = T or b.shape[0]
        s, ch, r, learn = (z[:T].repeat(1, repeat) if z.dim() == 2 else z[:T].repeat(1, repeat, 1)
                           for z in (self.s, b.choice, b.reward, b.valid))
        return lambda u: q_logprob(u, s, ch, r, learn)

    def _nll(self, score, T=None, repeat=1):
        T = T or self.batch.shape[0]
        logp = self._logp(T, repeat)
        sc = score[:T].repeat(1, repeat)

        return lambda u: -masked_sum(logp(u), sc)

    def fit(self, train_mask) -> "QLearningModel":
        b = self.batch
        M, R = b.shape[1], self.n_restarts
        score = b.mask_from_rows(train_mask)
        T = int(torch.nonzero(score.any(1)).max()) + 1 if bool(score.any()) else 1
        gen = np.random.default_rng(self.seed)
        starts = [np.tile([math.log(5.0), 0.0, 0.0, 0.5, 0.5], (M, 1))]
        for _ in range(1, R):
            starts.append(np.column_stack([gen.uniform(0, 3, M), gen.normal(0, 1.5, M), gen.normal(0, 1.5, M),
                                           gen.uniform(0, 1, M), gen.uniform(0, 1, M)]))
        u0 = torch.as_tensor(np.concatenate(starts), dtype=b.contrast.dtype, device=b.contrast.device)
        n = score.sum(0).clamp(min=1).to(u0.dtype).repeat(R)
        u, f, self.info = minimize_batched(self._nll(score, T, R), u0, n, self.method, self.max_iter,
                                           progress=self.progress, desc=self.name)
        f = torch.nan_to_num(f.reshape(R, M), nan=float("inf"))
        best = f.argmin(0)
        self.u = u.reshape(R, M, -1)[best, torch.arange(M)].detach()
        self._trial_logp = None
        if self.predictive == "laplace":
            self.cov = laplace_covariance(batched_hessian(self._nll(score, T), self.u), PRIOR_SD)
        return self

    def score(self, mask) -> pd.DataFrame:
        """Held-out log-likelihoods per mouse (plug-in, or Laplace predictive with a ``loglik_plugin`` column)."""
        from ..fit.cv import score_frame

        m = self.batch.mask_from_rows(mask)
        n = m.sum(0).cpu().numpy()
        with torch.no_grad(), torch_threads(1):
            if self.predictive == "plugin":
                return score_frame(self.batch.mice, -self._nll(m)(self.u).cpu().numpy(), n)
            if self._trial_logp is None:  # the learner sees every trial: one run serves every mask
                K = self.n_samples
                self._trial_logp = predictive_trial_logp(self._logp(repeat=K), self.u, self.cov, K, self.draw_seed)
        ll, plug = (masked_sum(lp, m) for lp in self._trial_logp)
        return score_frame(self.batch.mice, ll.cpu().numpy(), n, plugin=plug.cpu().numpy())

    def fitted_params(self) -> pd.DataFrame:
        vals = _natural(self.u)
        return pd.DataFrame({"mouse": self.batch.mice,
                             **{k: v.detach().cpu().numpy() for k, v in zip(PARAM_NAMES, vals)}})


def simulate_qlearning(contrast: np.ndarray, beta, alpha_pos, alpha_neg, Q_L, Q_R, tabular: bool = False,
                       seed: int = 0) -> pd.DataFrame:
    """Simulate Q-learners on given stimulus sequences (for parameter-recovery tests).

    Parameters
    ----------
    contrast : ``(n_mice, n_trials)`` signed contrasts (fraction).
    beta, alpha_pos, alpha_neg, Q_L, Q_R : scalars or ``(n_mice,)`` arrays.
    tabular : stimulus-dependent values.

    Returns
    -------
    pandas.DataFrame
        Trial table (one session per mouse); reward at zero contrast drawn with p = 0.5.
    """
    c = torch.as_tensor(np.asarray(contrast, float)).T  # (T, B)
    T, B = c.shape
    gen = torch.Generator().manual_seed(seed)
    p = [torch.as_tensor(np.broadcast_to(np.asarray(v, float), (B,)).copy()) for v in (beta, alpha_pos, alpha_neg, Q_L, Q_R)]
    s, _ = _classes(c, tabular)
    Q = torch.stack([p[3], p[4]], -1)[:, None, :].expand(B, s.shape[-1], 2)
    choices, rewards = [], []
    for t in range(T):
        q = (Q * s[t][..., None]).sum(-2)
        pr = torch.sigmoid(p[0] * (q[:, 1] - q[:, 0]))
        ch = (torch.rand(B, generator=gen, dtype=torch.float64) < pr).long()
        zero_side = (torch.rand(B, generator=gen, dtype=torch.float64) < 0.5).long()
        side = torch.where(c[t] > 0, 1, torch.where(c[t] < 0, 0, zero_side))
        rew = (ch == side).double()
        learn_r = learning_reward(c[t], rew)
        Q, _, _ = q_update(Q, s[t], ch, learn_r, p[1], p[2])
        choices.append(ch)
        rewards.append(rew)
    ch = torch.stack(choices).T.numpy().reshape(-1)
    rw = torch.stack(rewards).T.numpy().reshape(-1)
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
