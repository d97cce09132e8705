"""The animal-holdout forecast protocol: phases, folds and the leak check.

Each mouse's sessions (ranked chronologically) fall into three phases:
``context`` (its first ``n_context`` sessions), ``horizon`` (its final
``n_horizon`` sessions) and ``gap`` (the sessions between). Mice sorted by
id are assigned to ``n_folds`` folds round-robin. In fold k the mice of the
other folds are the *reference cohort* (their context and horizon are
observed); each mouse of fold k is a *forecast mouse*: only its context is
observed, and it is scored on its horizon. The gap and horizon of a forecast
mouse reach the models only as a *schedule*: the task's stimuli and trial
counts, never a choice, reward or response (:data:`SCHEDULE_COLUMNS` is a
whitelist). :func:`check_no_leak` asserts both rules on every fold before any
model sees it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PHASES = ("context", "gap", "horizon")
#: Columns of a forecast mouse's gap / horizon rows that models may see (the task schedule).
SCHEDULE_COLUMNS = ("mouse", "session", "trial", "contrastLeft", "contrastRight", "signed_contrast", "phase")


class ForecastLeakError(AssertionError):
    """A forecast mouse's gap or horizon behaviour reached a model's inputs."""


@dataclass
class ForecastFold:
    """One fold of :func:`make_folds`.

    Attributes
    ----------
    fold : index (0-based).
    reference, targets : mouse ids of the reference cohort and of the forecast mice.
    observed : trial rows every model may fit: the reference mice's context and horizon,
        the forecast mice's context (column ``phase``).
    schedule : the forecast mice's gap and horizon rows, :data:`SCHEDULE_COLUMNS` only.
    truth : the forecast mice's horizon rows with their choices (scoring only; never given to a model).
    """

    fold: int
    reference: list
    targets: list
    observed: pd.DataFrame
    schedule: pd.DataFrame
    truth: pd.DataFrame


def assign_phases(trials: pd.DataFrame, n_context: int = 8, n_horizon: int = 5) -> tuple[pd.DataFrame, list]:
    """Add a ``phase`` column; returns ``(table of eligible mice, excluded mouse ids)``.

    A mouse needs at least ``n_context + n_horizon + 1`` sessions (a gap of one or more sessions)
    to be eligible.
    """
    for name, v in (("n_context", n_context), ("n_horizon", n_horizon)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name}: must be a positive integer, got {v!r}")
    df = trials.sort_values(["mouse", "session", "trial"], kind="stable").reset_index(drop=True)
    rank = df.groupby("mouse")["session"].rank(method="dense").astype(int)
    n_sess = df.groupby("mouse")["session"].transform("nunique")
    excluded = sorted(df.loc[n_sess < n_context + n_horizon + 1, "mouse"].unique())
    phase = np.where(rank <= n_context, "context", np.where(rank > n_sess - n_horizon, "horizon", "gap"))
    df["phase"] = pd.Categorical(phase, categories=PHASES)
    return df[~df["mouse"].isin(excluded)].reset_index(drop=True), excluded


def make_folds(trials: pd.DataFrame, n_folds: int = 5, n_context: int = 8,
               n_horizon: int = 5) -> tuple[list[ForecastFold], list]:
    """Split a cohort for animal-holdout forecasts; returns ``(folds, excluded mice)``.

    ``trials`` is a prepared trial table (:func:`mouse_rl.fit.prepare_trials`).
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds: must be an integer >= 2, got {n_folds!r}")
    df, excluded = assign_phases(trials, n_context, n_horizon)
    mice = sorted(df["mouse"].unique())
    if len(mice) < n_folds:
        raise ValueError(f"n_folds: {n_folds} folds need at least {n_folds} eligible mice "
                         f"(>= {n_context + n_horizon + 1} sessions each), got {len(mice)}")
    out = []
    for k in range(n_folds):
        targets = mice[k::n_folds]
        reference = [m for m in mice if m not in targets]
        is_t = df["mouse"].isin(targets)
        observed = df[(~is_t & (df["phase"] != "gap")) | (is_t & (df["phase"] == "context"))]
        later = df[is_t & (df["phase"] != "context")]
        fold = ForecastFold(k, reference, targets, observed.reset_index(drop=True),
                            later[list(SCHEDULE_COLUMNS)].reset_index(drop=True),
                            later[later["phase"] == "horizon"].reset_index(drop=True))
        check_no_leak(fold)
        out.append(fold)
    return out, excluded


def check_no_leak(fold: ForecastFold) -> None:
    """Raise :class:`ForecastLeakError` unless a forecast mouse's gap / horizon behaviour is absent from the inputs."""
    obs_t = fold.observed[fold.observed["mouse"].isin(fold.targets)]
    bad = obs_t[obs_t["phase"] != "context"]
    if len(bad):
        raise ForecastLeakError(f"fold {fold.fold}: {len(bad)} non-context rows of forecast mice "
                                f"{sorted(bad['mouse'].unique())} in the observed table")
    extra = set(fold.schedule.columns) - set(SCHEDULE_COLUMNS)
    if extra:
        raise ForecastLeakError(f"fold {fold.fold}: schedule carries behaviour columns {sorted(extra)}")
    if set(fold.observed["mouse"]) - set(fold.reference) - set(fold.targets):
        raise ForecastLeakError(f"fold {fold.fold}: observed rows of mice outside the fold")
    ctx_max = obs_t.groupby("mouse")["session"].max()
    sched_min = fold.schedule.groupby("mouse")["session"].min()
    late = ctx_max[ctx_max >= sched_min.reindex(ctx_max.index).fillna(np.inf)]
    if len(late):
        raise ForecastLeakError(f"fold {fold.fold}: observed sessions of {list(late.index)} reach their schedule")
