"""Single-mouse gymnasium environment: one step = one trial, one episode = one session."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .task import DEFAULT_CONTRASTS, DEFAULT_PROBABILITIES, TaskConfig


class ContrastDiscriminationEnv(gym.Env):
    """Two-alternative visual contrast discrimination (Liebana et al. 2025 task).

    Observation: ``float32[2] = (contrastLeft, contrastRight)`` in [0, 1].
    Action: ``Discrete(2)``; **0 = Left, 1 = Right** wheel turn.
    Reward: 1 if the choice is on the stimulus side, else 0; at c = 0 the
    rewarded side is drawn at random (Right with ``zero_reward_p_right``).
    The episode terminates after ``trials_per_session`` trials.
    ``info``: ``signed_contrast``, ``correct_side`` (0 = L, 1 = R, -1 = random
    at c = 0), ``trial`` (from 0), ``session`` (from 1, counts resets);
    after a step also ``rewarded_side`` and ``choice``.
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
        self._session = 0
        self._trial = 0
        self._contrast = 0.0

    def _draw_contrast(self) -> float:
        i = int(np.searchsorted(self.task.cumulative, self.np_random.random(), side="right"))
        return self.task.contrasts[min(i, len(self.task.contrasts) - 1)]

    def _obs(self) -> np.ndarray:
        c = self._contrast
        return np.array([max(-c, 0.0), max(c, 0.0)], dtype=np.float32)

    def _info(self) -> dict:
        c = self._contrast
        return {
            "signed_contrast": c,
            "correct_side": 1 if c > 0 else (0 if c < 0 else -1),
            "trial": self._trial,
            "session": self._session,
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._session = 1 if seed is not None else self._session + 1
        self._trial = 0
        self._contrast = self._draw_contrast()
        return self._obs(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action: must be 0 (Left) or 1 (Right), got {action!r}")
        c = self._contrast
        if c == 0:
            rewarded = int(self.np_random.random() < self.task.zero_reward_p_right)
        else:
            rewarded = int(c > 0)
        reward = float(int(action) == rewarded)
        step_info = {"choice": int(action), "rewarded_side": rewarded}
        self._trial += 1
        terminated = self._trial >= self.task.trials_per_session
        if terminated:
            obs = np.zeros(2, dtype=np.float32)
        else:
            if not (self.task.repeat_after_error and reward == 0.0 and c != 0):
                self._contrast = self._draw_contrast()
            obs = self._obs()
        return obs, reward, terminated, False, {**self._info(), **step_info}
