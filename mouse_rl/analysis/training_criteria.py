"""IBL training criteria (``trained_1a``, ``trained_1b``) on any trial table, real or simulated.

Source: ibllib ``brainbox/behavior/training.py`` (``criterion_1a``,
``criterion_1b``, ``compute_training_info``, ``compute_performance_easy``,
``compute_median_reaction_time``, ``get_training_status``), which implements
Appendix 2 of the IBL protocol for mice training (IBL et al. 2021, eLife
10:e63711; figshare 11634729). Numbers used, all evaluated over the **last 3
sessions** (the window ending at the session being judged):

=====================  ============================  ============================
quantity               trained_1a                    trained_1b
=====================  ============================  ============================
\\|bias\\| (% contrast)   < 16                          < 10
threshold (% contrast)  < 19                          < 20 (sic: looser than 1a)
each lapse rate         < 0.2                         < 0.1
trials per session      > 200 in each of the 3        > 400 in each of the 3
easy-trial accuracy     > 0.8 in each session         > 0.9 in each session
median RT at 0 %        --                            < 2 s (pooled over the window)
zero contrast shown     required                      required
=====================  ============================  ============================

"Easy" trials are \\|c\\| >= 50 %. The psychometric (bias, threshold, lapses)
is fitted once to all trials of the window pooled, with ibllib's criterion
fit (:data:`mouse_rl.analysis.psychometric_fit.CRITERION_BOX`). As in
``get_training_status``, 1b is tested first; a window that passes 1b is
"trained 1b" (a mouse may reach 1a and 1b in the same session).

Differences from ibllib, by necessity of the trial table:

* ibllib counts trials (``n_trials``) and scores easy-trial accuracy with
  no-go trials included (a no-go is an error); mouse_rl tables have no no-go
  trials (loaders drop them), so both are computed without them.
* ibllib computes RT as ``response_times - stimOn_times``; the trial table's
  ``response_times`` is already relative to stimulus onset (s). Where a window
  has no RTs at all (simulated mice, files without RTs) the RT rule is
  skipped unless ``require_rt=True`` (ibllib would fail it: NaN < 2 is False).
* A window needs 3 sessions; earlier sessions are "in training" (ibllib
  evaluates whatever sessions exist when a subject has fewer than 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mouse_rl.analysis.psychometric_fit import CRITERION_BOX, PSYCHOMETRIC_PARAMETERS, fit_psychometric

__all__ = [
    "TrainingCriterion",
    "TRAINED_1A",
    "TRAINED_1B",
    "IN_TRAINING",
    "session_summary",
    "evaluate_criterion",
    "training_status",
    "sessions_to_trained",
]

IN_TRAINING = "in training"
_ZERO_TOL = 1e-9


@dataclass(frozen=True)
class TrainingCriterion:
    """One IBL training criterion; every bound is strict, as in ibllib.

    Parameters
    ----------
    name : str
        ``"trained_1a"`` or ``"trained_1b"`` (any label for custom criteria).
    max_abs_bias, max_threshold : float
        Upper bounds on \\|bias\\| and threshold (percent contrast).
    max_lapse : float
        Upper bound on each lapse rate (fraction).
    min_perf_easy : float
        Lower bound on the fraction correct on easy trials, in every session.
    min_trials : int
        Lower bound on the trial count (count), in every session.
    max_median_rt_zero : float or None
        Upper bound on the median response time at zero contrast (s); None = no RT rule.
    n_sessions : int
        Sessions in the window (count).
    easy_contrast : float
        \\|signed contrast\\| (fraction) from which a trial is "easy".
    """

    name: str
    max_abs_bias: float
    max_threshold: float
    max_lapse: float
    min_perf_easy: float
    min_trials: int
    max_median_rt_zero: float | None = None
    n_sessions: int = 3
    easy_contrast: float = 0.5

    @property
    def status(self) -> str:
        """ibllib's status string, e.g. ``"trained 1a"``."""
        return self.name.replace("_", " ")


