"""One rollout of the network over trials: simulation, free runs and teacher forcing share it.

A rollout steps a batch of networks (leading mouse axis) through trials. Per
trial: the stimulus comes from a *trial source*, the choice from a *choice
source* -- sampled from each mouse's counter-based ``CHOICE`` stream
(simulation, free runs) or given (teacher forcing on a mouse's own choices)
-- the reward from the trial source, and learning is the one rule
:func:`mouse_rl.network.trial_update`, optionally with per-trial delta offsets
(optogenetics). A *recorder* sees every trial.

Trial sources: :class:`EnvTrials` (the task, :class:`envs.CohortEnv`),
:class:`GivenStimuli` (a mouse's own stimulus sequence, rewards by the task
rule), :class:`GivenTrials` (stimuli and learning rewards both given).

This is the reference path; :mod:`mouse_rl.sim_kernel` is its fused CPU
accelerator for sampled choices without offsets.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import torch

from envs import rng

from .network import (Forward, TrialStep, Weights, encode, forward, inactive, learning_reward, p_right,
                      side_preference, stimulus_reward, trial_update)
from .params import NetParams


class Trial(NamedTuple):
    """Everything one trial produced, per mouse (tensors ``(N, ...)``)."""

    t: int  # global trial index (counter of the random streams)
    signed_contrast: torch.Tensor
    forward: Forward  # action values from the pre-update weights
    p_right: torch.Tensor | None  # P(Right); None with given choices (not needed to choose)
    choice: torch.Tensor  # int64, 0 = Left, 1 = Right
    reward: torch.Tensor  # task reward (given trials: the given learning reward)
    step: TrialStep  # deltas (offsets included) and the updated weights
    weights: Weights  # pre-update weights
    stimulated: torch.Tensor | None


class TrialSource(Protocol):
    def contrast(self, t: int) -> torch.Tensor: ...

    def outcome(self, t: int, choice: torch.Tensor) -> torch.Tensor: ...


class EnvTrials:
    """Trials of the task: :class:`envs.CohortEnv` (already reset) gives the stimulus and the reward."""

    def __init__(self, env):
        env.validate_actions = False  # choices come from the network: always 0 or 1
        self.env = env

    def contrast(self, t: int) -> torch.Tensor:
        return self.env.signed_contrast

    def outcome(self, t: int, choice: torch.Tensor) -> torch.Tensor:
        return self.env.step(choice)[1]


class GivenStimuli:
    """A given stimulus sequence ``(T, N)`` (e.g. a mouse's own); rewards by the task rule.

    At c = 0 the rewarded side is Right with ``zero_reward_p_right``, drawn from
    the ``ZERO_REWARD_SIDE`` stream of each column's seed at the trial index (as
    :class:`envs.CohortEnv`).
    """

    def __init__(self, signed_contrast: torch.Tensor, seeds: torch.Tensor, zero_reward_p_right: float = 0.5):
        self.c = signed_contrast
        self.seeds = seeds
        self.p = zero_reward_p_right
        self.key = rng.stream_key(seeds, rng.ZERO_REWARD_SIDE)

    def contrast(self, t: int) -> torch.Tensor:
        return self.c[t]

    def outcome(self, t: int, choice: torch.Tensor) -> torch.Tensor:
        c = self.c[t]
        right = rng.uniform(self.seeds, rng.ZERO_REWARD_SIDE, t, torch.float64, self.key) < self.p
        zero_reward = (choice == right.long()).to(c.dtype)
        return torch.where(c == 0, zero_reward, stimulus_reward(c, choice))


class GivenTrials:
    """Given stimuli and learning rewards, each ``(T, N)`` (teacher forcing)."""

    def __init__(self, signed_contrast: torch.Tensor, reward: torch.Tensor):
        self.c, self.r = signed_contrast, reward

    def contrast(self, t: int) -> torch.Tensor:
        return self.c[t]

    def outcome(self, t: int, choice: torch.Tensor) -> torch.Tensor:
        return self.r[t]


class SampledChoices:
    """choice = 1 (Right) iff u_t < P(R), u_t from each mouse's ``CHOICE`` stream at counter t (in ``dtype``)."""

    def __init__(self, seeds: torch.Tensor, dtype: torch.dtype, block: int = 256):
        self.seeds, self.dtype, self.block = seeds, dtype, block
        self.key = rng.stream_key(seeds, rng.CHOICE)
        self._first, self._u = None, None

    def __call__(self, t: int, p: torch.Tensor) -> torch.Tensor:
        if self._first is None or not self._first <= t < self._first + self.block:
            self._first = t  # draw a block of trials at once (same numbers: draws are pure hashes)
            counters = torch.arange(t, t + self.block, device=self.seeds.device)[:, None]
            self._u = rng.uniform(self.seeds, rng.CHOICE, counters, self.dtype, self.key)
        return (self._u[t - self._first] < p).long()

    def correction(self, t: int, k: int, p: torch.Tensor) -> torch.Tensor:
        """The choice on the ``k``-th hidden correction trial after trial ``t`` (``CORRECTION`` stream)."""
        u = rng.uniform(self.seeds, rng.CORRECTION, t * rng.MAX_CORRECTIONS + k, self.dtype)
        return (u < p).long()


class GivenChoices:
    """The choices ``(T, N)`` given (teacher forcing)."""

    def __init__(self, choice: torch.Tensor):
        self.choice = choice

    def __call__(self, t: int, p: torch.Tensor) -> torch.Tensor:
        return self.choice[t]


