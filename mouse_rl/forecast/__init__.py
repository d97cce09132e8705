"""Animal-holdout forecasts: predict a new mouse's final sessions from its first ones.

Protocol (:mod:`.split`): mice in round-robin folds; a forecast mouse contributes only its
first ``n_context`` sessions and is scored on its final ``n_horizon``; the reference cohort
(the other folds) is observed in its context and horizon. Competitors: pooled logistic
GLMs (:mod:`.glm`), PsyTrack carried forward, and the learning models with a population
prior and a predictive through the unobserved sessions (:mod:`.learners`; with overnight weight
drift of the copies, :mod:`.drift`). Scores (:mod:`.scoring`): animal-balanced log loss, paired
bootstrap intervals, reliability.
One call: :func:`run_forecast`.
"""
from .drift import DriftForecaster
from .glm import GLM_KINDS, LogisticGLM, early_bias
from .learners import LearnerForecaster, PsyTrackForecaster
from .protocol import MODELS, ForecastResult, default_forecasters, run_forecast
from .scoring import log_loss, paired_bootstrap, reliability, summarise
from .split import ForecastFold, ForecastLeakError, assign_phases, check_no_leak, make_folds

__all__ = ["GLM_KINDS", "MODELS", "DriftForecaster", "ForecastFold", "ForecastLeakError", "ForecastResult",
           "LearnerForecaster", "LogisticGLM", "PsyTrackForecaster", "assign_phases", "check_no_leak",
           "default_forecasters", "early_bias", "log_loss", "make_folds", "paired_bootstrap", "reliability",
           "run_forecast", "summarise"]
