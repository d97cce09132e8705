"""Fit the cortex -> striatum network to mice's choices (MODEL.md section 6).

Likelihood (:mod:`.likelihood`): :func:`log_likelihood`, :func:`teacher_forced`
run the single learning rule :func:`mouse_rl.network.trial_update`
teacher-forced on each mouse's own stimuli, choices and rewards, batched over
mice x restarts. Fitting (:mod:`.fitting`): :func:`fit_mice` -> :class:`FitResult`.
Cross-validation (:mod:`.cv`): :func:`cross_validate`, :func:`time_split`,
:func:`interleaved_split`, :class:`NetworkModel`; held-out choices scored at the
fit or by the Laplace posterior predictive (:mod:`.predictive`). Parameter recovery
(:mod:`.recovery`): :func:`parameter_recovery`. Strategy labels (:mod:`.labels`).
"""
from .batch import TrialBatch, learning_reward, make_batch, prepare_trials
from .fitting import FitResult, fit_batch, fit_mice, make_transform, standard_errors
from .likelihood import choice_logprob, log_likelihood, teacher_forced, unroll
from .predictive import laplace_covariance, laplace_samples, predictive_loglik, predictive_trial_logp
from .transforms import DEFAULT_FREE, ParamTransform

__all__ = [
    "DEFAULT_FREE",
    "FitResult",
    "ParamTransform",
    "TrialBatch",
    "choice_logprob",
    "fit_batch",
    "fit_mice",
    "laplace_covariance",
    "laplace_samples",
    "learning_reward",
    "log_likelihood",
    "make_batch",
    "make_transform",
    "predictive_loglik",
    "predictive_trial_logp",
    "prepare_trials",
    "standard_errors",
    "teacher_forced",
    "unroll",
]


def __getattr__(name):  # lazy: cv / recovery / labels pull in optional modules
    if name in ("cross_validate", "time_split", "interleaved_split", "NetworkModel", "CVModel"):
        from . import cv
        return getattr(cv, name)
    if name in ("parameter_recovery", "recovery_summary"):
        from . import recovery
        return getattr(recovery, name)
    if name in ("strategy_labels",):
        from . import labels
        return getattr(labels, name)
    raise AttributeError(name)
