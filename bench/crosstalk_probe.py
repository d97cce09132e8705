"""Probe of two mechanisms MODEL.md lacks, fitted to the real mice (issue 10, "close the generative gap").

15 of the 25 Liebana et al. mice end training with a late psychometric that the side-encoded network cannot
produce: P(Right | zero contrast) lies outside [P(R | left), P(R | right)] (left learners choose Right more
often with no stimulus than with a right stimulus, e.g. DAP022: 0.09 / 0.83 / 0.62). With non-negative
weights and input [1, 0, 1] / [0, 1, 1] / [0, 0, 1], a right stimulus can only add evidence for Right. Two
extensions, each one more input to :func:`mouse_rl.network.trial_update` (the learning rule is unchanged):

* ``crosstalk`` (gamma, 0..1): a stimulus also drives the other side's channel, left x = [1, gamma, 1],
  right x = [gamma, 1, 1] (generalisation between the two gratings: a left learner's "stimulus -> Left"
  association then also pulls right-stimulus choices to Left);
* ``innate`` (rho in logit units, tau in trials): a side preference added to the policy's logit that fades,
  rho exp(-t / tau), t the mouse's trial index from its first trial (the start bias without the bias weights).

Each variant is fitted per mouse by MAP (the registry's priors for the seven MODEL.md parameters, k = 1;
gamma logit-normal around 0.1 with sd 2, rho N(0, 3^2), log tau N(log 2000, 2^2)) with L-BFGS-B on central
finite-difference gradients of a numba unroll of the network (tested against ``trial_update`` in
``tests/test_crosstalk_probe.py``), from the default fit's optimum (``--default-fit``, the trust bench's
table), MODEL.md's default start and variant-specific starts, then 6 random perturbations of the best.
An experiment, not a library option: its optimiser is not the library's per-mouse Newton, so the
``default`` variant is refitted by the same procedure and every comparison is within this script.

    python bench/crosstalk_probe.py --out bench/results/crosstalk
    python bench/crosstalk_probe.py --time-aware --out bench/results/crosstalk_time
    python bench/crosstalk_probe.py --relations-only --out bench/results/crosstalk

In-sample: per-mouse fits, the teacher-forced late P(Right) by stimulus (as ``bench/late_psychometric.py``)
and the free-running check of ``mouse_rl.fit.checks`` at each mouse's point estimate (``--copies`` copies on
its own stimuli and session lengths). ``--time-aware``: fitted on each mouse's first half of sessions
(``mouse_rl.fit.cv.time_split``), scored on the rest, teacher-forced (plug-in bits/trial). The starts come
from the default fit of all sessions (a start point only; the objective sees only the first half).
Writes ``<variant>_fit.csv`` and ``summary.json`` (machine, load) under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings
from multiprocessing import Pool
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd

#: Natural parameters of the unroll, in order.
THETA = ("eta", "beta", "w0", "k", "s0", "b_L", "b_R", "lapse", "gamma", "rho", "tau")
BASE = ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse")
VARIANTS = {"default": (), "crosstalk": ("gamma",), "innate": ("rho", "tau"),
            "crosstalk_innate": ("gamma", "rho", "tau")}
#: Transform, natural-unit bounds, prior centre (natural) and sd (unconstrained) of the extensions outside the
#: registry (gamma is the registry's ``crosstalk``, now a library option: :func:`coordinates` reads its spec).
EXTRA = {"rho": ("identity", (-15.0, 15.0), 0.0, 3.0), "tau": ("log", (30.0, 1e5), 2000.0, 2.0)}
NEUTRAL = {"k": 1.0, "gamma": 0.0, "rho": 0.0, "tau": 1.0}
#: No on-disk cache: this module runs as ``__main__`` and as an imported module (the tests), and numba's cache
#: entries name the module they were compiled in.
_jit = nb.njit(cache=False)


@_jit
def _trial(th, a, U, c, choice, reward, t):
    """P(Right) of trial ``t`` from the pre-update weights, then one step of the learning rule in place."""
    eta, beta, lapse, gamma, rho, tau = th[0], th[1], th[7], th[8], th[9], th[10]
    xL = 1.0 if c < 0 else (gamma if c > 0 else 0.0)
    xR = 1.0 if c > 0 else (gamma if c < 0 else 0.0)
    hL, hR, hb = a[0] * xL, a[1] * xR, a[2]
    qs0, qs1 = U[0, 0] * hL + U[0, 1] * hR, U[1, 0] * hL + U[1, 1] * hR
    qc0, qc1 = U[0, 2] * hb, U[1, 2] * hb
    logit = beta * ((qs1 + qc1) - (qs0 + qc0)) + rho * math.exp(-t / tau)
    p = 1.0 / (1.0 + math.exp(-logit)) if logit > -700.0 else 0.0
    p = 0.5 * lapse + (1.0 - lapse) * p
    if choice < 0:
        return p
    qs = qs1 if choice == 1 else qs0
    qc = qc1 if choice == 1 else qc0
    d_tot, d_stim, d_const = reward - qs - qc, reward - qs, reward - qc
    u0, u1, u2 = U[choice, 0], U[choice, 1], U[choice, 2]
    U[choice, 0] = min(abs(u0 + eta * d_stim * hL), 1e6)
    U[choice, 1] = min(abs(u1 + eta * d_stim * hR), 1e6)
    U[choice, 2] = min(abs(u2 + eta * d_const * hb), 1e6)
    a[0] = min(abs(a[0] + eta * d_tot * u0 * xL), 1e6)
    a[1] = min(abs(a[1] + eta * d_tot * u1 * xR), 1e6)
    a[2] = min(abs(a[2] + eta * d_tot * u2), 1e6)
    return p


@_jit
def _start(th):
    a = np.array([th[2], th[2], th[3]])
    U = np.array([[th[4], th[4], th[5]], [th[4], th[4], th[6]]])
    return a, U


@_jit
def unroll(th, c, choice, reward, n, p_out):
    """Teacher-forced run over the first ``n`` trials; fills ``p_out`` with P(Right); returns the log-likelihood."""
    a, U = _start(th)
    ll = 0.0
    for t in range(n):
        p = _trial(th, a, U, c[t], choice[t], reward[t], t)
        p_out[t] = p
        ll += math.log(p) if choice[t] == 1 else math.log(1.0 - p)
    return ll


@_jit
def free_run(th, c, n, copies, seed, out, p_out):
    """``copies`` free-running copies on the stimuli ``c[:n]`` (learning reward 0.5 at zero contrast, the
    default ``zero_reward="expected"``); choices into ``out``, P(Right) into ``p_out`` (both ``(copies, >= n)``)."""
    np.random.seed(seed)
    for k in range(copies):
        a, U = _start(th)
        for t in range(n):
            p = _trial(th, a, U, c[t], -1, 0.0, t)
            p_out[k, t] = p
            ch = 1 if np.random.random() < p else 0
            out[k, t] = ch
            r = 0.5 if c[t] == 0 else (1.0 if (c[t] > 0) == (ch == 1) else 0.0)
            _trial(th, a, U, c[t], ch, r, t)


def _compile() -> None:
    th, c, y = np.array([0.01, 9.0, 0.05, 1.0, 0.2, 0.05, 0.05, 0.02, 0.1, 0.0, 1.0]), np.array([-0.5, 0.0, 0.5]), \
        np.array([0, 1, 1])
    unroll(th, c, y, np.ones(3), 3, np.empty(3))
    free_run(th, c, 3, 1, 0, np.zeros((1, 3), dtype=np.int64), np.zeros((1, 3)))


def coordinates(names):
    """Transforms, bounds (unconstrained), prior centres and sds of the free parameters ``names``."""
    from mouse_rl.params import PARAMS

    registry = {n: n for n in BASE} | {"gamma": "crosstalk"}
    spec = {n: (PARAMS[r].transform, PARAMS[r].fit_bounds, PARAMS[r].prior_centre, PARAMS[r].prior_sd)
            for n, r in registry.items()}
    spec.update(EXTRA)
    tr = [spec[n][0] for n in names]
    bounds = [(to_u(t, spec[n][1][0]), to_u(t, spec[n][1][1])) for n, t in zip(names, tr)]
    centre = np.array([to_u(t, spec[n][2]) for n, t in zip(names, tr)])
    sd = np.array([spec[n][3] for n in names])
    return tr, bounds, centre, sd


def to_u(transform, v):
    return math.log(v) if transform == "log" else (math.log(v / (1 - v)) if transform == "logit" else v)


def to_nat(transform, u):
    return math.exp(u) if transform == "log" else (1 / (1 + math.exp(-u)) if transform == "logit" else u)


def theta(names, tr, u) -> np.ndarray:
    v = dict(NEUTRAL)
    v.update({n: to_nat(t, x) for n, t, x in zip(names, tr, u)})
    return np.array([v[n] for n in THETA], dtype=float)


def fit_mouse(job):
    """MAP fit of one mouse; returns its natural parameters, log-likelihood(s) and the per-trial P(Right)."""
    from scipy.optimize import minimize

    variant, c, choice, reward, n, n_fit, default_row, seed = job
    names = BASE + VARIANTS[variant]
    tr, bounds, centre, sd = coordinates(names)
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    buf = np.empty(len(c))

    def neg_log_post(u):
        v = -(unroll(theta(names, tr, u), c, choice, reward, n_fit, buf) - 0.5 * np.sum(((u - centre) / sd) ** 2))
        return v if np.isfinite(v) else 1e12

    def value_and_grad(u, h=1e-6):
        g = np.empty_like(u)
        for i in range(len(u)):
            e = np.zeros_like(u)
            e[i] = h
            g[i] = (neg_log_post(u + e) - neg_log_post(u - e)) / (2 * h)
        return neg_log_post(u), g

    def solve(u0):
        r = minimize(value_and_grad, np.clip(u0, lo, hi), jac=True, method="L-BFGS-B", bounds=bounds,
                     options=dict(maxiter=400, maxfun=800, ftol=1e-12, gtol=1e-6))
        return r.x, float(r.fun)

    d = default_row
    first = {"eta": d["eta"], "beta": d["beta"], "w0": d["w0"], "s0": d["s0"], "b_L": max(d["b_L"], 2e-6),
             "b_R": max(d["b_R"], 2e-6), "lapse": max(d["lapse"], 2e-6), "gamma": 0.1, "rho": 0.0, "tau": 2000.0}
    model_md = {"eta": 0.0026, "beta": 9.0, "w0": 0.05, "s0": 0.2, "b_L": 0.05, "b_R": 0.05, "lapse": 0.02,
                "gamma": 0.1, "tau": 2000.0,
                "rho": float(np.log(np.clip(choice[:min(n_fit, 500)].mean(), .05, .95)
                                    / (1 - np.clip(choice[:min(n_fit, 500)].mean(), .05, .95))))}
    starts = [first, model_md]
    if "rho" in names:  # the start bias moved from the bias weights to rho
        rho0 = float(np.clip(d["beta"] * (d["b_R"] - d["b_L"]), -8, 8))
        starts += [{**first, "b_L": 0.05, "b_R": 0.05, "rho": rho0, "tau": tau} for tau in (500.0, 2000.0, 8000.0)]
    if "gamma" in names:
        starts += [{**first, "gamma": g} for g in (0.3, 0.6)]
    best = None
    for s in starts:
        x, f = solve(np.array([to_u(t, s[n]) for n, t in zip(names, tr)]))
        if best is None or f < best[1]:
            best = (x, f)
    rng = np.random.default_rng(seed)
    for h in range(6):
        x, f = solve(best[0] + rng.normal(0, 0.5 if h % 2 else 1.5, len(names)))
        if f < best[1] - 1e-9:
            best = (x, f)
    th = theta(names, tr, best[0])
    unroll(th, c, choice, reward, n, buf)
    p = buf[:n].copy()
    y = choice[:n]
    lp = np.where(y == 1, np.log(p), np.log1p(-p))
    return {"theta": th, "neg_log_post": best[1], "loglik_fit": float(lp[:n_fit].sum()),
            "loglik_test": float(lp[n_fit:].sum()), "n_fit": n_fit, "n_test": n - n_fit, "p_right": p}


def teacher_forced_late(trials, batch, P) -> dict:
    """Late P(Right) by stimulus of the mice and of the fitted model on their trials, and their learner sides
    (``bench/late_psychometric.py``'s measures; sides by :func:`mouse_rl.analysis.early_late_metrics`)."""
    import torch
    from late_psychometric import STIMULI, late_means, leaning_away  # beside this script

    from mouse_rl.analysis import early_late_metrics, session_metrics
    from mouse_rl.fit.checks import LATE_SESSIONS

    t = trials.assign(p_right=batch.to_rows(torch.as_tensor(np.nan_to_num(P))))
    sessions = {k: session_metrics(t, use_model=k == "model") for k in ("data", "model")}
    late = {k: late_means(v, LATE_SESSIONS) for k, v in sessions.items()}
    el = {k: early_late_metrics(v, late_n=LATE_SESSIONS).set_index("mouse") for k, v in sessions.items()}
    side = el["data"]["learner_side"]
    return {"late_error": {s: round(float((late["data"][s] - late["model"][s]).abs().mean()), 4) for s in STIMULI},
            "mean_abs_late_slope_diff": {k: round(float(v["late_slope_diff"].abs().mean()), 3) for k, v in el.items()},
            "lean_away_at_zero": {**{k: leaning_away(side, v["p_right_zero"]) for k, v in late.items()},
                                  "one_sided_mice": int(side.isin(["left", "right"]).sum())},
            "labels_agree": int((side == el["model"]["learner_side"]).sum()),
            "non_monotonic_late": {k: int(((v["p_right_zero"] > v[["p_right_left", "p_right_right"]].max(axis=1))
                                           | (v["p_right_zero"] < v[["p_right_left", "p_right_right"]].min(axis=1)))
                                          .sum()) for k, v in late.items()}}


def check(batch, thetas, copies: int, seed: int) -> dict:
    """The free-running check of :mod:`mouse_rl.fit.checks` with every mouse at its point estimate."""
    from mouse_rl.fit.checks import _compare, _mouse_metrics, _session_table

    C, N = batch.contrast.numpy(), batch.n_trials.numpy()
    T, M = C.shape
    choice = np.zeros((T, copies * M), dtype=np.int64)
    for m in range(M):
        out = np.zeros((copies, T), dtype=np.int64)
        free_run(thetas[m], np.ascontiguousarray(C[:, m]), int(N[m]), copies, 1000 * seed + m, out,
                 np.zeros((copies, T)))
        choice[:, np.arange(copies) * M + m] = out.T
    real = _session_table(batch, batch.choice.numpy())
    sim = _session_table(batch.repeat(copies), choice)
    s = _compare(batch.mice, copies, real, sim, _mouse_metrics(real), _mouse_metrics(sim)).summary
    keep = ("session_coverage", "late_slope_inside", "early_bias_inside", "late_bias_inside", "side_match",
            "expected_side_match", "r_early_bias_late_slope_diff_median", "r_early_bias_late_bias_median")
    return {k: (round(s[k], 4) if isinstance(s[k], float) else s[k]) for k in keep if k in s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "liebana2025")
    p.add_argument("--default-fit", type=Path, default=Path(__file__).resolve().parent / "results" / "trust"
                   / "trust_fit_seed0.csv", help="the default fit's per-mouse table (a start of every fit)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--time-aware", action="store_true", help="fit the first half of sessions, score the rest")
    p.add_argument("--copies", type=int, default=50, help="free-running copies per mouse (in-sample check)")
    p.add_argument("--check-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--workers", type=int, default=2, help="processes (one mouse each at a time)")
    p.add_argument("--simulate-from", type=Path, default=None,
                   help="a <variant>_fit.csv of this script: replace every mouse's choices by one free-running copy "
                        "of its fitted parameters there (on its own stimuli and sessions), then fit (recovery)")
    p.add_argument("--sim-seed", type=int, default=0, help="seed of the simulated copies (--simulate-from)")
    p.add_argument("--relations-only", action="store_true",
                   help="only the mice's late bias against their reward rates (no fit; writes relations.json)")
    p.add_argument("--out", type=Path, default=Path("bench/results/crosstalk"))
    args = p.parse_args(argv)
    if args.copies < 10:
        p.error(f"--copies: need at least 10 for 5-95% bands, got {args.copies}")
    if args.workers < 1:
        p.error(f"--workers: need at least 1, got {args.workers}")
    from mouse_rl.cli.guards import check_out

    try:  # the CLI's --out check: not a file, not below a file, writable
        check_out(args.out, "folder")
    except ValueError as e:
        p.error(str(e))
    for name, path in (("--data", args.data), ("--default-fit", args.default_fit),
                       ("--simulate-from", args.simulate_from or args.data)):
        if not path.exists():
            p.error(f"{name}: {str(path)!r} does not exist")

    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit.batch import make_batch, prepare_trials
    from mouse_rl.fit.checks import LATE_SESSIONS
    from mouse_rl.fit.cv import time_split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the malformed DAP044 is skipped with a warning
        trials = prepare_trials(load_liebana2025(args.data))

    relations = late_bias_and_reward_rates(trials, LATE_SESSIONS)
    if args.relations_only:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "relations.json").write_text(json.dumps(relations, indent=1) + "\n")
        print(json.dumps(relations))
        return 0
    batch = make_batch(trials, prepared=True)
    default = pd.read_csv(args.default_fit).set_index("mouse")
    missing = sorted(set(batch.mice) - set(default.index))
    if missing:
        p.error(f"--default-fit: no row for mice {missing}")
    truth = None
    if args.simulate_from is not None:
        truth = pd.read_csv(args.simulate_from).set_index("mouse")
        if sorted(set(batch.mice) - set(truth.index)) or not set(THETA) <= set(truth.columns):
            p.error(f"--simulate-from: {str(args.simulate_from)!r} is not a fit table of this script for these mice")
        trials = simulated_trials(trials, batch, truth, args.sim_seed)
        batch = make_batch(trials, prepared=True)
    C, CH, R, N = (x.numpy() for x in (batch.contrast, batch.choice, batch.reward, batch.n_trials))
    if args.time_aware:
        train = batch.mask_from_rows(time_split(trials)[0]).numpy()
        n_fit = train.sum(0)
        assert all(train[:k, m].all() for m, k in enumerate(n_fit))  # the first sessions are a prefix
    else:
        n_fit = N
    args.out.mkdir(parents=True, exist_ok=True)
    _compile()  # once, before the worker processes fork
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.workers} worker processes",
               "time_aware": args.time_aware, "simulated_from": None if truth is None else str(args.simulate_from),
               "mice_late_bias_and_reward_rates": relations, "variants": {}}
    for variant in args.variants:
        jobs = [(variant, np.ascontiguousarray(C[:, m]), np.ascontiguousarray(CH[:, m]),
                 np.ascontiguousarray(R[:, m]), int(N[m]), int(n_fit[m]), default.loc[mouse].to_dict(), m)
                for m, mouse in enumerate(batch.mice)]
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        with Pool(args.workers) as pool:
            fits = pool.map(fit_mouse, jobs, chunksize=1)
        seconds = time.perf_counter() - t0
        table = pd.DataFrame([{"mouse": mouse, **dict(zip(THETA, f["theta"])), "neg_log_post": f["neg_log_post"],
                               "loglik_fit": f["loglik_fit"], "loglik_test": f["loglik_test"], "n_fit": f["n_fit"],
                               "n_test": f["n_test"]} for mouse, f in zip(batch.mice, fits)])
        table.to_csv(args.out / f"{variant}_fit.csv", index=False)
        row = {"n_free_per_mouse": len(BASE) + len(VARIANTS[variant]), "fit_seconds": round(seconds, 1),
               "load_1min": [load0, os.getloadavg()[0]], "loglik_fit": round(float(table["loglik_fit"].sum()), 1),
               "neg_log_post": round(float(table["neg_log_post"].sum()), 1)}
        if args.time_aware:
            row["test_bits_per_trial"] = round(float(table["loglik_test"].sum() / table["n_test"].sum() / math.log(2)),
                                               4)
            row["test_loglik"] = round(float(table["loglik_test"].sum()), 1)
        else:
            P = np.full(C.shape, np.nan)
            for m, f in enumerate(fits):
                P[:len(f["p_right"]), m] = f["p_right"]
            row["teacher_forced"] = teacher_forced_late(trials, batch, P)
            row["check"] = {f"seed{s}": check(batch, [f["theta"] for f in fits], args.copies, s)
                            for s in args.check_seeds}
            for name in VARIANTS[variant]:
                row[f"{name}_median"] = round(float(table[name].median()), 4)
        if truth is not None:
            from scipy.stats import spearmanr

            for name in VARIANTS[variant]:
                if name in truth and truth[name].nunique() > 1:
                    true = truth.loc[batch.mice, name].to_numpy()
                    row[f"{name}_recovery"] = {"spearman": round(float(spearmanr(true, table[name]).statistic), 3),
                                               "median_abs_error": round(float(np.median(np.abs(table[name] - true))),
                                                                         4)}
        summary["variants"][variant] = row
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(variant, json.dumps(row))
    return 0


