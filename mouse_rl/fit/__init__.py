"""Fit the cortex -> striatum network to mice's choices (mouse_rl/MODEL.md section 6).

Likelihood (:mod:`.likelihood`): :func:`log_likelihood`, :func:`teacher_forced`
run the single learning rule :func:`mouse_rl.network.trial_update`
teacher-forced on each mouse's own stimuli, choices and rewards, batched over
mice x restarts. Fitting (:mod:`.fitting`): :func:`fit_mice` -> :class:`FitResult`, per-mouse trust-region Newton
(:mod:`.newton`) on the exact derivatives of the fused kernel (:mod:`.kernel`, :mod:`.objective`).
Posterior-predictive checks (:mod:`.checks`): :func:`check_fit`. Free-running fit (:mod:`.freerun`, an
option): :func:`fit_free_running` chooses θ by how free-running copies reproduce the mouse's sessions;
:func:`check_free_running` checks it. Session effects (:mod:`.session_effects`, an option):
:func:`fit_session_effects` fits each mouse's day-to-day bias and engagement gain; the checks simulate them.
Hierarchical fit (:mod:`.population`): :func:`fit_population` (empirical Bayes,
Gaussian population prior :class:`GaussianPrior`; ``fit_mice(..., population=True)``).
Cross-validation (:mod:`.cv`): :func:`cross_validate`, :func:`time_split`,
:func:`interleaved_split`, :class:`NetworkModel`; held-out choices scored at the
fit or by the Laplace posterior predictive (:mod:`.predictive`). Parameter recovery
(:mod:`.recovery`): :func:`parameter_recovery`. Strategy labels (:mod:`.labels`).
"""
from .batch import TrialBatch, learning_reward, make_batch, prepare_trials
from .checks import CheckResult, check_fit, free_run, posterior_predictive_check
from .cv import CVModel, NetworkModel, cross_validate, interleaved_split, time_split
from .freerun import FreeRunFit, check_free_running, choice_precision, fit_free_running
from .fitting import BatchFit, FitResult, fit_batch, fit_mice, identifiability, make_transform, standard_errors
from .labels import strategy_labels
from .likelihood import choice_logprob, log_likelihood, teacher_forced, unroll
from .population import PopulationFit, fit_population
from .predictive import laplace_covariance, laplace_samples, predictive_loglik, predictive_trial_logp
from .prior import GaussianPrior
from .statespace import NoisyFit, NoisyNetworkModel, fit_noisy, simulate_noisy
from .recovery import parameter_recovery, recovery_summary
from .session_effects import fit_session_effects
from .transforms import DEFAULT_FREE, ParamTransform

__all__ = [
    "DEFAULT_FREE",
    "BatchFit",
    "CVModel",
    "CheckResult",
    "FitResult",
    "FreeRunFit",
    "fit_free_running",
    "fit_session_effects",
    "check_free_running",
    "choice_precision",
    "GaussianPrior",
    "PopulationFit",
    "NetworkModel",
    "ParamTransform",
    "TrialBatch",
    "check_fit",
    "choice_logprob",
    "cross_validate",
    "fit_batch",
    "fit_mice",
    "fit_population",
    "fit_noisy",
    "simulate_noisy",
    "NoisyFit",
    "NoisyNetworkModel",
    "free_run",
    "identifiability",
    "interleaved_split",
    "laplace_covariance",
    "laplace_samples",
    "learning_reward",
    "log_likelihood",
    "make_batch",
    "make_transform",
    "parameter_recovery",
    "posterior_predictive_check",
    "predictive_loglik",
    "predictive_trial_logp",
    "prepare_trials",
    "recovery_summary",
    "standard_errors",
    "strategy_labels",
    "teacher_forced",
    "time_split",
    "unroll",
]
