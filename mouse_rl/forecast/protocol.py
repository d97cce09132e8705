"""Run the animal-holdout forecast protocol (:mod:`mouse_rl.forecast.split`) for many models."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..fit.batch import prepare_trials
from .drift import DEFAULT_GRID, SELECT, check_grid
from .glm import GLM_KINDS, LogisticGLM
from .learners import LearnerForecaster, PsyTrackForecaster
from .scoring import per_mouse, reliability, summarise
from .split import check_no_leak, make_folds

MODELS = ("glm_psychometric", "glm_late_phase", "glm_early_bias", "psytrack", "qlearning_tabular", "shallow",
          "network")
#: Forecasters run only when named (``models=[...]``, ``--models``): the network fitted by its free-running
#: behaviour (:mod:`mouse_rl.forecast.freerun`); the network whose copies drift overnight, the drift sds
#: chosen on the reference horizons (:mod:`mouse_rl.forecast.drift`).
OPTIONAL_MODELS = ("network_freerun", "network_drift")


def default_forecasters(n_copies: int = 100, n_restarts: int = 4, em_iter: int = 4, seed: int = 0,
                        drift_grid: dict | None = None, drift_select: str = "own") -> dict:
    """Name -> factory of every compared forecaster (a fresh one per fold); ``drift_grid``: the
    ``network_drift`` grid of overnight sds (default :data:`mouse_rl.forecast.drift.DEFAULT_GRID`) and
    ``drift_select`` the reference score that picks them (:class:`~mouse_rl.forecast.drift.DriftForecaster`)."""
    from ..baselines import QLearningModel
    from ..fit.cv import NetworkModel
    from .drift import DriftForecaster
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
    out["network_drift"] = lambda: DriftForecaster(lambda d: NetworkModel(d, n_restarts=n_restarts, seed=seed),
                                                   "network_drift", n_copies=n_copies, em_iter=em_iter, seed=seed,
                                                   sigma_grid=drift_grid, select=drift_select)
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
    options : the run's options; with a model that chooses a setting on the reference cohort (e.g.
        ``network_drift``'s drift sds), ``options["tuning"]``: one record per (fold, model) of its choice.
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
                 progress: bool = False, drift_grid: dict | None = None,
                 drift_select: str = "own") -> ForecastResult:
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
    drift_grid : ``{group: sds}`` searched by ``network_drift`` (default
        :data:`mouse_rl.forecast.drift.DEFAULT_GRID`; validated by :func:`mouse_rl.forecast.drift.check_grid`).
    drift_select : the reference score that picks ``network_drift``'s sds: ``"own"`` (its own predictive),
        ``"recalibrated"`` or ``"stacked"``.
    """
    df = prepare_trials(trials)
    if drift_grid is not None:
        drift_grid = check_grid(drift_grid)
    if drift_select not in SELECT:
        raise ValueError(f"drift_select: must be one of {SELECT}, got {drift_select!r}")
    available = default_forecasters(n_copies, n_restarts, em_iter, seed, drift_grid, drift_select)
    if models is None:
        models = {k: available[k] for k in MODELS}
    elif not isinstance(models, dict):
        unknown = [m for m in models if m not in available]
        if unknown:
            raise ValueError(f"models: unknown {unknown}; choose from {list(available)}")
        models = {k: available[k] for k in models}
    folds, excluded = make_folds(df, n_folds, n_context, n_horizon)
    preds, tuning = [], []
    bar = tqdm(total=len(folds) * len(models), desc="forecast", unit="fit", disable=not progress)
    for fold in folds:
        check_no_leak(fold)
        horizon = (fold.schedule["phase"] == "horizon").to_numpy()
        for name, factory in models.items():
            bar.set_postfix_str(f"fold {fold.fold} {name}")
            model = factory().fit(fold.observed, fold.targets)
            if getattr(model, "tuning", None):
                tuning.append({"fold": fold.fold, "model": name, **model.tuning})
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
    options = dict(n_folds=n_folds, n_context=n_context, n_horizon=n_horizon, n_copies=n_copies,
                   n_restarts=n_restarts, em_iter=em_iter, seed=seed)
    if "network_drift" in models:
        options["drift_grid"] = {g: list(v) for g, v in (drift_grid or DEFAULT_GRID).items()}
        options["drift_select"] = drift_select
    if tuning:
        options["tuning"] = tuning
    return ForecastResult(predictions, scores, summarise(scores, seed=seed), reliability(predictions), fold_of,
                          excluded, options)
