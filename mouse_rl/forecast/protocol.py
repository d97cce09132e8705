"""Run the animal-holdout forecast protocol (:mod:`mouse_rl.forecast.split`) for many models."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..fit.batch import prepare_trials
from .glm import GLM_KINDS, LogisticGLM
from .learners import LearnerForecaster, PsyTrackForecaster
from .scoring import per_mouse, reliability, summarise
from .split import check_no_leak, make_folds

MODELS = ("glm_psychometric", "glm_late_phase", "glm_early_bias", "psytrack", "qlearning_tabular", "shallow",
          "network")
#: Forecasters run only when named (``models=[...]``, ``--models``): the network fitted by its free-running
#: behaviour (:mod:`mouse_rl.forecast.freerun`).
OPTIONAL_MODELS = ("network_freerun",)


def default_forecasters(n_copies: int = 100, n_restarts: int = 4, em_iter: int = 4, seed: int = 0) -> dict:
    """Name -> factory of every compared forecaster (a fresh one per fold)."""
    from ..baselines import QLearningModel
    from ..fit.cv import NetworkModel
    from .freerun import FreeRunForecaster

    def learner(factory, name, iters=em_iter):
        return lambda: LearnerForecaster(factory, name, n_copies=n_copies, em_iter=iters, seed=seed)

    out = {f"glm_{k}": (lambda k=k: LogisticGLM(k)) for k in GLM_KINDS}
    out["psytrack"] = PsyTrackForecaster
    out["qlearning_tabular"] = learner(  # torch autograd over a per-trial loop: fewer, shorter fits
        lambda d: QLearningModel(d, tabular=True, n_restarts=1, max_iter=40, refine_iter=10, seed=seed),
        "qlearning_tabular", min(em_iter, 2))
    out["shallow"] = learner(lambda d: NetworkModel.shallow(d, n_restarts=n_restarts, seed=seed), "shallow")
    out["network"] = learner(lambda d: NetworkModel(d, n_restarts=n_restarts, seed=seed), "network")
    out["network_freerun"] = lambda: FreeRunForecaster(n_copies=n_copies, seed=seed)
    return out


@dataclass
class ForecastResult:
    """Output of :func:`run_forecast`.

    Attributes
    ----------
    predictions : one row per (model, horizon trial of a forecast mouse): ``mouse``, ``session``,
        ``trial``, ``signed_contrast``, ``fold``, ``p_right`` (forecast), ``choice`` (real).
    scores : per (model, mouse): mean log loss (nats/trial) on the horizon, ``n_trials``.
    summary : per model: animal-balanced log loss and the paired bootstrap interval of its
        difference from the best GLM (:func:`mouse_rl.forecast.scoring.summarise`).
    reliability : reliability curve per model.
    folds : mouse -> fold; excluded : mice with too few sessions.
    """

    predictions: pd.DataFrame
    scores: pd.DataFrame
    summary: pd.DataFrame
    reliability: pd.DataFrame
    folds: pd.DataFrame
    excluded: list
    options: dict = field(default_factory=dict)


def run_forecast(trials: pd.DataFrame, models=None, n_folds: int = 5, n_context: int = 8, n_horizon: int = 5,
                 n_copies: int = 100, n_restarts: int = 4, em_iter: int = 4, seed: int = 0,
                 progress: bool = False) -> ForecastResult:
    """Forecast every eligible mouse's final ``n_horizon`` sessions from its first ``n_context``.

    Parameters
    ----------
    trials : trial table of a cohort (validated here).
    models : names from :data:`MODELS` (default all) or a dict name -> zero-argument factory of a
        forecaster with ``fit(observed, targets)`` and ``predict(schedule)`` -> P(Right) of every
        schedule row (or a dict variant name -> P(Right), e.g. a learner and its recalibrated forecast).
    n_folds : folds of mice (sorted by id, assigned round-robin).
    n_copies : parameter draws x free-running copies per mouse for the learning models.
    n_restarts, em_iter : starts of the networks' MAP fits; EM iterations of the population fit.
    seed : seeds the copies, the restarts and the bootstrap.
    progress : progress bar over (fold, model).
    """
    df = prepare_trials(trials)
    available = default_forecasters(n_copies, n_restarts, em_iter, seed)
    if models is None:
        models = {k: available[k] for k in MODELS}
    elif not isinstance(models, dict):
        unknown = [m for m in models if m not in available]
        if unknown:
            raise ValueError(f"models: unknown {unknown}; choose from {list(available)}")
        models = {k: available[k] for k in models}
    folds, excluded = make_folds(df, n_folds, n_context, n_horizon)
    preds = []
    bar = tqdm(total=len(folds) * len(models), desc="forecast", unit="fit", disable=not progress)
    for fold in folds:
        check_no_leak(fold)
        horizon = (fold.schedule["phase"] == "horizon").to_numpy()
        for name, factory in models.items():
            bar.set_postfix_str(f"fold {fold.fold} {name}")
            model = factory().fit(fold.observed, fold.targets)
            out = model.predict(fold.schedule)
            truth = fold.truth[["mouse", "session", "trial", "signed_contrast", "choice"]].reset_index(drop=True)
            for variant, p in (out.items() if isinstance(out, dict) else [(name, out)]):
                p = np.asarray(p, float)
                if p.shape != (len(fold.schedule),) or not np.all(np.isfinite(p[horizon])):
                    raise RuntimeError(f"forecast: model {variant!r} returned {p.shape} / non-finite forecasts")
                preds.append(truth.assign(model=variant, fold=fold.fold, p_right=p[horizon]))
            bar.update()
    bar.close()
    predictions = pd.concat(preds, ignore_index=True)
    scores = per_mouse(predictions)
    fold_of = pd.DataFrame([(m, f.fold) for f in folds for m in f.targets], columns=["mouse", "fold"])
    return ForecastResult(predictions, scores, summarise(scores, seed=seed), reliability(predictions), fold_of,
                          excluded, dict(n_folds=n_folds, n_context=n_context, n_horizon=n_horizon,
                                         n_copies=n_copies, n_restarts=n_restarts, em_iter=em_iter, seed=seed))