#: ibllib ``criterion_1a``.
TRAINED_1A = TrainingCriterion("trained_1a", max_abs_bias=16, max_threshold=19, max_lapse=0.2,
                               min_perf_easy=0.8, min_trials=200)
#: ibllib ``criterion_1b``.
TRAINED_1B = TrainingCriterion("trained_1b", max_abs_bias=10, max_threshold=20, max_lapse=0.1,
                               min_perf_easy=0.9, min_trials=400, max_median_rt_zero=2.0)


def _check_table(trials: pd.DataFrame) -> None:
    if not isinstance(trials, pd.DataFrame):
        raise TypeError(f"trials: must be a pandas DataFrame, got {type(trials).__name__}")
    missing = [c for c in ("mouse", "session", "signed_contrast", "choice", "reward") if c not in trials.columns]
    if missing:
        raise ValueError(f"trials: missing required column(s) {missing}")
    if len(trials) == 0:
        raise ValueError("trials: the table is empty")


def session_summary(trials: pd.DataFrame, easy_contrast: float = 0.5) -> pd.DataFrame:
    """Per mouse and session: the per-session quantities of the IBL criteria.

    Returns
    -------
    pandas.DataFrame
        ``mouse``, ``session``, ``n_trials`` (count), ``perf_easy`` (fraction
        correct on \\|c\\| >= ``easy_contrast``; NaN without easy trials),
        ``has_zero`` (a zero-contrast trial was shown), ``n_rt_zero`` (zero-contrast
        trials with an RT) and ``median_rt_zero`` (s; NaN without).
    """
    _check_table(trials)
    c = trials["signed_contrast"].to_numpy(float)
    easy = np.abs(c) >= easy_contrast - _ZERO_TOL
    zero = np.abs(c) < _ZERO_TOL
    rt = trials["response_times"].to_numpy(float) if "response_times" in trials.columns else np.full(len(c), np.nan)
    frame = pd.DataFrame({
        "mouse": trials["mouse"].to_numpy(),
        "session": trials["session"].to_numpy(),
        "correct_easy": np.where(easy, trials["reward"].to_numpy(float) == 1, np.nan),
        "zero": zero,
        "rt_zero": np.where(zero, rt, np.nan),
    })
    g = frame.groupby(["mouse", "session"], sort=True)
    out = pd.DataFrame({
        "n_trials": g.size(),
        "perf_easy": g["correct_easy"].mean(),
        "has_zero": g["zero"].any(),
        "n_rt_zero": g["rt_zero"].count(),
        "median_rt_zero": g["rt_zero"].median(),
    })
    return out.reset_index()


def _passes(criterion: TrainingCriterion, psych: dict, n_trials, perf_easy, has_zero: bool,
            median_rt: float, require_rt: bool) -> dict:
    checks = {
        "zero_contrast": bool(has_zero),
        "n_trials": bool(np.all(np.asarray(n_trials) > criterion.min_trials)),
        "perf_easy": bool(np.all(np.asarray(perf_easy) > criterion.min_perf_easy)),
        "bias": bool(abs(psych["bias"]) < criterion.max_abs_bias),
        "threshold": bool(psych["threshold"] < criterion.max_threshold),
        "lapse_low": bool(psych["lapse_low"] < criterion.max_lapse),
        "lapse_high": bool(psych["lapse_high"] < criterion.max_lapse),
    }
    if criterion.max_median_rt_zero is not None and (require_rt or np.isfinite(median_rt)):
        checks["median_rt_zero"] = bool(median_rt < criterion.max_median_rt_zero)
    return checks


