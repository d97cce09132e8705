"""Single-mouse gymnasium environment: the one-mouse view of :class:`~envs.cohort_env.CohortEnv`."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from . import rng
from .cohort_env import CohortEnv
from .task import DEFAULT_CONTRASTS, DEFAULT_PROBABILITIES, TaskConfig


class ContrastDiscriminationEnv(gym.Env):
    """Two-alternative visual contrast discrimination (Liebana et al. 2025 task), one mouse.

    One step is one trial and one episode one session. The trials are those
    of a one-mouse :class:`~envs.cohort_env.CohortEnv`: for the same seed,
    ``gymnasium.make(ENV_ID)`` and ``gymnasium.make_vec(ENV_ID, num_envs=1)``
    show the same stimuli and reward the same actions (the mouse's
    counter-based stream, :mod:`envs.rng`).

    ## Action Space

    ``Discrete(2)``: **0 = Left, 1 = Right** wheel turn.

    ## Observation Space

    ``Box(0, 1, (2,), float32)``: ``(contrastLeft, contrastRight)``, contrast
    fractions; at most one is non-zero. The signed contrast is
    ``c = contrastRight - contrastLeft`` (negative = stimulus on the left).

    ## Rewards

    1 if the choice is on the stimulus side, else 0. At c = 0 the rewarded
    side is drawn at random: Right with probability ``zero_reward_p_right``.

    ## Starting State

    ``reset(seed=s)`` starts session 1 of the mouse with seed
    ``envs.rng.mouse_seeds(s, 1)[0]`` (as ``make_vec(..., num_envs=1)``
    does); a later ``reset()`` without a seed starts the next session of the
    same mouse (trial counters continue, so the stimuli are those the
    cohort env shows in that session). A first reset without a seed draws
    the mouse seed from ``np_random``.

    ## Episode End

    Terminates after ``trials_per_session`` trials (the observation returned
    then is zeros); never truncated.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``contrasts`` | ``(-0.5, -0.25, 0, 0.25, 0.5)`` | signed contrasts, fractions in [-1, 1] |
    | ``probabilities`` | ``(0.3, 0.15, 0.1, 0.15, 0.3)`` | probability of each contrast (sum 1) |
    | ``trials_per_session`` | 220 | trials per episode |
    | ``repeat_after_error`` | False | after an error at c != 0 the same contrast is shown again |
    | ``zero_reward_p_right`` | 0.5 | P(Right is rewarded) at c = 0 |

    ## Info

    ``signed_contrast`` (float), ``correct_side`` (0 = L, 1 = R, -1 = random
    at c = 0), ``trial`` (from 0; ``trials_per_session`` after the last
    step), ``session`` (from 1, counts resets); after a step also
    ``choice`` and ``rewarded_side``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        contrasts=DEFAULT_CONTRASTS,
        probabilities=DEFAULT_PROBABILITIES,
        trials_per_session: int = 220,
        repeat_after_error: bool = False,
        zero_reward_p_right: float = 0.5,
    ):
        self.task = TaskConfig(contrasts, probabilities, trials_per_session, repeat_after_error, zero_reward_p_right)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._cohort: CohortEnv | None = None
        self._session = 0
        self._trial = 0
        self._contrast = 0.0

    def _view(self, obs: torch.Tensor, info: dict) -> tuple[np.ndarray, dict]:
        """Observation and info of the one mouse, as numpy / Python values."""
        self._contrast = float(info["signed_contrast"][0])
        out = {"signed_contrast": self._contrast, "correct_side": int(info["correct_side"][0]),
               "trial": self._trial, "session": self._session}
        return obs[0].numpy().astype(np.float32), out

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None or self._cohort is None:
            mouse_seed = rng.mouse_seeds(seed, 1) if seed is not None else [int(self.np_random.integers(2**32))]
            self._cohort = CohortEnv(1, seeds=mouse_seed, task=self.task, dtype=torch.float64)
            self._session = 0
        self._session += 1
        self._trial = 0
        start = (self._session - 1) * self.task.trials_per_session
        return self._view(*self._cohort.reset(options={"global_trial": start}))

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action: must be 0 (Left) or 1 (Right), got {action!r}")
        c = self._contrast
        obs, reward, terminated, _, info = self._cohort.step(torch.tensor([int(action)]))
        self._trial += 1
        step_info = {"choice": int(action), "rewarded_side": int(info["rewarded_side"][0])}
        if bool(terminated[0]):  # the cohort env has moved on to the next session: report the last trial
            out = {"signed_contrast": c, "correct_side": 1 if c > 0 else (0 if c < 0 else -1),
                   "trial": self._trial, "session": self._session}
            return np.zeros(2, dtype=np.float32), float(reward[0]), True, False, {**out, **step_info}
        obs, out = self._view(obs, info)
        return obs, float(reward[0]), False, False, {**out, **step_info}
