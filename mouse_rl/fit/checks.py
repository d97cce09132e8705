"""Posterior-predictive checks: free-running copies of each fitted mouse, compared with the mouse.

A fit is teacher-forced: the network learns from the mouse's own choices. The
check asks the harder question of a learning model -- run free, does it
*behave* like that mouse? Each copy of a mouse draws its parameters from the
fit's Laplace posterior (``N(u, H^-1)`` in unconstrained units; parameter
uncertainty included), sees the mouse's own stimulus sequence and session
lengths, and chooses for itself with :func:`mouse_rl.network.trial_update`
learning from its own choices and rewards. Per mouse we then ask whether the
real value lies inside the copies' 5-95% band for

* every session's accuracy (coverage; a calibrated model gives ~90%),
* the early bias (mean P(R | c = 0) - 0.5 over sessions 4-8),
* the late slope difference (right - left psychometric slope, last 5 sessions),

and whether the copies' modal learner side (left / balanced / right: late
slope difference beyond +-0.1) is the mouse's side. The metrics are those of
:func:`mouse_rl.analysis.session_metrics` and
:func:`mouse_rl.analysis.early_late_metrics` (same windows and threshold).
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from envs import rng

from ..analysis.metrics import COHORT_PAIRS, label_learner_side
from ..params import NetParams
from .batch import TrialBatch, make_batch, prepare_trials
from .predictive import laplace_covariance
from .transforms import ParamTransform

#: Windows of the per-mouse metrics (as :func:`mouse_rl.analysis.early_late_metrics`; learner sides by
#: :func:`mouse_rl.analysis.label_learner_side` and its threshold).
EARLY_SESSIONS = (4, 8)
LATE_SESSIONS = 5
BAND = (5.0, 95.0)


@dataclass
class CheckResult:
    """Output of :func:`posterior_predictive_check`.

    per_mouse : one row per mouse: ``session_coverage`` (fraction of its sessions whose real accuracy
        is inside the copies' band; ``teacher_forced_coverage`` the same for the teacher-forced accuracy
        below, where the check has it), ``early_bias`` / ``late_slope_diff`` / ``late_bias`` (P(Right | zero
        contrast) - 0.5 over the last sessions: where the fitted network misses most, README) real values with
        the copies' ``_lo``, ``_median``, ``_hi`` and ``_inside``; ``side`` (real learner side), ``side_modal_sim``,
        ``side_match`` (modal = real), ``side_modal_share`` (fraction of copies on the modal side: the
        chance of ``side_match`` if the mouse were one more copy), ``side_share`` (fraction of copies with
        the real side) and
        ``side_self_agreement`` (sum over sides of the copies' share squared: the chance that two copies
        agree, i.e. the ``side_share`` a calibrated model gives on average).
    per_session : one row per (mouse, session): real ``accuracy``, ``p_right_left``, ``p_right_right``
        and the copies' ``_lo``, ``_median``, ``_hi``; ``accuracy_inside``; from
        :func:`posterior_predictive_check` also ``accuracy_teacher_forced``, the fitted model's expected
        accuracy learning from the mouse's own choices (at the fitted point, without drift or session
        effects), and ``teacher_forced_inside`` (inside the copies' band).
    summary : overall numbers: ``session_coverage`` (over all sessions), ``late_slope_inside``,
        ``early_bias_inside``, ``late_bias_inside`` and ``side_match`` (mice counts), ``expected_side_match`` (the ``side_match``
        count a calibrated model expects: the sum of ``side_modal_share``), ``mean_side_share`` and its
        calibrated expectation ``expected_side_share``, ``n_mice``, ``n_copies``. Where the side is decided
        by chance during learning (the copies split), even the true model's modal side misses often; compare
        ``side_match`` with ``expected_side_match`` and ``mean_side_share`` with ``expected_side_share`` for
        calibration. With 3 or more mice, the cohort's
        relations (:func:`cohort_relations`): ``r_early_bias_late_slope_diff`` and ``r_early_bias_late_bias``
        (Pearson r across the real mice) with the band of the same r over the simulated cohorts (copy k of
        every mouse), ``_lo`` / ``_median`` / ``_hi`` / ``_inside``. With the teacher-forced column,
        ``teacher_forced_coverage``: the fraction of sessions whose ``accuracy_teacher_forced`` is inside the
        band. That path is one of the model's own trajectories, so a self-consistent fit holds it inside the
        band, more often than the mouse itself (it is an expectation, without the binomial noise of a session's
        choices; on mice simulated from the model 96-100% of sessions, README); a session whose real and teacher-forced
        accuracies both leave the band on the same side is one the fitted model follows when it sees the
        mouse's choices, but whose copies, choosing for themselves, do not reach (README: "Where the copies
        leave the mouse").
    copies : one row per (mouse, copy): the copy's ``early_bias``, ``late_slope_diff``, ``late_bias``,
        ``side``.
    """

    per_mouse: pd.DataFrame
    per_session: pd.DataFrame
    summary: dict
    copies: pd.DataFrame


def copy_seeds(mice, n_copies: int, seed: int = 0) -> np.ndarray:
    """Seeds ``(n_copies, M)`` of each (copy, mouse): a hash of the mouse's name, the copy and ``seed``.

    A mouse's copies are the same whichever mice are checked with it.
    """
    names = torch.tensor([zlib.crc32(str(m).encode()) for m in mice], dtype=torch.int64)
    base = torch.as_tensor(rng.mouse_seeds(seed, n_copies), dtype=torch.int64)
    return (rng.stream_key(names[None, :] ^ base[:, None], rng.STIMULUS)).numpy()


def free_run(batch: TrialBatch, params: NetParams, seeds, encoding: str = "side", positive: bool = True,
             zero_reward: str = "expected", init=None, offset=None, gain=None, corrections: int = 0,
             corrections_forced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running network on each column's own stimuli and session lengths.

    Returns ``(choice, p_right)``, each ``(T, B)``: the copy's sampled choices
    (0 = Left, 1 = Right; 0 on padding) and its P(Right) before each choice.
    Choices use the counter-based stream ``rng.CHOICE`` of each column's seed;
    the rewarded side at zero contrast (Right with p = 0.5) ``rng.ZERO_REWARD_SIDE``.
    ``init``: starting weights, a :class:`~mouse_rl.network.Weights`-like ``(a, U)`` of
    ``(B, 3)``, ``(B, 2, 3)`` tensors (default: the initial weights of ``params``, no jitter).
    ``offset``, ``gain``: optional ``(T, B)`` logit offset and factor on beta of every trial (the session
    effects, :mod:`mouse_rl.fit.session_effects`). ``corrections``, ``corrections_forced``: hidden correction
    trials after errors (:func:`~mouse_rl.simulate.simulate_on_stimuli`, :mod:`mouse_rl.fit.corrections`).
    One rollout with simulation (:func:`mouse_rl.simulate.simulate_on_stimuli`): the fused CPU
    engine on the CPU, the reference rollout elsewhere (same numbers).
    """
    from ..simulate import simulate_on_stimuli

    return simulate_on_stimuli(batch.contrast, batch.valid, params, seeds, init, encoding, positive, zero_reward,
                               offset=offset, gain=gain, corrections=corrections,
                               corrections_forced=corrections_forced)


def _session_table(batch: TrialBatch, choice: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column, per-session metrics ``(S, B)`` (sessions ranked from 0 within each column); NaN choices
    (unobserved) are left out of the rates."""
    sess = batch.session.cpu().numpy()
    valid = batch.valid.cpu().numpy()
    T, B = sess.shape
    rank = np.zeros_like(sess)
    for b in range(B):
        _, rank[valid[:, b], b] = np.unique(sess[valid[:, b], b], return_inverse=True)
    S = int(rank.max()) + 1
    c = batch.contrast.cpu().numpy()
    idx = (rank * B + np.arange(B)[None, :])[valid]
    y = choice[valid].astype(float)
    cv = c[valid]

    def mean(mask, values):
        mask = mask & np.isfinite(values)  # NaN = an unobserved choice (e.g. held out): left out
        num = np.bincount(idx[mask], weights=values[mask], minlength=S * B)
        den = np.bincount(idx[mask], minlength=S * B)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (num / den).reshape(S, B)

    left, right = cv < 0, cv > 0
    zero = ~(left | right)
    correct = np.where(right, y, 1 - y)
    acc = mean(left | right, correct)
    pl, pz, pr = mean(left, y), mean(zero, y), mean(right, y)
    n_sess = np.where(valid, rank, -1).max(0) + 1
    exists = np.arange(S)[:, None] < n_sess[None, :]
    return {"accuracy": acc, "p_right_left": pl, "p_right_zero": pz, "p_right_right": pr, "exists": exists,
            "n_sessions": n_sess}


def _mouse_metrics(st: dict) -> dict[str, np.ndarray]:
    """Early bias, late slope difference, late bias and learner side per column from :func:`_session_table`."""
    S, B = st["accuracy"].shape
    bias = st["p_right_zero"] - 0.5
    diff = (st["p_right_right"] - st["p_right_zero"]) - (st["p_right_zero"] - st["p_right_left"])
    s = np.arange(S)[:, None]
    early = (s >= EARLY_SESSIONS[0] - 1) & (s <= EARLY_SESSIONS[1] - 1) & st["exists"]
    late = (s >= st["n_sessions"][None, :] - LATE_SESSIONS) & st["exists"]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        early_bias = np.nanmean(np.where(early, bias, np.nan), axis=0)
        late_diff = np.nanmean(np.where(late, diff, np.nan), axis=0)
        late_bias = np.nanmean(np.where(late, bias, np.nan), axis=0)
    side = np.where(np.isnan(late_diff), "", label_learner_side(late_diff)).astype(str)
    return {"early_bias": early_bias, "late_slope_diff": late_diff, "late_bias": late_bias, "side": side}


#: Cohort-level relations the check compares: Pearson r across mice of the paper's pairs
#: (:data:`mouse_rl.analysis.metrics.COHORT_PAIRS`), named ``r_<x>_<y>``.
COHORT_RELATIONS = {f"r_{x}_{y}": (x, y) for x, y in COHORT_PAIRS}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the finite pairs; NaN with fewer than 3 pairs or no spread."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def cohort_relations(real_m: dict, sim_m: dict, K: int) -> dict:
    """The cohort's :data:`COHORT_RELATIONS` for the real mice and for each of the ``K`` simulated cohorts
    (cohort k = copy k of every mouse): ``{name: real r}`` plus ``name_lo`` / ``_median`` / ``_hi`` (the
    copies' 5-95% band) and ``name_inside``. Left out (absent) with fewer than 3 mice."""
    out = {}
    for name, (a, b) in COHORT_RELATIONS.items():
        real = _pearson(real_m[a], real_m[b])
        sims = np.array([_pearson(x, y) for x, y in zip(sim_m[a].reshape(K, -1), sim_m[b].reshape(K, -1))])
        sims = sims[np.isfinite(sims)]
        if not np.isfinite(real) or len(sims) < 2:
            continue
        lo, med, hi = np.percentile(sims, [BAND[0], 50.0, BAND[1]])
        out.update({name: real, f"{name}_lo": float(lo), f"{name}_median": float(med), f"{name}_hi": float(hi),
                    f"{name}_inside": bool(lo <= real <= hi)})
    return out


def posterior_samples(u: np.ndarray, hessian: np.ndarray, prior_sd, n_copies: int, seed: int = 0,
                      parameter_uncertainty: bool = True, mice=None) -> np.ndarray:
    """``(n_copies, M, P)`` parameter draws ``N(u, (H)^-1)`` (PSD-clipped, see :func:`laplace_covariance`).

    Each mouse's draws come from its own generator (seeded by ``seed`` and the hash of its name in
    ``mice``, default its index), so they do not depend on the other mice. A mouse whose ``hessian`` has
    non-finite entries (no usable curvature) keeps its point estimate in every draw.
    """
    u = np.asarray(u, float)
    if not parameter_uncertainty:
        return np.broadcast_to(u, (n_copies, *u.shape)).copy()
    hessian = np.asarray(hessian, float)
    finite = np.isfinite(hessian).all(axis=(1, 2))
    # `hessian` is the fit's posterior precision (prior included): a huge prior sd here only guards a
    # precision that is not positive definite (e.g. a hand-made one).
    cov = laplace_covariance(torch.as_tensor(np.where(finite[:, None, None], hessian, 0.0)), prior_sd).numpy()
    L = np.linalg.cholesky(cov) * finite[:, None, None]
    names = range(len(u)) if mice is None else mice
    z = np.stack([np.random.default_rng([int(seed), zlib.crc32(str(m).encode())]).standard_normal(
        (n_copies, u.shape[1])) for m in names], axis=1)
    return u[None] + np.einsum("mij,kmj->kmi", L, z)


def posterior_predictive_check(trials: pd.DataFrame, u: np.ndarray, hessian: np.ndarray,
                               transform: ParamTransform, n_copies: int = 50, seed: int = 0,
                               parameter_uncertainty: bool = True, prior_sd=1e3,
                               device="cpu", sigma_day=None, session_bias_sd=None,
                               session_gain_sd=None, corrections: int = 0,
                               corrections_forced: bool = False) -> CheckResult:
    """Simulate ``n_copies`` free-running copies of every fitted mouse and compare them with the mouse.

    Parameters
    ----------
    trials : the mice's trial table (as fitted); mice in sorted order match the rows of ``u``.
    u : ``(M, P)`` fitted unconstrained parameters (``FitResult.u``).
    hessian : ``(M, P, P)`` posterior precision at ``u`` (``FitResult.hessian``).
    transform : the fit's :class:`ParamTransform` (free parameters, fixed options).
    n_copies : copies per mouse (>= 10 for meaningful 5-95% bands).
    seed : seed of the parameter draws and of the copies' choice streams.
    parameter_uncertainty : draw parameters from the Laplace posterior (default) or use ``u`` for all.
    prior_sd : sd (unconstrained units) added only to regularise a Hessian that is not positive definite.
    sigma_day : optional ``(M, 9)`` overnight drift of the copies' log-weights (sd per night, rows as ``u``;
        :func:`mouse_rl.fit.drift.sigma_matrix`, an option: :mod:`mouse_rl.fit.drift`); None (default):
        no drift, the copies of MODEL.md.
    session_bias_sd, session_gain_sd : optional ``(M,)`` sds of each mouse's session effects (an option:
        :mod:`mouse_rl.fit.session_effects`): every session of a copy gets its own N(0, sd^2) logit offset
        (bias, logit units) and its own factor exp(N(0, sd^2)) on beta (gain); None (default): none.
    corrections, corrections_forced : hidden correction trials of the copies after their errors at c != 0 (an
        option, :mod:`mouse_rl.fit.corrections`; :func:`~mouse_rl.simulate.simulate_on_stimuli`); 0 (default): none.

    Returns
    -------
    CheckResult
    """
    if int(n_copies) != n_copies or n_copies < 2:
        raise ValueError(f"n_copies: must be an integer >= 2, got {n_copies!r}")
    df = prepare_trials(trials)
    fixed = transform.fixed
    batch = make_batch(df, fixed.zero_reward, device, torch.float64, prepared=True)
    M = batch.shape[1]
    u = np.asarray(u, float)
    if u.shape != (M, transform.n_free):
        raise ValueError(f"u: expected shape {(M, transform.n_free)} (mice x free parameters), got {u.shape}")
    draws = posterior_samples(u, hessian, prior_sd, n_copies, seed, parameter_uncertainty, batch.mice)
    lower, upper = transform.bounds_u()
    draws = np.clip(draws, lower, upper).reshape(n_copies * M, -1)
    params = transform.params(torch.as_tensor(draws, dtype=torch.float64, device=device))
    seeds = copy_seeds(batch.mice, n_copies, seed).reshape(-1)
    big = batch.repeat(n_copies)
    from .session_effects import check_sd, session_gains, session_offsets

    offset = gain = None
    if session_bias_sd is not None:
        offset = session_offsets(big, seeds, np.tile(check_sd(session_bias_sd, M, "session_bias_sd"), n_copies))
    if session_gain_sd is not None:
        gain = session_gains(big, seeds, np.tile(check_sd(session_gain_sd, M, "session_gain_sd"), n_copies))
    hidden = dict(corrections=corrections, corrections_forced=corrections_forced)
    with torch.no_grad():
        if sigma_day is None:
            choice, _ = free_run(big, params, seeds, fixed.encoding, fixed.positive, fixed.zero_reward,
                                 offset=offset, gain=gain, **hidden)
        else:
            from .drift import free_run_drift

            sd = np.asarray(sigma_day, float)
            if sd.shape != (M, 9):
                raise ValueError(f"sigma_day: expected shape {(M, 9)} (mice x weights), got {sd.shape}")
            choice, _ = free_run_drift(big, params, seeds, np.tile(sd, (n_copies, 1)), fixed.encoding,
                                       fixed.positive, fixed.zero_reward, offset=offset, gain=gain, **hidden)
    sim = _session_table(big, choice.cpu().numpy())
    real = _session_table(batch, batch.choice.cpu().numpy())
    sim_m, real_m = _mouse_metrics(sim), _mouse_metrics(real)
    cpu = batch if batch.contrast.device.type == "cpu" else make_batch(df, fixed.zero_reward, "cpu", torch.float64,
                                                                       prepared=True)
    return _compare(batch.mice, n_copies, real, sim, real_m, sim_m, teacher_forced_sessions(cpu, u, transform))


def teacher_forced_sessions(batch: TrialBatch, u: np.ndarray, transform: ParamTransform) -> dict[str, np.ndarray]:
    """Session metrics (:func:`_session_table`) of the fitted model's P(Right) learning from each mouse's own
    choices at ``u`` (``(M, P)``, rows in the batch's columns): its expected, not sampled, choices; ``batch``
    on the CPU in float64 (the kernel's)."""
    from .likelihood import teacher_forced_p_right

    params = transform.params(torch.as_tensor(np.asarray(u, float), dtype=torch.float64))
    p_right = teacher_forced_p_right(batch, params, transform.fixed.encoding, transform.fixed.positive)
    return _session_table(batch, np.where(batch.valid.cpu().numpy(), p_right, 0.0))


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, med, hi = np.nanpercentile(values, [BAND[0], 50.0, BAND[1]], axis=0)
    return lo, med, hi


def _compare(mice, K, real, sim, real_m, sim_m, teacher_forced: dict | None = None) -> CheckResult:
    M = len(mice)
    S = real["accuracy"].shape[0]
    rows = []
    sim_sessions = {k: sim[k][:S].reshape(S, K, M) for k in ("accuracy", "p_right_left", "p_right_right")}
    for k, v in sim_sessions.items():
        lo, med, hi = _band(v.transpose(1, 0, 2))  # over copies
        sim_sessions[k] = (lo, med, hi)
    for m, mouse in enumerate(mice):
        for s in range(real["n_sessions"][m]):
            row = {"mouse": mouse, "session": s + 1}
            for k, (lo, med, hi) in sim_sessions.items():
                row[k] = real[k][s, m]
                row[f"{k}_lo"], row[f"{k}_median"], row[f"{k}_hi"] = lo[s, m], med[s, m], hi[s, m]
            rows.append(row)
    per_session = pd.DataFrame(rows)
    a = per_session
    per_session["accuracy_inside"] = (a["accuracy"] >= a["accuracy_lo"]) & (a["accuracy"] <= a["accuracy_hi"])
    per_mouse = pd.DataFrame({"mouse": list(mice)})
    per_mouse["session_coverage"] = per_session.groupby("mouse", sort=True)["accuracy_inside"].mean().to_numpy()
    extra = {}
    if teacher_forced is not None:
        tf = np.concatenate([teacher_forced["accuracy"][:real["n_sessions"][m], m] for m in range(M)])
        per_session["accuracy_teacher_forced"] = tf
        per_session["teacher_forced_inside"] = (tf >= a["accuracy_lo"]) & (tf <= a["accuracy_hi"])
        per_mouse["teacher_forced_coverage"] = per_session.groupby("mouse", sort=True)[
            "teacher_forced_inside"].mean().to_numpy()
        extra["teacher_forced_coverage"] = float(per_session["teacher_forced_inside"].mean())
    for key in ("early_bias", "late_slope_diff", "late_bias"):
        v = sim_m[key].reshape(K, M)
        lo, med, hi = _band(v)
        per_mouse[key] = real_m[key]
        per_mouse[f"{key}_lo"], per_mouse[f"{key}_median"], per_mouse[f"{key}_hi"] = lo, med, hi
        per_mouse[f"{key}_inside"] = (real_m[key] >= lo) & (real_m[key] <= hi)
    sides = sim_m["side"].reshape(K, M)
    per_mouse["side"] = real_m["side"]
    modal, modal_share, share, agree = [], [], [], []
    for m in range(M):
        vals, counts = np.unique(sides[:, m], return_counts=True)
        modal.append(vals[np.argmax(counts)])
        modal_share.append(float(counts.max() / K))
        share.append(float(np.mean(sides[:, m] == real_m["side"][m])))
        agree.append(float(((counts / K) ** 2).sum()))
    per_mouse["side_modal_sim"] = modal
    per_mouse["side_modal_share"] = modal_share
    per_mouse["side_share"] = share
    per_mouse["side_self_agreement"] = agree
    per_mouse["side_match"] = per_mouse["side_modal_sim"] == per_mouse["side"]
    copies = pd.DataFrame({"mouse": np.tile(np.asarray(mice), K), "copy": np.repeat(np.arange(K), M),
                           "early_bias": sim_m["early_bias"], "late_slope_diff": sim_m["late_slope_diff"],
                           "late_bias": sim_m["late_bias"], "side": sim_m["side"]})
    summary = {"n_mice": M, "n_copies": K,
               "session_coverage": float(per_session["accuracy_inside"].mean()),
               "late_slope_inside": int(per_mouse["late_slope_diff_inside"].sum()),
               "early_bias_inside": int(per_mouse["early_bias_inside"].sum()),
               "late_bias_inside": int(per_mouse["late_bias_inside"].sum()),
               "side_match": int(per_mouse["side_match"].sum()),
               "expected_side_match": float(per_mouse["side_modal_share"].sum()),
               "mean_side_share": float(per_mouse["side_share"].mean()),
               "expected_side_share": float(per_mouse["side_self_agreement"].mean()),
               **extra, **cohort_relations(real_m, sim_m, K)}
    return CheckResult(per_mouse, per_session, summary, copies)


def check_fit(result, trials: pd.DataFrame, n_copies: int = 50, seed: int = 0,
              parameter_uncertainty: bool = True, device="cpu", session_effects: pd.DataFrame | None = None) -> CheckResult:
    """:func:`posterior_predictive_check` of a :class:`mouse_rl.fit.FitResult` on the trials it was fitted to.

    ``session_effects``: optional table of :func:`mouse_rl.fit.session_effects.fit_session_effects` (columns
    ``mouse``, ``session_bias_sd``, ``session_gain_sd``): the copies get those day-to-day effects.
    """
    if result.u is None or result.hessian is None:
        raise ValueError("result: this FitResult carries no u / hessian (fit with mouse_rl.fit.fit_mice)")
    names = result.params["mouse"].astype(str).to_numpy()
    order = np.argsort(names, kind="stable")  # mice sorted by name
    mice = names[order]
    sds = {}
    if session_effects is not None:
        table = session_effects.set_index(session_effects["mouse"].astype(str))
        missing = [m for m in mice if m not in table.index]
        if missing:
            raise ValueError(f"session_effects: no row for mice {missing}")
        sds = {k: table.loc[mice, k].to_numpy(float) for k in ("session_bias_sd", "session_gain_sd") if k in table}
    return posterior_predictive_check(trials, result.u[order], result.hessian[order], result.transform, n_copies,
                                      seed, parameter_uncertainty, device=device, **sds)