def simulated_trials(trials: pd.DataFrame, batch, truth: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``trials`` (prepared) with each mouse's choices replaced by one free-running copy of ``truth``'s
    parameters for it (rewards from those choices; zero contrast: NaN, learned as 0.5)."""
    from mouse_rl.network import stimulus_reward

    C, N = batch.contrast.numpy(), batch.n_trials.numpy()
    rows = batch.row.numpy()
    choice = trials["choice"].to_numpy().copy()
    for m, mouse in enumerate(batch.mice):
        out, p = np.zeros((1, C.shape[0]), dtype=np.int64), np.zeros((1, C.shape[0]))
        free_run(truth.loc[mouse, list(THETA)].to_numpy(float), np.ascontiguousarray(C[:, m]), int(N[m]), 1,
                 10_000 * (seed + 1) + m, out, p)
        choice[rows[:N[m], m]] = out[0, :N[m]]
    c = trials["signed_contrast"].to_numpy(float)
    return trials.assign(choice=choice, reward=np.where(c == 0, np.nan, stimulus_reward(c, choice)))


def late_bias_and_reward_rates(trials: pd.DataFrame, late_n: int) -> dict:
    """Does each mouse's late bias follow its actions' reward rates, as the constant channel's fixed point says
    (Q^const of an action = its reward rate, so bias = beta a_b (rate_R - rate_L))? Over each mouse's last
    ``late_n`` sessions: P(R | zero contrast) - 0.5 against the mean learning reward after Right minus after
    Left choices (the rates) and against the rewards earned by each per trial (the counts a frozen channel
    accumulates instead); and whether it is the previous choice repeated (zero-contrast trials after a Left
    and after a Right choice, same session)."""
    from mouse_rl.fit.batch import learning_reward

    t = trials.assign(r=learning_reward(trials),
                      previous=trials.groupby(["mouse", "session"])["choice"].shift(1))
    rows = []
    for mouse, d in t.groupby("mouse"):
        d = d[d["session"].isin(sorted(d["session"].unique())[-late_n:])]
        rate = d.groupby("choice")["r"].mean()
        count = d.groupby("choice")["r"].sum() / len(d)
        zero = d[(d["signed_contrast"] == 0) & d["previous"].notna()]
        after = zero.groupby("previous")["choice"].mean() - 0.5
        rows.append({"mouse": mouse, "late_bias": d.loc[d["signed_contrast"] == 0, "choice"].mean() - 0.5,
                     "rate_diff": rate.get(1, np.nan) - rate.get(0, np.nan),
                     "count_diff": count.get(1, 0.0) - count.get(0, 0.0),
                     "repeat_at_zero": float((zero["choice"] == zero["previous"]).mean()),
                     "same_lean_after_either": bool(np.sign(after.get(0.0, np.nan)) == np.sign(after.get(1.0, np.nan)))})
    df = pd.DataFrame(rows)
    return {"n_mice": len(df),
            "mean_repeat_previous_choice_at_zero": round(float(df["repeat_at_zero"].mean()), 3),
            "same_lean_at_zero_after_either_previous_choice": int(df["same_lean_after_either"].sum()),
            "r_late_bias_rate_diff": round(float(df["late_bias"].corr(df["rate_diff"])), 3),
            "r_late_bias_count_diff": round(float(df["late_bias"].corr(df["count_diff"])), 3),
            "same_sign_rate_diff": int((np.sign(df["late_bias"]) == np.sign(df["rate_diff"])).sum()),
            "same_sign_count_diff": int((np.sign(df["late_bias"]) == np.sign(df["count_diff"])).sum())}


if __name__ == "__main__":
    raise SystemExit(main())
