"""Behavioural analysis of trial tables: metrics, strategies and figures.

Metrics (:mod:`mouse_rl.analysis.metrics`): :func:`session_metrics`,
:func:`psychometric`, :func:`wilson_interval`, :func:`early_late_metrics`,
:func:`cohort_correlations`, :func:`label_learner_side`.

Strategies (re-exported from :mod:`mouse_rl.strategy`): :func:`stimulus_strength`,
:func:`strategy_of`, :func:`strategy_from_behaviour`,
:func:`strategy_from_weights_table` and the codes ``BIAS_ONLY, L_ONLY, R_ONLY,
EXPERT`` / :data:`STRATEGY_NAMES`.

IBL training criteria (:mod:`mouse_rl.analysis.training_criteria`,
:mod:`mouse_rl.analysis.psychometric_fit`): :func:`training_status`,
:func:`sessions_to_trained`, :func:`evaluate_criterion`, ``TRAINED_1A``,
``TRAINED_1B``, :func:`fit_psychometric`, :func:`erf_psychometric`.

Figures (:mod:`mouse_rl.analysis.plots`): :func:`plot_learning_curves`,
:func:`plot_psychometrics`, :func:`plot_early_late`.
"""
from mouse_rl.analysis.metrics import (
    MissingTrialsWarning,
    cohort_correlations,
    early_late_metrics,
    label_learner_side,
    psychometric,
    session_metrics,
    session_metrics_from_summaries,
    wilson_interval,
)
from mouse_rl.analysis.psychometric_fit import erf_psychometric, fit_psychometric, fit_psychometric_counts
from mouse_rl.analysis.training_criteria import (
    TRAINED_1A,
    TRAINED_1B,
    TrainingCriterion,
    evaluate_criterion,
    sessions_to_trained,
    training_status,
)
from mouse_rl.analysis.plots import plot_early_late, plot_learning_curves, plot_psychometrics
from mouse_rl.strategy import (
    BIAS_ONLY,
    EXPERT,
    L_ONLY,
    R_ONLY,
    STRATEGY_NAMES,
    stimulus_strength,
    strategy_from_behaviour,
    strategy_from_weights_table,
    strategy_names,
    strategy_of,
)

__all__ = [
    "MissingTrialsWarning",
    "session_metrics",
    "session_metrics_from_summaries",
    "psychometric",
    "wilson_interval",
    "early_late_metrics",
    "cohort_correlations",
    "label_learner_side",
    "erf_psychometric",
    "fit_psychometric",
    "fit_psychometric_counts",
    "TRAINED_1A",
    "TRAINED_1B",
    "TrainingCriterion",
    "evaluate_criterion",
    "sessions_to_trained",
    "training_status",
    "plot_learning_curves",
    "plot_psychometrics",
    "plot_early_late",
    "BIAS_ONLY",
    "L_ONLY",
    "R_ONLY",
    "EXPERT",
    "STRATEGY_NAMES",
    "stimulus_strength",
    "strategy_of",
    "strategy_names",
    "strategy_from_behaviour",
    "strategy_from_weights_table",
]
