"""Which model teaching signal explains each region's dopamine? Cross-validated regression.

For each mouse (or the pooled cohort), region and model (one candidate delta
at a time, and all candidates jointly)::

    da(t) = gain_s . delta(t) + offset_s + noise          (s = session of t)

* In-sample: gain and offset per session (table ``gains``), ``r2_in``.
* Cross-validated R^2, leave-one-session-out (``r2_cv``): the gain of a
  held-out session is the pooled within-session gain of the other sessions;
  its offset is the held-out session's own mean (a per-session nuisance that
  the per-session normalisation of real data also absorbs, identical for all
  candidate deltas). R^2 is measured against the within-session variance.
* Null distribution (``p_value``): the same statistic with the delta series
  decoupled from the dopamine series, either by permuting whole session
  blocks of delta between the mouse's sessions (``null="sessions"``, a
  derangement; blocks are tiled/truncated to the target session's length) or
  by a circular shift of the mouse's whole delta sequence by 10-90 % of its
  length (``null="circular"``).

The best delta of a region is the single candidate with the highest
``r2_cv``. Everything is closed form (per-session sufficient statistics), so
hundreds of null draws per mouse take milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mouse_rl.data import DataFormatError

from ._common import DELTAS, outcome_deltas, require
from .recordings import align_recordings, normalise_per_session, region_columns

__all__ = ["RegressionReport", "delta_regression", "regress_recordings", "cv_r2"]

#: Null distributions of the regression (module doc): permuted session blocks or circular shifts.
NULLS = ("sessions", "circular")
_RIDGE = 1e-9


@dataclass
class RegressionReport:
    """``scores``: one row per (unit, region, model) with r2_cv, r2_in, p_value,
    null_mean, null_q95, n_trials, n_sessions. ``gains``: in-sample per-session
    gain and offset per (unit, region, model, term, session). ``best``: per
    (unit, region) the best single delta, its r2_cv and margin over the runner-up,
    p_value, significant. ``summary``: per region, how many units picked each delta."""

    scores: pd.DataFrame
    gains: pd.DataFrame
    best: pd.DataFrame
    summary: pd.DataFrame

    def __repr__(self) -> str:
        return f"RegressionReport(best=\n{self.summary.to_string(index=False)}\n)"


def _session_stats(y, X, inv, n):
    """Per-session centred cross-products: A (S,p,p), b (S,p), c (S,), means."""
    cnt = np.bincount(inv, minlength=n).astype(float)
    ym = np.bincount(inv, y, minlength=n) / cnt
    Xm = np.stack([np.bincount(inv, X[:, j], minlength=n) for j in range(X.shape[1])], -1) / cnt[:, None]
    yc, Xc = y - ym[inv], X - Xm[inv]
    p = X.shape[1]
    A = np.empty((n, p, p))
    for i in range(p):
        for j in range(i, p):
            A[:, i, j] = A[:, j, i] = np.bincount(inv, Xc[:, i] * Xc[:, j], minlength=n)
    b = np.stack([np.bincount(inv, Xc[:, j] * yc, minlength=n) for j in range(p)], -1)
    c = np.bincount(inv, yc * yc, minlength=n)
    return A, b, c, ym, Xm


def _cv_from_stats(A, b, c) -> float:
    p = A.shape[-1]
    eye = _RIDGE * np.eye(p)
    if A.shape[0] < 2:
        return np.nan
    beta = np.linalg.solve(A.sum(0) - A + eye, (b.sum(0) - b)[..., None])[..., 0]
    sse = c - 2 * np.einsum("sp,sp->s", beta, b) + np.einsum("sp,spq,sq->s", beta, A, beta)
    return float(1 - sse.sum() / c.sum())


def cv_r2(y, X, sessions) -> float:
    """Leave-one-session-out R^2 of ``y`` on the columns of ``X`` (per-session offsets)."""
    y = np.asarray(y, float)
    X = np.asarray(X, float).reshape(len(y), -1)
    _, inv = np.unique(np.asarray(sessions), return_inverse=True)
    A, b, c, _, _ = _session_stats(y, X, inv, inv.max() + 1)
    return _cv_from_stats(A, b, c)


def _derangement(rng, n):
    if n < 2:
        return np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def _null_X(X, inv, starts, lengths, rng, null):
    if null == "circular" or len(lengths) < 2:
        n = len(X)
        shift = rng.integers(max(1, n // 10), max(2, (9 * n) // 10))
        return np.roll(X, shift, axis=0)
    perm = _derangement(rng, len(lengths))
    blocks = [np.resize(X[starts[src]:starts[src] + lengths[src]], (lengths[k], X.shape[1]))
              for k, src in enumerate(perm)]
    return np.concatenate(blocks, 0)


def delta_regression(data: pd.DataFrame, regions=None, candidates=DELTAS, *, by: str | None = "mouse",
                     n_null: int = 100, null: str = "sessions", joint: bool = True, alpha: float = 0.05,
                     seed: int = 0) -> RegressionReport:
    """Regress each region on each candidate (and jointly); see the module doc.

    Parameters
    ----------
    data : one row per recorded trial with ``session``, ``trial``, the
        candidate columns and the ``da_*`` columns (see :func:`regress_recordings`).
    regions : region columns (default all ``da_*``).
    candidates : candidate signal columns (default the three deltas).
    by : ``"mouse"`` (one analysis per mouse) or None (pool all mice; sessions
        are (mouse, session) pairs).
    n_null, null : number and kind of null draws (``"sessions"`` or ``"circular"``); 0 = none.
    joint : also fit all candidates together (model name ``"joint"``).
    alpha : significance level for ``best.significant`` (p <= alpha; p >= 1 / (n_null + 1)).
    seed : seed of the null draws.
    """
    if null not in NULLS:
        raise ValueError(f"null: must be one of {NULLS}, got {null!r}")
    candidates = list(candidates)
    regions = list(regions) if regions is not None else region_columns(data)
    if not regions:
        raise DataFormatError("delta_regression: no region columns (names starting with 'da_')")
    require(data, ["session", "trial"] + candidates + regions + ([by] if by else []), "regression data")
    models = [(c, [c]) for c in candidates] + ([("joint", candidates)] if joint and len(candidates) > 1 else [])
    rng = np.random.default_rng(seed)
    score_rows, gain_rows = [], []
    units = [(None, data)] if by is None else list(data.groupby(by, sort=True))
    for unit, df in units:
        sess_key = ["mouse", "session"] if by is None and "mouse" in df.columns else ["session"]
        df = df.sort_values(sess_key + ["trial"], kind="stable")
        for region in regions:
            d = df[np.isfinite(df[region].to_numpy(float)) & np.isfinite(df[candidates].to_numpy(float)).all(1)]
            if len(d) < 3:
                continue
            inv = d.groupby(sess_key, sort=False).ngroup().to_numpy()  # sessions in data order
            starts = np.flatnonzero(np.r_[True, inv[1:] != inv[:-1]])
            lengths = np.bincount(inv)
            y = d[region].to_numpy(float)
            for name, cols in models:
                X = d[cols].to_numpy(float)
                A, b, c, ym, Xm = _session_stats(y, X, inv, len(lengths))
                r2 = _cv_from_stats(A, b, c)
                beta_s = np.linalg.solve(A + _RIDGE * np.eye(len(cols)), b[..., None])[..., 0]
                r2_in = float(1 - (c - np.einsum("sp,sp->s", beta_s, b)).sum() / c.sum())
                offsets = ym - np.einsum("sp,sp->s", beta_s, Xm)
                sess_col = d["session"].to_numpy()[starts]
                for j, term in enumerate(cols):
                    gain_rows.append(pd.DataFrame({"unit": [unit] * len(starts), "region": region, "model": name,
                                                   "term": term, "session": sess_col, "gain": beta_s[:, j],
                                                   "offset": offsets}))
                nulls = np.array([_cv_from_stats(*_session_stats(y, _null_X(X, inv, starts, lengths, rng, null),
                                                                  inv, len(lengths))[:3])
                                  for _ in range(n_null)])
                p = (1 + np.sum(nulls >= r2)) / (1 + n_null) if n_null else np.nan
                score_rows.append({"unit": unit, "region": region, "model": name, "r2_cv": r2, "r2_in": r2_in,
                                   "p_value": p, "null_mean": nulls.mean() if n_null else np.nan,
                                   "null_q95": np.quantile(nulls, 0.95) if n_null else np.nan,
                                   "n_trials": len(y), "n_sessions": len(lengths)})
    scores = pd.DataFrame(score_rows)
    gains = pd.concat(gain_rows, ignore_index=True) if gain_rows else pd.DataFrame()
    best_rows = []
    if len(scores):
        single = scores[scores["model"].isin(candidates)]
        for (unit, region), g in single.groupby(["unit", "region"], sort=False, dropna=False):
            g = g.sort_values("r2_cv", ascending=False)
            top = g.iloc[0]
            second = g.iloc[1] if len(g) > 1 else None
            best_rows.append({"unit": unit, "region": region, "best_delta": top["model"], "r2_cv": top["r2_cv"],
                              "runner_up": None if second is None else second["model"],
                              "margin": np.nan if second is None else top["r2_cv"] - second["r2_cv"],
                              "p_value": top["p_value"],
                              "significant": bool(top["p_value"] <= alpha) if n_null else None})
    best = pd.DataFrame(best_rows)
    if by:
        scores, gains, best = (t.rename(columns={"unit": by}) if len(t) else t for t in (scores, gains, best))
    summary = pd.DataFrame(columns=["region", "best_delta", "n", "fraction"])
    if len(best):
        summary = best.groupby(["region", "best_delta"]).size().rename("n").reset_index()
        summary["fraction"] = summary["n"] / summary.groupby("region")["n"].transform("sum")
    return RegressionReport(scores, gains, best, summary)


def regress_recordings(trials: pd.DataFrame, recordings: pd.DataFrame, *, reward_mode: str = "experienced",
                       normalise: bool = False, **kwargs) -> RegressionReport:
    """Align ``recordings`` to ``trials``, compute the candidate deltas and run :func:`delta_regression`.

    ``reward_mode``: see :func:`mouse_rl.dopamine.readouts.readout_table`.
    ``normalise``: apply :func:`normalise_per_session` first (for raw peaks).
    """
    data = align_recordings(trials, recordings)
    deltas = outcome_deltas(data, reward_mode)
    for name in DELTAS:
        data[name] = deltas[name].to_numpy()
    if normalise:
        data = normalise_per_session(data)
    return delta_regression(data, **kwargs)
