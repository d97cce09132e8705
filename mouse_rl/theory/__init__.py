"""Theory of the deep linear network: closed forms, mean-field dynamics, fixed points.

* :mod:`~mouse_rl.theory.closed_forms`: one-mode learning curves and plateau times.
* :mod:`~mouse_rl.theory.mean_field`: the expected trial update (the same
  :func:`mouse_rl.network.trial_update`, averaged over stimulus classes and
  actions), iterated per trial, batched over initial conditions.
* :mod:`~mouse_rl.theory.fixed_points`, :mod:`~mouse_rl.theory.strategy_graph`:
  strategies as fixed points, their stability, saddle escapes, predicted stages.
* :mod:`~mouse_rl.theory.compare`: theory versus simulated cohorts.
"""
from .classes import StimulusClasses, stimulus_classes
from .closed_forms import (
    escape_time,
    learning_time_gap,
    shallow_rhs,
    shallow_time_to_fraction,
    shallow_trajectory,
    two_layer_rhs,
    two_layer_time_to_fraction,
    two_layer_trajectory,
)
from .compare import Comparison, compare_deep_shallow, compare_with_simulation
from .fixed_points import FixedPoint, find_fixed_points, fixed_points_frame, flow_jacobian
from .mean_field import MeanFieldMap, MeanFieldResult, MeanFieldStep, mean_field_step, mean_field_trajectory
from .strategy_graph import StrategyGraph, predict_stages, run_lengths, strategy_graph

__all__ = [
    "StimulusClasses", "stimulus_classes",
    "escape_time", "learning_time_gap", "shallow_rhs", "shallow_time_to_fraction", "shallow_trajectory",
    "two_layer_rhs", "two_layer_time_to_fraction", "two_layer_trajectory",
    "Comparison", "compare_deep_shallow", "compare_with_simulation",
    "FixedPoint", "find_fixed_points", "fixed_points_frame", "flow_jacobian",
    "MeanFieldMap", "MeanFieldResult", "MeanFieldStep", "mean_field_step", "mean_field_trajectory",
    "StrategyGraph", "predict_stages", "run_lengths", "strategy_graph",
]
