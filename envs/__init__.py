"""Gymnasium environments of the mouse contrast-discrimination task.

Importing this package registers ``mouse_rl/ContrastDiscrimination-v0``:
``gymnasium.make`` gives :class:`ContrastDiscriminationEnv` (one mouse) and
``gymnasium.make_vec`` the native batched :class:`CohortEnv` (torch tensors);
and ``mouse_rl/IBLTraining-v0``: :class:`IBLTrainingEnv` (one mouse) and, with
``make_vec``, :class:`IBLCohortEnv` (the IBL training protocol, batched).
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

#: The IBL training protocol (curriculum, debiasing, biased blocks): envs.ibl_task.IBLTrainingEnv.
IBL_ENV_ID = "mouse_rl/IBLTraining-v0"
if IBL_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=IBL_ENV_ID, entry_point="envs.ibl_task:IBLTrainingEnv",
                       vector_entry_point="envs.ibl_cohort:IBLCohortEnv")

from .ibl_cohort import IBLCohortEnv  # noqa: E402
from .ibl_task import IBLTrainingEnv  # noqa: E402

__all__ = ["CohortEnv", "ContrastDiscriminationEnv", "IBLCohortEnv", "IBLTrainingEnv", "TaskConfig", "ENV_ID", "IBL_ENV_ID", "DEFAULT_CONTRASTS", "DEFAULT_PROBABILITIES"]