def _where(mask: torch.Tensor, new: Weights, old: Weights) -> Weights:
    """``new`` weights for the mice of ``mask`` ``(N,)``, ``old`` for the others."""
    return Weights(torch.where(mask[:, None], new.a, old.a), torch.where(mask[:, None, None], new.U, old.U))


#: ``stimulation(t, c, choice, reward) -> (mask, delta_offset or None, reward_add)``, see :func:`rollout`.
Stimulation = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], tuple]


def rollout(weights: Weights, params: NetParams, trials: TrialSource, choices, start: int, stop: int, *,
            encoding: str = "side", positive: bool = True, zero_reward: str | None = "expected", use_lapse: bool = True,
            learn: torch.Tensor | None = None, stimulation: Stimulation | None = None,
            recorder: Callable[[Trial], None] | None = None, offset: torch.Tensor | None = None,
            corrections: int = 0, corrections_forced: bool = False) -> Weights:
    """Run trials ``[start, stop)`` of every mouse and return the weights after the last one.

    Parameters
    ----------
    weights : :class:`Weights` ``(N, 3)``, ``(N, 2, 3)`` before trial ``start``.
    params : :class:`NetParams` of ``(N,)`` tensors (may require grad: the rollout is differentiable).
    trials : trial source (:class:`EnvTrials`, :class:`GivenStimuli`, :class:`GivenTrials`).
    choices : :class:`SampledChoices` or :class:`GivenChoices` (any ``(t, p_right) -> choice``).
    start, stop : global trial indices (counters of the random streams; rows of given tensors).
    encoding, positive, zero_reward : model options (:class:`mouse_rl.params.ModelParams`);
        ``zero_reward=None``: the trial source's rewards are learning rewards already (:class:`GivenTrials`).
    use_lapse : apply ``params.lapse`` to the policy.
    learn : ``(T, N)`` bool, trials whose update is applied (default all); other trials keep the weights.
    stimulation : optional per-trial hook after the choice, returning the stimulated mask, a
        ``(N, 3)`` offset added to (delta_tot, delta_stim, delta_const) or None, and an amount added
        to the learning reward (optogenetics, :mod:`mouse_rl.dopamine.optogenetics`).
    recorder : called with each :class:`Trial`.
    offset : optional ``(T, N)`` logit offset added to the policy on trial ``t`` (row ``t``, global index),
        beside the side preference, e.g. the session bias of :mod:`mouse_rl.fit.session_effects` (sampled choices
        only; None = 0).
    corrections : the most hidden correction trials after an error at c != 0 (sampled choices and task rewards
        only; 0 = none): the mouse sees the same stimulus again until it chooses correctly, learning from each
        such trial, which the recorder does not see (the repeat trials removed from a dataset,
        :func:`mouse_rl.simulate.simulate_on_stimuli`). They use trial ``t``'s policy offset and learn mask.
    corrections_forced : the hidden trials choose correctly (one per error) instead of sampling.
    """
    lapse = params.lapse if use_lapse else None
    given_choices = isinstance(choices, GivenChoices)
    if corrections and (not isinstance(choices, SampledChoices) or zero_reward is None or stimulation is not None):
        raise ValueError("corrections: hidden correction trials need sampled choices, task rewards and no stimulation")
    # trials where every mouse learns skip the masking (a host sync, so not inside torch.compile)
    all_learn = None if learn is None else (
        [False] * learn.shape[0] if torch.compiler.is_compiling() else learn.all(1).tolist())
    # options that are off for every mouse (and need no gradient) run the MODEL.md code: the plain inputs, policy
    crosstalk = None if inactive(params.crosstalk) else params.crosstalk
    pref = None if given_choices or inactive(params.side_pref) else (params.side_pref, params.side_pref_tau)
    for t in range(start, stop):
        c = trials.contrast(t)
        x = encode(c, encoding, crosstalk)
        fwd = forward(weights, x)
        if given_choices:
            pr = None
        else:
            logit_offset = None if pref is None else side_preference(t, *pref)
            if offset is not None:
                logit_offset = offset[t] if logit_offset is None else logit_offset + offset[t]
            pr = p_right(fwd.q_tot, params.beta, lapse, logit_offset)
        choice = choices(t, pr)
        reward = trials.outcome(t, choice)
        learn_r = reward if zero_reward is None else learning_reward(c, reward, zero_reward)
        stimulated = delta_offset = None
        if stimulation is not None:
            stimulated, delta_offset, reward_add = stimulation(t, c, choice, reward)
            learn_r = learn_r + reward_add
        step = trial_update(weights, x, choice, learn_r, params.eta, positive, fwd, delta_offset=delta_offset)
        new = step.weights
        if all_learn is not None and not all_learn[t]:
            new = _where(learn[t], new, weights)
        if recorder is not None:
            recorder(Trial(t, c, fwd, pr, choice, reward, step, weights, stimulated))
        weights = new
        if corrections:
            need = (reward == 0) & (c != 0) if learn is None else (reward == 0) & (c != 0) & learn[t]
            for k in range(corrections):
                if not bool(need.any()):
                    break
                fwd = forward(weights, x)
                if corrections_forced:
                    choice = (c > 0).long()
                else:
                    choice = choices.correction(t, k, p_right(fwd.q_tot, params.beta, lapse, logit_offset))
                reward = stimulus_reward(c, choice)
                new = trial_update(weights, x, choice, reward, params.eta, positive, fwd).weights
                weights = _where(need, new, weights)
                need = need & (reward == 0)
    return weights
