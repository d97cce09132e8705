"""Gymnasium environments of the mouse contrast-discrimination task.

Importing this package registers ``mouse_rl/ContrastDiscrimination-v0``:
``gymnasium.make`` gives :class:`ContrastDiscriminationEnv` (one mouse) and
``gymnasium.make_vec`` the native batched :class:`CohortEnv` (torch tensors).
"""
import gymnasium

from .cohort_env import CohortEnv
from .contrast_env import ContrastDiscriminationEnv
from .task import DEFAULT_CONTRASTS, DEFAULT_PROBABILITIES, TaskConfig

ENV_ID = "mouse_rl/ContrastDiscrimination-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="envs.contrast_env:ContrastDiscriminationEnv",
        vector_entry_point="envs.cohort_env:CohortEnv",
    )

__all__ = ["CohortEnv", "ContrastDiscriminationEnv", "TaskConfig", "ENV_ID", "DEFAULT_CONTRASTS", "DEFAULT_PROBABILITIES"]
