"""Stimulus classes of the mean-field theory: inputs, probabilities and expected rewards.

With ``"side"`` encoding every left contrast gives the same input, so the
task reduces to three classes (left, zero, right). With any other
encoding (``"magnitude"``, ...) each contrast is its own class. A class with probability 0 is kept
(its P(R) is still defined) but does not drive learning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs.task import TaskConfig

from ..network import encode
from ..params import ModelParams

__all__ = ["StimulusClasses", "stimulus_classes", "STIMULUS_SIDE_NAMES"]

#: Stimulus side of a trial, by the sign of its signed contrast: -1 = left (c < 0), 0 = zero contrast,
#: +1 = right (c > 0). The names label P(R | side) columns, ``p_right_<name>``.
STIMULUS_SIDE_NAMES = {-1: "left", 0: "zero", 1: "right"}


@dataclass(frozen=True)
class StimulusClasses:
    """Stimulus classes of a task under one encoding.

    names : class names (``left/zero/right`` or ``c=-0.5`` ...).
    contrast : representative signed contrast per class (side encoding: the
        sign only, -1/0/+1).
    side : -1, 0, +1 per class.
    prob : class probability per trial (sums to 1).
    x : network input per class, ``(C, 3)``.
    reward : expected learning reward ``r(s, o)`` per class and action, ``(C, 2)``.
    """

    names: tuple
    contrast: np.ndarray
    side: np.ndarray
    prob: np.ndarray
    x: np.ndarray
    reward: np.ndarray

    @property
    def n(self) -> int:
        return len(self.names)

    def side_weights(self) -> np.ndarray:
        """``(C, 3)`` matrix averaging per-class values into left/zero/right (columns); NaN for empty sides."""
        W = np.zeros((self.n, 3))
        for j, side in enumerate(STIMULUS_SIDE_NAMES):
            mask = self.side == side
            total = self.prob[mask].sum()
            if mask.sum() == 0:
                W[:, j] = np.nan
            elif total > 0:
                W[mask, j] = self.prob[mask] / total
            else:
                W[mask, j] = 1.0 / mask.sum()
        return W


def stimulus_classes(task: TaskConfig, params: ModelParams) -> StimulusClasses:
    """Classes, inputs, probabilities and expected rewards for ``task`` under ``params.encoding``.

    The expected reward is what the model learns from: 1 for the correct
    action, 0 for the wrong one; at c = 0 it is 0.5 for both actions with
    ``zero_reward="expected"`` and ``(1 - q, q)`` with ``zero_reward="random"``
    (``q = task.zero_reward_p_right``). The update is linear in the reward,
    so averaging over the drawn reward equals using its expectation.

    Raises
    ------
    ValueError
        If ``task.repeat_after_error`` is set (correction trials make the
        stimulus depend on the previous outcome; the mean-field theory assumes
        i.i.d. stimuli).
    """
    if not isinstance(task, TaskConfig):
        raise ValueError(f"task: expected a TaskConfig, got {type(task).__name__}")
    if not isinstance(params, ModelParams):
        raise ValueError(f"params: expected a ModelParams, got {type(params).__name__}")
    if task.repeat_after_error:
        raise ValueError("task: repeat_after_error=True is not supported by the mean-field theory (stimuli must be i.i.d.)")
    c = np.asarray(task.contrasts, dtype=float)
    p = np.asarray(task.probabilities, dtype=float)
    q = task.zero_reward_p_right if params.zero_reward == "random" else 0.5
    if params.encoding == "side":
        side = np.array(list(STIMULUS_SIDE_NAMES))
        prob = np.array([p[np.sign(c) == s].sum() for s in side])
        names = tuple(STIMULUS_SIDE_NAMES.values())
        contrast = side.astype(float)
    else:
        order = np.argsort(c)
        c, p = c[order], p[order]
        side = np.sign(c).astype(int)
        prob = p
        names = tuple(f"c={v:+g}" for v in c)
        contrast = c
    x = encode(torch.as_tensor(contrast, dtype=torch.float64), params.encoding).numpy()
    reward = np.where(side[:, None] < 0, [1.0, 0.0], np.where(side[:, None] > 0, [0.0, 1.0], [1 - q, q]))
    return StimulusClasses(names, contrast, side, prob / prob.sum(), x, reward)
