"""Free-running fit: parameters whose own simulated learning looks like the mouse (an option).

The default fit (:func:`mouse_rl.fit.fit_mice`) is teacher-forced: the network learns from the mouse's
own choices, so it never has to *produce* the mouse's strategy, and free-running copies of a fitted mouse
often end on a random side (``python bench/fit_real_mice.py --trust``). This fit asks the generative
question directly. For a parameter vector θ, ``n_copies`` copies run free (choosing for themselves with
:func:`mouse_rl.network.trial_update`) on the mouse's own stimulus sequence and session lengths; the
mouse's trajectory of per-session choice rates

    y = (P(R | left stimulus), P(R | c = 0), P(R | right stimulus)) for every session  (3 S numbers)

is scored against the copies' trajectories x_1..x_K by the **energy score** (Gneiting & Raftery 2007),

    ES(θ) = (1/K) Σ_k ||x_k − y|| − 1/(2K²) Σ_{k,l} ||x_k − x_l||     (Euclidean norm over the 3 S rates),

a proper scoring rule for multivariate distributions known only through samples: its expectation over
the data is smallest when the copies' distribution is the data's. It scores whole trajectories, so copies
that reach the mouse's session-by-session rates *together* (the same side, at the same time) beat copies
that cover them only one session at a time. Rates of the copies come from their sampled choices, like the
mouse's (sampling noise on both sides); a rate a session cannot have (no trials of that kind) is left out.

Search: per mouse, a scrambled Sobol design of ``n_starts`` points over the free parameters' start box
(the registry ``init_range``, widened by :data:`WIDEN` in unconstrained units, inside the fit bounds), then
``n_gen`` generations of the cross-entropy method (``popsize`` draws from a diagonal Gaussian, refitted to
the ``n_elite`` best, smoothed). Common random numbers: a mouse's copies use the same choice streams
(seeded by its name, :func:`mouse_rl.fit.checks.copy_seeds`) for every θ, so the score is a fixed,
piecewise-smooth function of θ and candidates are compared on the same noise. Each mouse is fitted on its
own, so its result does not depend on the other mice. There is no likelihood, hence no Hessian or standard
errors; :func:`mouse_rl.fit.checks.posterior_predictive_check` of such a fit uses the point estimate
(``parameter_uncertainty=False``).
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.stats import qmc
from tqdm.auto import tqdm

from ..params import NetParams
from .batch import TrialBatch, make_batch, prepare_trials
from .checks import _session_table, copy_seeds, free_run
from .fitting import make_transform
from .transforms import INIT_RANGES, ParamTransform

#: Free parameters of the free-running fit: the default set and the per-side stimulus skew (a free-running
#: one-sided learner needs a way to learn one stimulus first).
FREERUN_FREE = ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse", "stim_skew")
#: The Sobol start box is the registry ``init_range`` widened by this much on each side (unconstrained units:
#: a factor e on log-scaled parameters).
WIDEN = 1.0
#: Session rates scored: P(Right) on left-stimulus, zero-contrast and right-stimulus trials.
RATES = ("p_right_left", "p_right_zero", "p_right_right")


def energy_score(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Energy score of observations ``y`` ``(D,)`` under sample sets ``x`` ``(D, N, K)``: ``(N,)`` (lower = better).

    ``ES = mean_k ||x_k - y|| - 0.5 mean_{k,l} ||x_k - x_l||``; in one dimension it is the CRPS. Entries of
    ``y`` that are NaN are left out (with the same rows of ``x``); NaN in ``x`` where ``y`` is finite raises.
    """
    y, x = np.asarray(y, float), np.asarray(x, float)
    if x.ndim != 3 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x: expected shape (D, N, K) with D = {y.shape[0]}, got {x.shape}")
    ok = np.isfinite(y)
    y, x = y[ok], x[ok]
    if not np.all(np.isfinite(x)):
        raise ValueError("x: NaN where the observation is finite")
    d_xy = np.sqrt(((x - y[:, None, None]) ** 2).sum(0))                  # (N, K)
    d_xx = np.sqrt(((x[:, :, :, None] - x[:, :, None, :]) ** 2).sum(0))   # (N, K, K)
    return d_xy.mean(1) - 0.5 * d_xx.mean((1, 2))


