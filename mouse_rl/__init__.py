"""mouse_rl: a deep RL network model of mice learning a visual decision task.

Quick start::

    import mouse_rl
    result = mouse_rl.simulate_cohort(n_mice=30, n_sessions=25, seed=0)
    sessions = mouse_rl.analysis.session_metrics(result.trials)
"""
import envs as _envs  # registers the gymnasium environments

from .network import Forward, TrialStep, Weights, encode, forward, init_weights, p_right, trial_update
from .params import ModelParams, NetParams
from .simulate import CohortResult, simulate_cohort

__version__ = "0.1.0"
TaskConfig = _envs.TaskConfig

__all__ = [
    "CohortResult", "Forward", "ModelParams", "NetParams", "TaskConfig", "TrialStep", "Weights",
    "encode", "forward", "init_weights", "p_right", "simulate_cohort", "trial_update",
]