def evaluate_criterion(trials: pd.DataFrame, criterion: TrainingCriterion = TRAINED_1A, *,
                       require_rt: bool = False, seed: int = 0) -> dict:
    """Apply one criterion to one mouse's window of sessions (all rows of ``trials``).

    ``trials`` holds the sessions to judge together (normally the last 3 of one
    mouse; use :func:`training_status` to slide the window over a history).

    Returns
    -------
    dict
        ``passed`` (bool), ``checks`` (rule -> bool), the fitted psychometric
        (``bias``, ``threshold`` in percent; ``lapse_low``, ``lapse_high``),
        ``n_trials`` and ``perf_easy`` per session (lists), ``median_rt_zero`` (s).
    """
    _check_table(trials)
    if trials["mouse"].nunique() != 1:
        raise ValueError(f"mouse: evaluate_criterion takes one mouse, got {sorted(trials['mouse'].unique())[:5]}")
    summary = session_summary(trials, criterion.easy_contrast)
    psych = fit_psychometric(trials, box=CRITERION_BOX, seed=seed)
    rt = _pooled_median_rt(trials)
    checks = _passes(criterion, psych, summary["n_trials"], summary["perf_easy"], bool(summary["has_zero"].any()),
                     rt, require_rt)
    return {
        "passed": all(checks.values()),
        "checks": checks,
        **{k: psych[k] for k in PSYCHOMETRIC_PARAMETERS},
        "n_trials": summary["n_trials"].tolist(),
        "perf_easy": summary["perf_easy"].tolist(),
        "median_rt_zero": rt,
    }


def _pooled_median_rt(trials: pd.DataFrame) -> float:
    if "response_times" not in trials.columns:
        return np.nan
    zero = np.abs(trials["signed_contrast"].to_numpy(float)) < _ZERO_TOL
    rt = trials["response_times"].to_numpy(float)[zero]
    return float(np.nanmedian(rt)) if np.isfinite(rt).any() else np.nan


def training_status(trials: pd.DataFrame, criteria=(TRAINED_1A, TRAINED_1B), *, require_rt: bool = False,
                    fit_all: bool = False, seed: int = 0) -> pd.DataFrame:
    """Training status after every session of every mouse (window = that session and the ones before it).

    Parameters
    ----------
    trials : pandas.DataFrame
        Trial table (:mod:`mouse_rl.schema`): ``mouse``, ``session``,
        ``signed_contrast`` (fraction), ``choice`` (1 = Right), ``reward``;
        ``response_times`` (s) optional.
    criteria : sequence of TrainingCriterion
        Checked from the last (strictest) to the first, as ibllib does; the
        first passed gives the status. Default (1a, 1b).
    require_rt : bool
        Fail the RT rule where a window has no zero-contrast RTs (ibllib
        behaviour) instead of skipping it.
    fit_all : bool
        Fit the psychometric in every full window. Default: only where the
        per-session rules (trial counts, easy accuracy, zero contrast) of the
        loosest criterion pass, since no criterion can pass otherwise (the
        psychometric columns are NaN there).
    seed : int
        Seed of the psychometric fits' random restarts.

    Returns
    -------
    pandas.DataFrame
        One row per mouse and session: ``mouse``, ``session``, ``window``
        (sessions in the window, count), ``n_trials_min``, ``perf_easy_min``,
        ``has_zero``, ``median_rt_zero`` (s), ``bias``, ``threshold``,
        ``lapse_low``, ``lapse_high``, one bool column per criterion name
        (e.g. ``trained_1a``) and ``status`` (``"in training"``,
        ``"trained 1a"``, ``"trained 1b"``).
    """
    _check_table(trials)
    criteria = tuple(criteria)
    if not criteria:
        raise ValueError("criteria: give at least one TrainingCriterion")
    loosest = min(criteria, key=lambda c: (c.min_trials, c.min_perf_easy))
    easy = loosest.easy_contrast
    summary = session_summary(trials, easy)
    rows = []
    for mouse, per_mouse in trials.groupby("mouse", sort=True):
        mouse_summary = summary[summary["mouse"] == mouse].sort_values("session").reset_index(drop=True)
        sessions = mouse_summary["session"].to_numpy()
        for i, session in enumerate(sessions):
            n_window = max(c.n_sessions for c in criteria)
            window = mouse_summary.iloc[max(0, i - n_window + 1): i + 1]
            row = {"mouse": mouse, "session": int(session), "window": len(window),
                   "n_trials_min": int(window["n_trials"].min()), "perf_easy_min": float(window["perf_easy"].min()),
                   "has_zero": bool(window["has_zero"].any()), "median_rt_zero": np.nan,
                   **dict.fromkeys(PSYCHOMETRIC_PARAMETERS, np.nan), **{c.name: False for c in criteria},
                   "status": IN_TRAINING}
            rows.append(row)
            if len(window) < n_window:
                continue
            cheap_ok = (row["has_zero"] and row["n_trials_min"] > loosest.min_trials
                        and np.all(window["perf_easy"].to_numpy() > loosest.min_perf_easy))
            if not (cheap_ok or fit_all):
                continue
            in_window = per_mouse[per_mouse["session"].isin(window["session"])]
            psych = fit_psychometric(in_window, box=CRITERION_BOX, seed=seed)
            rt = _pooled_median_rt(in_window)
            row.update({k: psych[k] for k in PSYCHOMETRIC_PARAMETERS}, median_rt_zero=rt)
            for crit in reversed(criteria):
                checks = _passes(crit, psych, window["n_trials"], window["perf_easy"], row["has_zero"], rt, require_rt)
                row[crit.name] = all(checks.values())
                if row[crit.name] and row["status"] == IN_TRAINING:
                    row["status"] = crit.status
    return pd.DataFrame(rows)