def session_rates(batch: TrialBatch, choice: np.ndarray) -> np.ndarray:
    """``(3 S, B)`` per-session rates (:data:`RATES`, session-major) of each column's choices ``(T, B)``."""
    st = _session_table(batch, np.asarray(choice, float))
    return np.stack([st[k] for k in RATES], 1).reshape(-1, st[RATES[0]].shape[1])


def search_box(transform: ParamTransform) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners ``(P,)`` of the Sobol start design, unconstrained units."""
    lo = transform.to_u({n: INIT_RANGES[n][0] for n in transform.free}, 1)[0].numpy() - WIDEN
    hi = transform.to_u({n: INIT_RANGES[n][1] for n in transform.free}, 1)[0].numpy() + WIDEN
    blo, bhi = transform.bounds_u()
    return np.maximum(lo, blo), np.minimum(hi, bhi)


@dataclass
class FreeRunFit:
    """Output of :func:`fit_free_running`.

    params : one row per mouse (sorted): fitted parameters (natural units), ``energy_score`` (of the
        fitted θ, on the fit's own copies), ``n_copies``, ``n_trials``, ``fit_seconds`` (that mouse).
    u : ``(M, P)`` unconstrained parameters (columns ``transform.free``).
    history : one row per (mouse, generation): the best energy score so far.
    """

    params: pd.DataFrame
    u: np.ndarray
    transform: ParamTransform
    history: pd.DataFrame
    options: dict = field(default_factory=dict)


def _mouse_seed(mouse) -> int:
    return zlib.crc32(str(mouse).encode())


def _scores(batch: TrialBatch, y: np.ndarray, transform: ParamTransform, u: np.ndarray, seeds: np.ndarray,
            encoding: str, positive: bool, zero_reward: str) -> np.ndarray:
    """Energy score ``(N,)`` of each θ in ``u`` ``(N, P)`` for the one mouse of ``batch``."""
    N, K = len(u), len(seeds)
    big = batch.repeat(N * K)  # column n * K + k: copy k of candidate n
    params = transform.params(torch.as_tensor(np.repeat(u, K, axis=0), dtype=torch.float64))
    with torch.no_grad():
        choice, _ = free_run(big, params, np.tile(seeds, N), encoding, positive, zero_reward)
    x = session_rates(big, choice.cpu().numpy()).reshape(-1, N, K)
    return energy_score(y, x)


def fit_free_running(trials: pd.DataFrame, free=FREERUN_FREE, fixed=None, n_copies: int = 16,
                     n_starts: int = 128, popsize: int = 24, n_elite: int = 6, n_gen: int = 15, seed: int = 0,
                     chunk: int = 64, progress: bool = False) -> FreeRunFit:
    """Fit every mouse by the energy score of its per-session choice rates under free-running copies.

    Parameters
    ----------
    trials : trial table of one or more mice (validated here).
    free : registry parameters to fit (default :data:`FREERUN_FREE`); the others from ``fixed``.
    fixed : :class:`~mouse_rl.params.ModelParams` of the non-free parameters and options (encoding,
        zero_reward, positive; default MODEL.md).
    n_copies : free-running copies per candidate θ (the same choice streams for every θ).
    n_starts : Sobol design points per mouse; ``popsize``, ``n_elite``, ``n_gen``: cross-entropy search.
    seed : seed of the design, the search draws and the copies' choice streams.
    chunk : candidates simulated per call (memory: ``chunk x n_copies`` columns of the mouse's trials).
    progress : a progress bar over mice.

    Returns
    -------
    FreeRunFit
    """
    for name, v, low in (("n_copies", n_copies, 2), ("n_starts", n_starts, 1), ("popsize", popsize, 2),
                         ("n_elite", n_elite, 2), ("n_gen", n_gen, 0), ("chunk", chunk, 1)):
        if isinstance(v, bool) or int(v) != v or v < low:
            raise ValueError(f"{name}: must be an integer >= {low}, got {v!r}")
    if n_elite > popsize:
        raise ValueError(f"n_elite: must be <= popsize ({popsize}), got {n_elite}")
    transform = make_transform(free, fixed)
    fx = transform.fixed
    df = prepare_trials(trials)
    lo, hi = search_box(transform)
    blo, bhi = transform.bounds_u()
    P = transform.n_free
    rows, us, hist = [], [], []
    mice = sorted(df["mouse"].astype(str).unique())
    for mouse in tqdm(mice, desc="free-running fit", unit="mouse", disable=not progress):
        t0 = time.perf_counter()
        batch = make_batch(df[df["mouse"].astype(str) == mouse], fx.zero_reward, "cpu", torch.float64,
                           prepared=True)
        y = session_rates(batch, batch.choice.cpu().numpy())[:, 0]
        seeds = copy_seeds([mouse], n_copies, seed)[:, 0]

        def score(u):
            return np.concatenate([_scores(batch, y, transform, u[i:i + chunk], seeds, fx.encoding, fx.positive,
                                           fx.zero_reward) for i in range(0, len(u), chunk)])

        u0 = lo + qmc.Sobol(d=P, scramble=True, seed=seed).random(n_starts) * (hi - lo)
        f0 = score(u0)
        elite = np.argsort(f0, kind="stable")[:n_elite]
        best_u, best_f = u0[elite[0]].copy(), float(f0[elite[0]])
        mean, sd = u0[elite].mean(0), u0[elite].std(0) + 0.1 * (hi - lo)
        gen = np.random.default_rng([int(seed), _mouse_seed(mouse)])
        hist.append((mouse, 0, best_f))
        for g in range(1, n_gen + 1):
            cand = np.clip(mean + sd * gen.standard_normal((popsize, P)), blo, bhi)
            cand[0] = best_u  # re-scored on the same streams: the same value, keeps the elite honest
            f = score(cand)
            elite = np.argsort(f, kind="stable")[:n_elite]
            if f[elite[0]] < best_f:
                best_u, best_f = cand[elite[0]].copy(), float(f[elite[0]])
            mean = 0.7 * cand[elite].mean(0) + 0.3 * mean
            sd = 0.7 * cand[elite].std(0) + 0.3 * sd
            hist.append((mouse, g, best_f))
        us.append(best_u)
        nat = transform.params(torch.as_tensor(best_u[None], dtype=torch.float64))
        rows.append({"mouse": mouse, **{f: float(getattr(nat, f)[0]) for f in NetParams._fields},
                     "energy_score": best_f, "n_copies": n_copies, "n_trials": int(batch.n_trials[0]),
                     "fit_seconds": time.perf_counter() - t0})
    return FreeRunFit(pd.DataFrame(rows), np.array(us).reshape(len(mice), P), transform,
                      pd.DataFrame(hist, columns=["mouse", "generation", "energy_score"]),
                      dict(free=tuple(transform.free), n_copies=n_copies, n_starts=n_starts, popsize=popsize,
                           n_elite=n_elite, n_gen=n_gen, seed=seed))


def check_free_running(result: FreeRunFit, trials: pd.DataFrame, n_copies: int = 50, seed: int = 1):
    """:func:`~mouse_rl.fit.checks.posterior_predictive_check` of a free-running fit at its point estimate.

    ``seed`` should differ from the fit's, so the check's copies are fresh choice streams (the fit chose θ
    on its own streams).
    """
    from .checks import posterior_predictive_check

    P = result.transform.n_free
    precision = np.broadcast_to(np.eye(P), (len(result.u), P, P))  # unused without parameter uncertainty
    return posterior_predictive_check(trials, result.u, precision, result.transform, n_copies, seed,
                                      parameter_uncertainty=False)
