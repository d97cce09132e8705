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
own, so its result does not depend on the other mice.

Parameter uncertainty: the energy score is not a likelihood, so the fit has no Laplace posterior of its
own. :func:`choice_precision` gives each mouse a Laplace-type precision at the fitted θ instead: the
expected (Fisher) information that the mouse's choices carry about θ under the network learning from them
(:meth:`mouse_rl.fit.objective.KernelObjective.choice_information`, positive semi-definite at any θ, unlike
the observed Hessian away from the likelihood's optimum), plus the registry's weak prior. ``FreeRunFit.precision``
holds it, and :func:`check_free_running` draws the copies' θ from ``N(θ, precision^-1)`` (as the default fit's
check draws from its Laplace posterior); the drift sds are not drawn (point estimates). Where the choices say
little about a direction under teacher forcing (often the bias weights, the lapse and ``stim_skew``), the
draws there follow the weak prior, so this spread is generous; ``parameter_uncertainty=False`` gives the
check at the point estimate.

Overnight drift (an option, ``drift=("bias",)`` / ``("stim",)`` / ``("bias", "stim")``; default none =
MODEL.md): the copies' weights jump at every session start by log-normal noise of sd ``sigma_day_<group>``
(:mod:`mouse_rl.fit.drift`), one extra free parameter per group fitted by the same energy score (log
scale, bounds :data:`mouse_rl.fit.drift.SIGMA_BOUNDS`, start design over
:data:`mouse_rl.fit.drift.SIGMA_START`), so the score itself chooses how much day-to-day variability the
copies need. The drift noise is common to all candidates (counter-based, seeded by the copy).
``theta=`` holds θ (e.g. a teacher-forced fit's) and fits only the drift.

Summary features (an option, ``summary_weight > 0``; default 0): the scored vector also holds the check's
early bias and late slope difference (:func:`score_vector`), so copies must also match how one-sided the
mouse ends up. On the 25 Liebana mice, ``drift=("bias", "stim"), summary_weight=1`` meets the check's
targets in-sample in most fits (README), but on mice simulated from the model the same procedure is not
calibrated (it explains sides learned by chance by the parameters; ``bench/check_calibration.py --freerun``),
and :class:`FreeRunModel` / ``bench/freerun_holdout.py`` show it does not predict held-out sides.
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
from .batch import TrialBatch, make_batch, prepare_trials, row_mask
from .checks import _mouse_metrics, _session_table, copy_seeds, free_run
from .drift import SIGMA_BOUNDS, SIGMA_START, check_groups, free_run_drift, sigma_matrix
from .session_effects import check_sd, session_gains, session_offsets
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


def score_vector(batch: TrialBatch, choice: np.ndarray, summary_weight: float = 0.0) -> np.ndarray:
    """``(D, B)`` vectors the energy score compares: :func:`session_rates` (``D = 3 S``) and, with
    ``summary_weight > 0``, the check's per-mouse early bias and late slope difference
    (:func:`mouse_rl.fit.checks.posterior_predictive_check`) times ``summary_weight * sqrt(S)`` (two more
    rows; with weight 1 each counts in the squared distance like a whole session trajectory of one rate).
    A fixed feature map of the choices, so the score stays proper."""
    st = _session_table(batch, np.asarray(choice, float))
    rates = np.stack([st[k] for k in RATES], 1).reshape(-1, st[RATES[0]].shape[1])
    if summary_weight == 0:
        return rates
    mm = _mouse_metrics(st)
    w = summary_weight * np.sqrt(st["accuracy"].shape[0])
    return np.concatenate([rates, w * mm["early_bias"][None], w * mm["late_slope_diff"][None]])


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
    sigma_day : ``{group: (M,) sd}`` fitted overnight drift (log-weight units; empty without ``drift``),
        also in ``params`` as ``sigma_day_<group>``.
    history : one row per (mouse, generation): the best energy score so far.
    precision : ``(M, P, P)`` Laplace-type precision of ``u`` (:func:`choice_precision`: the choices'
        expected information at ``u`` plus the registry prior), for the check's parameter draws.
    session_bias_sd, session_gain_sd : ``(M,)`` sds of the copies' session effects
        (:mod:`mouse_rl.fit.session_effects`) the fit was run with, or None.
    """

    params: pd.DataFrame
    u: np.ndarray
    transform: ParamTransform
    history: pd.DataFrame
    options: dict = field(default_factory=dict)
    sigma_day: dict = field(default_factory=dict)
    precision: np.ndarray | None = None
    session_bias_sd: np.ndarray | None = None
    session_gain_sd: np.ndarray | None = None

    def sigma_day_matrix(self) -> np.ndarray | None:
        """``(M, 9)`` per-weight drift sds for :func:`~mouse_rl.fit.checks.posterior_predictive_check`, or None."""
        return sigma_matrix(self.sigma_day, len(self.u)) if self.sigma_day else None


def _mouse_seed(mouse) -> int:
    return zlib.crc32(str(mouse).encode())


def _scores(batch: TrialBatch, y: np.ndarray, transform: ParamTransform, u: np.ndarray, seeds: np.ndarray,
            encoding: str, positive: bool, zero_reward: str, drift: tuple = (),
            summary_weight: float = 0.0, session_sd: tuple | None = None) -> np.ndarray:
    """Energy score ``(N,)`` of each θ in ``u`` ``(N, P + G)`` for the one mouse of ``batch``
    (the last G columns: log sigma_day of the ``drift`` groups); ``session_sd``: the copies' session
    effects ``(bias sd, gain sd)`` (:mod:`mouse_rl.fit.session_effects`), or None."""
    N, K = len(u), len(seeds)
    P = transform.n_free
    big = batch.repeat(N * K)  # column n * K + k: copy k of candidate n
    params = transform.params(torch.as_tensor(np.repeat(u[:, :P], K, axis=0), dtype=torch.float64))
    offset = gain = None
    if session_sd is not None:
        offset = session_offsets(big, np.tile(seeds, N), session_sd[0])
        gain = session_gains(big, np.tile(seeds, N), session_sd[1])
    with torch.no_grad():
        if drift:
            sd = sigma_matrix({g: np.repeat(np.exp(u[:, P + i]), K) for i, g in enumerate(drift)}, N * K)
            choice, _ = free_run_drift(big, params, np.tile(seeds, N), sd, encoding, positive, zero_reward,
                                       offset=offset, gain=gain)
        else:
            choice, _ = free_run(big, params, np.tile(seeds, N), encoding, positive, zero_reward, offset=offset,
                                 gain=gain)
    x = score_vector(big, choice.cpu().numpy(), summary_weight).reshape(-1, N, K)
    return energy_score(y, x)


def fit_free_running(trials: pd.DataFrame, free=FREERUN_FREE, fixed=None, n_copies: int = 16,
                     n_starts: int = 128, popsize: int = 24, n_elite: int = 6, n_gen: int = 15, seed: int = 0,
                     chunk: int = 64, progress: bool = False, drift=(), theta=None,
                     summary_weight: float = 0.0, observed=None, session_bias_sd=None,
                     session_gain_sd=None) -> FreeRunFit:
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
    drift : weight groups with overnight drift (:data:`mouse_rl.fit.drift.GROUPS`: ``"bias"``, ``"stim"``),
        each adding a free ``sigma_day_<group>`` (log-weight sd per night); ``()`` (default): no drift,
        the copies of MODEL.md.
    summary_weight : >= 0; above 0 the score also compares the per-mouse early bias and late slope
        difference (:func:`score_vector`; an option, default 0: session rates only). On mice simulated from
        the model it over-fits which side a mouse learned by chance, and the check's session bands become
        too narrow (``python bench/check_calibration.py --freerun``: 71-75% of sessions where the true model
        gives 88.5%; 84-86% with weight 0).
    theta : optional ``(M, P)`` unconstrained parameters (mice sorted by name, columns ``transform.free``,
        e.g. a teacher-forced fit's ``u``) held fixed: only the ``drift`` sds are searched (needs ``drift``).
    observed : optional boolean mask over the rows of ``prepare_trials(trials)`` (as
        :mod:`mouse_rl.fit.cv`'s splits): only these rows' choices enter the mouse's scored rates (held-out
        choices are left out; a session or summary with no observed choices drops out of the score). The
        copies still run on every trial's stimulus and session length. Default: every row.
    session_bias_sd, session_gain_sd : optional ``(M,)`` sds of each mouse's session effects (mice sorted by
        name; e.g. :func:`mouse_rl.fit.session_effects.fit_session_effects` at a teacher-forced fit), held fixed:
        every session of every copy gets its own logit offset and gain on beta (an option;
        :mod:`mouse_rl.fit.session_effects`; one given alone: the other 0).

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
    drift = check_groups(drift)
    if isinstance(summary_weight, bool) or not np.isfinite(summary_weight) or summary_weight < 0:
        raise ValueError(f"summary_weight: must be a finite number >= 0, got {summary_weight!r}")
    transform = make_transform(free, fixed)
    fx = transform.fixed
    if drift and not fx.positive:
        raise ValueError("drift: the overnight drift needs positive weights (fixed.positive=True), got positive=False")
    df = prepare_trials(trials)
    observed = row_mask(observed, len(df), "observed")
    mice = sorted(df["mouse"].astype(str).unique())
    if theta is not None:
        theta = np.asarray(theta, float)
        if not drift:
            raise ValueError("theta: fixed parameters leave nothing to fit without drift; give drift=(...)")
        if theta.shape != (len(mice), transform.n_free) or not np.all(np.isfinite(theta)):
            raise ValueError(f"theta: expected finite shape {(len(mice), transform.n_free)} (mice x free), "
                             f"got {theta.shape}")
    session = session_bias_sd is not None or session_gain_sd is not None
    if session:
        session_bias_sd = check_sd(0.0 if session_bias_sd is None else session_bias_sd, len(mice), "session_bias_sd")
        session_gain_sd = check_sd(0.0 if session_gain_sd is None else session_gain_sd, len(mice), "session_gain_sd")
    lo, hi = search_box(transform)
    blo, bhi = transform.bounds_u()
    G = len(drift)
    lo, hi = np.r_[lo, [np.log(SIGMA_START[0])] * G], np.r_[hi, [np.log(SIGMA_START[1])] * G]
    blo, bhi = np.r_[blo, [np.log(SIGMA_BOUNDS[0])] * G], np.r_[bhi, [np.log(SIGMA_BOUNDS[1])] * G]
    P = transform.n_free + G
    if theta is not None:  # search the drift only
        lo, hi, blo, bhi = lo[-G:], hi[-G:], blo[-G:], bhi[-G:]
        P = G
    rows, us, hist = [], [], []
    for m, mouse in enumerate(tqdm(mice, desc="free-running fit", unit="mouse", disable=not progress)):
        t0 = time.perf_counter()
        mine = (df["mouse"].astype(str) == mouse).to_numpy()
        batch = make_batch(df[mine], fx.zero_reward, "cpu", torch.float64, prepared=True)
        seen = batch.mask_from_rows(observed[mine]).cpu().numpy()
        y = score_vector(batch, np.where(seen, batch.choice.cpu().numpy(), np.nan), summary_weight)[:, 0]
        seeds = copy_seeds([mouse], n_copies, seed)[:, 0]

        def full(u):
            return u if theta is None else np.concatenate([np.broadcast_to(theta[m], (len(u), theta.shape[1])), u], 1)

        def score(u):
            return np.concatenate([_scores(batch, y, transform, full(u[i:i + chunk]), seeds, fx.encoding,
                                           fx.positive, fx.zero_reward, drift, summary_weight,
                                           (session_bias_sd[m], session_gain_sd[m]) if session else None)
                                   for i in range(0, len(u), chunk)])

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
        best_u = full(best_u[None])[0]
        us.append(best_u)
        nat = transform.params(torch.as_tensor(best_u[None, :transform.n_free], dtype=torch.float64))
        rows.append({"mouse": mouse, **{f: float(getattr(nat, f)[0]) for f in NetParams._fields},
                     **{f"sigma_day_{g}": float(np.exp(best_u[transform.n_free + i])) for i, g in enumerate(drift)},
                     "energy_score": best_f, "n_copies": n_copies, "n_trials": int(batch.n_trials[0]),
                     "fit_seconds": time.perf_counter() - t0})
    us = np.array(us).reshape(len(mice), transform.n_free + G)
    precision = choice_precision(df, us[:, :transform.n_free], transform, observed)
    return FreeRunFit(pd.DataFrame(rows), us[:, :transform.n_free], transform,
                      pd.DataFrame(hist, columns=["mouse", "generation", "energy_score"]),
                      dict(free=tuple(transform.free), n_copies=n_copies, n_starts=n_starts, popsize=popsize,
                           n_elite=n_elite, n_gen=n_gen, seed=seed, drift=drift, theta_fixed=theta is not None,
                           summary_weight=summary_weight, observed_rows=int(observed.sum())),
                      {g: np.exp(us[:, transform.n_free + i]) for i, g in enumerate(drift)}, precision,
                      session_bias_sd, session_gain_sd)


def choice_precision(trials: pd.DataFrame, u: np.ndarray, transform: ParamTransform, observed=None) -> np.ndarray:
    """``(M, P, P)`` Laplace-type precision of each mouse's ``u`` (mice sorted by name, columns ``transform.free``).

    The expected information of the mouse's (``observed``) choices about ``u``, the network learning from all
    its trials (:meth:`~mouse_rl.fit.objective.KernelObjective.choice_information`), plus the precision of
    the registry's weak prior (:meth:`ParamTransform.registry_prior`). At a teacher-forced optimum it is the
    expected-information version of the default fit's Laplace precision.
    """
    from .objective import KernelObjective

    df = prepare_trials(trials)
    batch = make_batch(df, transform.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    score = None if observed is None else batch.mask_from_rows(np.asarray(observed, dtype=bool))
    u = np.asarray(u, float)
    if u.shape != (batch.shape[1], transform.n_free):
        raise ValueError(f"u: expected shape {(batch.shape[1], transform.n_free)} (mice x free), got {u.shape}")
    info = KernelObjective(batch, transform, score=score).choice_information(u, np.arange(len(u)))
    return info + transform.registry_prior().precision[None]


def check_free_running(result: FreeRunFit, trials: pd.DataFrame, n_copies: int = 50, seed: int = 1,
                       parameter_uncertainty: bool = True):
    """:func:`~mouse_rl.fit.checks.posterior_predictive_check` of a free-running fit.

    The copies' θ are drawn from ``N(u, result.precision^-1)`` (:func:`choice_precision`; default), or all
    at the point estimate (``parameter_uncertainty=False``, or a fit without ``precision``). ``seed`` should
    differ from the fit's, so the check's copies are fresh choice streams (the fit chose θ on its own
    streams). A fit with ``drift`` is checked with its fitted overnight drift (point estimates), and one run with
    session effects with them.
    """
    from .checks import posterior_predictive_check

    P = result.transform.n_free
    precision = result.precision
    if precision is None:
        precision, parameter_uncertainty = np.broadcast_to(np.eye(P), (len(result.u), P, P)), False
    return posterior_predictive_check(trials, result.u, precision, result.transform, n_copies, seed,
                                      parameter_uncertainty=parameter_uncertainty,
                                      sigma_day=result.sigma_day_matrix(), session_bias_sd=result.session_bias_sd,
                                      session_gain_sd=result.session_gain_sd)


class FreeRunModel:
    """The free-running fit as a :class:`mouse_rl.fit.cv.CVModel`: held-out bits/trial of its θ.

    ``fit(train_mask)`` runs :func:`fit_free_running` with only the ``train_mask`` rows' choices observed;
    ``score(mask)`` is the teacher-forced log-likelihood of the ``mask`` rows' choices at the fitted θ (the
    network learns from every trial of the mouse, as :class:`mouse_rl.fit.cv.NetworkModel` scores). The drift
    does not enter this score (it moves free-running copies only). Keyword arguments go to
    :func:`fit_free_running`.
    """

    def __init__(self, trials: pd.DataFrame, name: str = "network_freerun", **fit_kw):
        self.name, self.fit_kw = name, fit_kw
        self.trials = prepare_trials(trials)
        self.result: FreeRunFit | None = None
        self.fit_seconds_by_mouse = None

    def fit(self, train_mask) -> "FreeRunModel":
        from .objective import KernelObjective

        res = fit_free_running(self.trials, observed=np.asarray(train_mask, dtype=bool), **self.fit_kw)
        self.result = res
        self.fit_seconds_by_mouse = dict(zip(res.params["mouse"], res.params["fit_seconds"]))
        self._batch = make_batch(self.trials, res.transform.fixed.zero_reward, "cpu", torch.float64, prepared=True)
        # the network learns from every trial: one teacher-forced pass serves every mask
        self._trial_logp = KernelObjective(self._batch, res.transform).trial_logp(res.u, np.arange(len(res.u)))
        return self

    def score(self, mask) -> pd.DataFrame:
        from .cv import score_frame

        if self.result is None:
            raise RuntimeError("call fit() first")
        m = self._batch.mask_from_rows(np.asarray(mask, dtype=bool)).cpu().numpy()
        return score_frame(self._batch.mice, (self._trial_logp * m).sum(0), m.sum(0))