def sessions_to_trained(trials_or_status: pd.DataFrame, criterion: str | TrainingCriterion = TRAINED_1A,
                        **status_kwargs) -> pd.DataFrame:
    """First session at which each mouse is trained (by ``criterion`` or a stricter one).

    Parameters
    ----------
    trials_or_status : pandas.DataFrame
        A trial table (``choice`` column; :func:`training_status` is run on it
        with ``status_kwargs``) or :func:`training_status`' output.
    criterion : str or TrainingCriterion
        ``"trained_1a"`` (default) counts a mouse as trained once any window
        passes 1a or 1b (ibllib: a mouse may skip the 1a status);
        ``"trained_1b"`` requires 1b.

    Returns
    -------
    pandas.DataFrame
        One row per mouse: ``mouse``, ``n_sessions`` (count), ``trained``
        (bool), ``sessions_to_trained`` (session number at which the criterion
        was first met, i.e. the sessions it took counting the first as 1; NaN
        if never).
    """
    name = criterion.name if isinstance(criterion, TrainingCriterion) else str(criterion)
    if name not in (TRAINED_1A.name, TRAINED_1B.name):
        raise ValueError(f"criterion: must be 'trained_1a' or 'trained_1b', got {name!r}")
    status = trials_or_status
    if "choice" in status.columns:
        status = training_status(status, **status_kwargs)
    passing_columns = [TRAINED_1A.name, TRAINED_1B.name] if name == TRAINED_1A.name else [TRAINED_1B.name]
    missing = [c for c in ["mouse", "session", *passing_columns] if c not in status.columns]
    if missing:
        raise ValueError(f"trials_or_status: missing column(s) {missing}; pass a trial table or training_status() output")
    passed = status[passing_columns].any(axis=1)
    rows = []
    for mouse, per_mouse in status.assign(passed=passed).groupby("mouse", sort=True):
        per_mouse = per_mouse.sort_values("session")
        hit = per_mouse.loc[per_mouse["passed"], "session"]
        rows.append({"mouse": mouse, "n_sessions": int(per_mouse["session"].nunique()), "trained": not hit.empty,
                     "sessions_to_trained": float(hit.iloc[0]) if not hit.empty else np.nan})
    return pd.DataFrame(rows)
