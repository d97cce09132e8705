"""Native batched cohort environment: a whole cohort of mice steps at once, in torch."""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import rng
from .task import DEFAULT_CONTRASTS, DEFAULT_PROBABILITIES, TaskConfig


class CohortEnv(VectorEnv):
    """``num_envs`` mice doing the task in lockstep, as torch tensors on one device.

    The native vector env of ``mouse_rl/ContrastDiscrimination-v0``
    (``gymnasium.make_vec(ENV_ID, num_envs=N)``). Every mouse draws from its
    own counter-based stream (:mod:`envs.rng`, keyed by its seed), so mouse
    *i* sees the same trials in any cohort, on any device, and
    :class:`~envs.contrast_env.ContrastDiscriminationEnv` is exactly its
    one-mouse view.

    ## Action Space

    ``MultiDiscrete([2] * num_envs)``; actions are an int tensor
    ``(num_envs,)`` with **0 = Left, 1 = Right**.

    ## Observation Space

    ``Box(0, 1, (num_envs, 2), float32)``: a ``(num_envs, 2)`` tensor of
    ``(contrastLeft, contrastRight)`` contrast fractions, in ``dtype``.

    ## Rewards

    ``(num_envs,)`` tensor: 1 if the mouse chose the stimulus side, else 0;
    at c = 0 the rewarded side is random (Right with ``zero_reward_p_right``).

    ## Starting State

    ``reset()`` starts session 1, trial 0; ``reset(seed=s)`` first sets the
    per-mouse seeds to ``envs.rng.mouse_seeds(s, num_envs)``;
    ``options={"global_trial": t}`` resumes at global trial ``t``.

    ## Episode End

    Every mouse's session terminates after ``trials_per_session`` trials, all
    at once; never truncated. The env auto-resets in the same step
    (``AutoresetMode.SAME_STEP``): the observation returned with
    ``terminated`` is the first trial of the next session.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``num_envs`` | 1 | number of mice |
    | ``seeds`` | ``mouse_seeds(0, num_envs)`` | per-mouse seeds, uint32 values |
    | ``contrasts`` | ``(-0.5, -0.25, 0, 0.25, 0.5)`` | signed contrasts, fractions in [-1, 1] |
    | ``probabilities`` | ``(0.3, 0.15, 0.1, 0.15, 0.3)`` | probability of each contrast (sum 1) |
    | ``trials_per_session`` | 220 | trials per episode |
    | ``repeat_after_error`` | False | after an error at c != 0 the same contrast is shown again |
    | ``zero_reward_p_right`` | 0.5 | P(Right is rewarded) at c = 0 |
    | ``device``, ``dtype`` | ``"cpu"``, float32 | where the tensors live |
    | ``task`` | None | a :class:`~envs.task.TaskConfig` (overrides the task arguments) |

    ## Info

    Tensors ``signed_contrast`` and ``correct_side`` (-1 at c = 0), ints
    ``trial`` (within session, from 0), ``session`` (from 1) and
    ``global_trial``; after a step also ``choice``, ``rewarded_side`` and
    ``stimulus`` (the contrast the action answered).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        seeds=None,
        contrasts=DEFAULT_CONTRASTS,
        probabilities=DEFAULT_PROBABILITIES,
        trials_per_session: int = 220,
        repeat_after_error: bool = False,
        zero_reward_p_right: float = 0.5,
        device="cpu",
        dtype=torch.float32,
        task: TaskConfig | None = None,
    ):
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs: must be a positive integer, got {num_envs!r}")
        self.task = task or TaskConfig(contrasts, probabilities, trials_per_session, repeat_after_error, zero_reward_p_right)
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.seeds = rng.as_seed_tensor(
            rng.mouse_seeds(0, self.num_envs) if seeds is None else seeds, self.device
        )
        if self.seeds.numel() != self.num_envs:
            raise ValueError(f"seeds: {self.seeds.numel()} seeds for num_envs={self.num_envs}")
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._contrasts = torch.tensor(self.task.contrasts, dtype=dtype, device=self.device)
        self._cumulative = torch.tensor(self.task.cumulative, dtype=torch.float64, device=self.device)
        #: check every action is 0 or 1 (one device sync per step; trusted callers switch it off)
        self.validate_actions = True
        self._all_true = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._all_false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self.global_trial = 0
        self.signed_contrast = torch.zeros(self.num_envs, dtype=dtype, device=self.device)

    # -- trial sequence -------------------------------------------------
    def _session_draws(self) -> None:
        """Pre-draw the current session's stimuli and zero-contrast reward sides, ``(T, num_envs)`` each.

        A draw depends only on (mouse seed, stream, global trial), so drawing a
        session ahead is identical to drawing trial by trial.
        """
        T = self.task.trials_per_session
        start = (self.global_trial // T) * T
        counters = torch.arange(start, start + T, device=self.device)[:, None]
        self._stim_draws = self._contrasts[self.stimulus_index(counters)]
        u_zero = rng.uniform(self.seeds, rng.ZERO_REWARD_SIDE, counters, torch.float64, self._zero_key)
        zero_sides = (u_zero < self.task.zero_reward_p_right).long()
        c = self._stim_draws
        self._rewarded_draws = torch.where(c > 0, 1, torch.where(c < 0, 0, zero_sides))
        self._correct_draws = torch.where(c > 0, 1, torch.where(c < 0, 0, -1))
        self._obs_draws = self._contrast_pair(c)

    def stimulus_index(self, counters) -> torch.Tensor:
        """Index into ``task.contrasts`` of the stimulus each mouse draws at global trial(s) ``counters``.

        ``counters``: an int or an int64 tensor broadcastable to ``(num_envs,)`` (e.g. a column of
        trials). The draw before any repeat-after-error rule.
        """
        u = rng.uniform(self.seeds, rng.STIMULUS, counters, torch.float64, rng.stream_key(self.seeds, rng.STIMULUS))
        idx = torch.zeros(u.shape, dtype=torch.long, device=self.device)
        for edge in self._cumulative[:-1]:  # a few contrasts: cheaper than a reduction over a tiny axis
            idx += u >= edge
        return idx

    def _draw(self) -> torch.Tensor:
        return self._stim_draws[self.trial]

    @property
    def trial(self) -> int:
        return self.global_trial % self.task.trials_per_session

    @property
    def session(self) -> int:
        return self.global_trial // self.task.trials_per_session + 1

    @staticmethod
    def _contrast_pair(c: torch.Tensor) -> torch.Tensor:
        return torch.stack([(-c).clamp(min=0), c.clamp(min=0)], dim=-1) + 0.0  # + 0.0: no -0.0

    def _obs(self) -> torch.Tensor:
        if self.task.repeat_after_error:
            return self._contrast_pair(self.signed_contrast)
        return self._obs_draws[self.trial]

    def _info(self) -> dict:
        c = self.signed_contrast
        if self.task.repeat_after_error:
            side = torch.where(c > 0, 1, torch.where(c < 0, 0, -1))
        else:
            side = self._correct_draws[self.trial]
        return {
            "signed_contrast": c,
            "correct_side": side,
            "trial": self.trial,
            "session": self.session,
            "global_trial": self.global_trial,
        }

    def reset(self, *, seed=None, options=None):
        """Start at session 1, trial 0; ``seed`` (int) re-derives per-mouse seeds.

        ``options={"global_trial": t}`` resumes at global trial ``t`` (the
        stimulus at t is redrawn from the counter stream; with
        ``repeat_after_error`` also pass ``options["signed_contrast"]``).
        """
        if seed is not None:
            self.seeds = rng.as_seed_tensor(rng.mouse_seeds(seed, self.num_envs), self.device)
        options = options or {}
        self._zero_key = rng.stream_key(self.seeds, rng.ZERO_REWARD_SIDE)
        self.global_trial = int(options.get("global_trial", 0))
        self._session_draws()
        if "signed_contrast" in options:
            self.signed_contrast = torch.as_tensor(options["signed_contrast"], dtype=self.dtype, device=self.device)
        else:
            self.signed_contrast = self._draw()
        return self._obs(), self._info()

    def rewarded_side(self) -> torch.Tensor:
        """Rewarded action of the current trial (random side at c = 0, from the mouse's stream)."""
        if self.task.repeat_after_error:
            c = self.signed_contrast
            return torch.where(c > 0, 1, torch.where(c < 0, 0, self._rewarded_draws[self.trial]))
        return self._rewarded_draws[self.trial]

    def step(self, actions):
        actions = torch.as_tensor(actions, device=self.device).reshape(-1)
        if actions.numel() != self.num_envs:
            raise ValueError(f"actions: expected {self.num_envs} actions, got {actions.numel()}")
        if self.validate_actions and bool(((actions != 0) & (actions != 1)).any()):
            raise ValueError("actions: every action must be 0 (Left) or 1 (Right)")
        rewarded = self.rewarded_side()
        reward = (actions == rewarded).to(self.dtype)
        step_info = {"choice": actions, "rewarded_side": rewarded, "stimulus": self.signed_contrast}
        self.global_trial += 1
        done = self.global_trial % self.task.trials_per_session == 0
        if done:
            self._session_draws()
        new_c = self._draw()
        if self.task.repeat_after_error and not done:
            repeat = (reward == 0) & (self.signed_contrast != 0)
            new_c = torch.where(repeat, self.signed_contrast, new_c)
        self.signed_contrast = new_c
        terminated = self._all_true if done else self._all_false
        return self._obs(), reward, terminated, self._all_false, {**self._info(), **step_info}
