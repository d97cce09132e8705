"""Parameter recovery: simulate mice with known parameters, fit them, compare."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from ..params import PARAMS, ModelParams, check_names
from .fitting import FitResult, fit_mice

#: Parameters drawn per mouse and fitted, by default.
RECOVERY_FREE = ("eta", "beta", "b_L", "b_R")
#: Ranges (natural units) the true values are drawn from: each registry parameter's ``recovery_range``
#: (:data:`mouse_rl.params.PARAMS`), uniform, or log-uniform for :data:`LOG_UNIFORM`. They describe the
#: simulated population, not where the fit starts: they reach 0 for the biases and the lapse (unbiased,
#: lapse-free mice are included).
DEFAULT_RANGES = {name: spec.recovery_range[:2] for name, spec in PARAMS.items()}
LOG_UNIFORM = tuple(name for name, spec in PARAMS.items() if spec.recovery_range[2] == "log")


class RecoveryResult(NamedTuple):
    """Output of :func:`parameter_recovery` (unpacks as ``summary, table, fit``).

    summary : :func:`recovery_summary` table (Pearson r, bias, median relative error per parameter).
    table : per mouse, true (``<name>_true``) and fitted (``<name>_fit``) values.
    fit : the :class:`~mouse_rl.fit.fitting.FitResult` of the simulated mice.
    """

    summary: pd.DataFrame
    table: pd.DataFrame
    fit: FitResult


def sample_params(n_mice: int, free=RECOVERY_FREE, ranges: dict | None = None,
                  base: ModelParams | None = None, seed: int = 0) -> ModelParams:
    """Per-mouse :class:`ModelParams` with the ``free`` parameters drawn from ``ranges``; the rest from ``base``.

    ``ranges``: ``{name: (low, high)}`` in natural units, overriding :data:`DEFAULT_RANGES`.
    """
    ranges = {**DEFAULT_RANGES, **(ranges or {})}
    gen = np.random.default_rng(seed)
    vals = {}
    for name in check_names(free):
        lo, hi = ranges[name]
        log = name in LOG_UNIFORM
        if not lo <= hi or (log and lo <= 0):
            need = "0 < low <= high (log-uniform)" if log else "low <= high"
            raise ValueError(f"ranges[{name!r}]: need {need}, got ({lo}, {hi})")
        vals[name] = np.exp(gen.uniform(np.log(lo), np.log(hi), n_mice)) if log else gen.uniform(lo, hi, n_mice)
    return (base or ModelParams()).replace(**vals)


def recovery_summary(truth: pd.DataFrame, fitted: pd.DataFrame, names) -> pd.DataFrame:
    """Per parameter: Pearson r, bias (mean fitted - true), median relative error; also ``b_R-b_L``.

    ``truth`` and ``fitted`` are per-mouse tables with a ``mouse`` column.
    """
    m = truth.merge(fitted, on="mouse", suffixes=("_true", "_fit"))
    names = list(names)
    if "b_L" in names and "b_R" in names:
        for s in ("_true", "_fit"):
            m["b_R-b_L" + s] = m["b_R" + s] - m["b_L" + s]
        names.append("b_R-b_L")
    rows = []
    for n in names:
        t, f = m[n + "_true"].to_numpy(float), m[n + "_fit"].to_numpy(float)
        ok = np.isfinite(t) & np.isfinite(f)
        r = np.corrcoef(t[ok], f[ok])[0, 1] if ok.sum() > 2 and np.std(t[ok]) > 0 else np.nan
        rel = np.median(np.abs(f[ok] - t[ok]) / np.maximum(np.abs(t[ok]), 1e-12))
        rows.append({"parameter": n, "pearson_r": r, "bias": float(np.mean(f[ok] - t[ok])),
                     "median_rel_error": rel, "n_mice": int(ok.sum())})
    return pd.DataFrame(rows)


def parameter_recovery(n_mice: int = 30, n_sessions: int = 8, trials_per_session: int = 150,
                       free=RECOVERY_FREE, ranges: dict | None = None,
                       base: ModelParams | None = None, seed: int = 0, n_restarts: int = 4,
                       max_iter: int = 100, method: str = "newton", engine: str = "eager", device="cpu",
                       progress: bool = False) -> RecoveryResult:
    """Simulate ``n_mice`` with known parameters, fit them, and summarise recovery.

    Parameters
    ----------
    n_mice, n_sessions, trials_per_session : size of the simulated cohort.
    free : parameters drawn per mouse *and* fitted; every other parameter is
        fixed at ``base`` (default :class:`ModelParams`, lapse 0) in both.
    ranges : overrides of :data:`DEFAULT_RANGES`.
    n_restarts, max_iter, method, engine : passed to :func:`fit_mice`.

    Returns
    -------
    RecoveryResult
        ``summary``, ``table`` and ``fit`` (unpacks as a 3-tuple).
    """
    from ..simulate import mouse_names, simulate_cohort

    free = check_names(free)
    base = base or ModelParams()
    truth_params = sample_params(n_mice, free, ranges, base, seed)
    sim = simulate_cohort(n_mice, n_sessions, trials_per_session, truth_params, seed=seed, device=device,
                          dtype=torch.float64, progress=progress)
    fit = fit_mice(sim.trials, n_restarts=n_restarts, max_iter=max_iter, method=method, free=free, fixed=base,
                   fit_lapse="lapse" in free, device=device, seed=seed, progress=progress, engine=engine,
                   compute_se=False, per_trial=False)
    truth = pd.DataFrame({"mouse": mouse_names(n_mice),
                          **{n: np.broadcast_to(np.asarray(getattr(truth_params, n), float), (n_mice,))
                             for n in free}})
    fitted = fit.params[["mouse", *free]]
    table = truth.merge(fitted, on="mouse", suffixes=("_true", "_fit"))
    return RecoveryResult(recovery_summary(truth, fitted, free), table, fit)
