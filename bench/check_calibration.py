"""Calibration of the posterior-predictive check on mice simulated from the network itself.

Simulates a cohort of deep-network mice (start biases drawn per mouse), then
runs :func:`mouse_rl.fit.checks.posterior_predictive_check` twice: with the
*true* parameters (no fit; what a perfect fit could achieve) and after fitting
them with the default :func:`mouse_rl.fit.fit_mice`. A calibrated check puts
~90% of sessions inside the copies' 5-95% band, and the mean share of copies
with each mouse's learner side equals the copies' self-agreement.

Usage::

    python bench/check_calibration.py [--mice 20] [--sessions 10] [--trials 200] [--copies 100] [--skew 2]

``--skew SD`` draws each simulated mouse's ``stim_skew`` (per-side initial stimulus channels, an option
of :data:`mouse_rl.params.PARAMS`) from N(0, SD^2) and fits with it free.

``--k-sd SD`` draws each simulated mouse's k (the constant channel's initial gain, 1 in MODEL.md) log-normally,
log k ~ N(0, SD^2), and fits with it free (the option ``mouse-rl fit --fit-k``).

    python bench/check_calibration.py --k-sd 1 --out bench/results/check_calibration/fit_k.json

``--crosstalk LO HI`` draws each simulated mouse's crosstalk (a grating also drives the other side's
stimulus input; 0 in MODEL.md) uniformly in [LO, HI] and fits with it free (``mouse-rl fit --fit-crosstalk``).

    python bench/check_calibration.py --crosstalk 0 0.6 --out bench/results/check_calibration/crosstalk.json

``--side-pref SD`` draws each simulated mouse's innate side preference rho from N(0, SD^2) and its time constant
tau log-uniformly in [300, 3000] trials (0 in MODEL.md) and fits both (``mouse-rl fit --fit-side-pref``; with
``--crosstalk`` too, ``--fit-crosstalk --fit-side-pref``).

    python bench/check_calibration.py --crosstalk 0 0.6 --side-pref 2 --out bench/results/check_calibration/crosstalk_side_pref.json

``--paper-regime`` simulates every mouse with MODEL.md's parameters instead (η 0.0026, β 9, w0 0.05, s0 0.2, no
start bias, no lapse): the regime in which the model gives the paper's cohort relations (bias emerging while
the first stimulus is learned, then reversing); the default (η 0.03, start biases drawn per mouse) is the
other regime (a start bias that persists).

    python bench/check_calibration.py --paper-regime --sessions 25 --trials 220 --out bench/results/check_calibration/paper_regime.json

``--freerun`` checks the free-running option instead (:mod:`mouse_rl.fit.freerun`, as the README runs it on
the real mice: overnight drift of both weight groups, ``--summary-weight``, default 1): the mice are simulated
*with* overnight drift (:func:`mouse_rl.fit.drift.simulate_drifting`; each mouse's sd per group log-uniform
in ``--drift-sd LO HI``) and the per-side skew, fitted by :func:`fit_free_running`, and checked with the
fitted drift, both with the parameter draws of :func:`mouse_rl.fit.freerun.choice_precision` and at the
point estimate; the true parameters with the true drift give the reference. ``--out FILE`` writes the JSON.

    python bench/check_calibration.py --freerun --skew 2 --out bench/results/check_calibration/freerun.json

``--tf-drift`` checks the teacher-forced fit with overnight drift of its copies (as ``bench/fit_free_running.py
--default-drift bias stim`` on the real mice): the mice are simulated with drift (sd per group log-uniform in
``--drift-sd``) and the options asked for (``--crosstalk``, ``--side-pref``, ...), fitted by ``fit_mice`` with those
options, then each mouse's drift sds are fitted with its teacher-forced θ held (``fit_free_running(theta=...)``,
32 Sobol starts, 6 generations, ``--fit-copies``), and checked with the fitted drift, with the teacher-forced
Laplace draws and at the point estimate; the true parameters with the true drift give the reference.

    python bench/check_calibration.py --tf-drift --crosstalk 0 0.6 --side-pref 2 --out bench/results/check_calibration/tf_drift_crosstalk_side_pref.json

``--session-effects BIAS GAIN`` checks the whole session-effects procedure (as ``bench/fit_free_running.py
--default-session-effects bias gain`` on the real mice): the mice are simulated with session effects (each
mouse's bias sd BIAS x U(0.5, 1.5), gain sd GAIN x U(0.5, 1.5); :func:`mouse_rl.fit.drift.simulate_drifting`
without drift), fitted by ``fit_mice`` (without the effects: they are fitted next, θ held), their sds fitted by
:func:`mouse_rl.fit.session_effects.fit_session_effects`, and checked with the fitted effects (Laplace draws and
point estimate) and without them; the true parameters with the true effects give the reference.

    python bench/check_calibration.py --session-effects 0.6 0.3 --sessions 25 --out bench/results/check_calibration/session_effects.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mice", type=int, default=20)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--copies", type=int, default=100)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--skew", type=float, default=0.0,
                   help="sd of the true per-mouse stim_skew (default 0 = MODEL.md); > 0 also fits it")
    p.add_argument("--k-sd", type=float, default=0.0,
                   help="draw each mouse's k from log k ~ N(0, SD^2) and fit it (default 0: k = 1, not fitted)")
    p.add_argument("--crosstalk", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="draw each mouse's crosstalk uniformly in [LO, HI] and fit it (default: 0, not fitted)")
    p.add_argument("--side-pref", type=float, default=0.0, metavar="SD",
                   help="draw each mouse's side preference rho from N(0, SD^2), tau log-uniform in [300, 3000] "
                        "trials, and fit both (default 0: no preference, not fitted)")
    p.add_argument("--paper-regime", action="store_true",
                   help="simulate every mouse with MODEL.md's parameters (eta 0.0026, beta 9, w0 0.05, s0 0.2, no "
                        "start bias: the regime of the paper's cohort relations; use --sessions 25 --trials 220) "
                        "instead of eta 0.03 with start biases drawn per mouse")
    p.add_argument("--freerun", action="store_true", help="calibrate the free-running fit with drift (see above)")
    p.add_argument("--tf-drift", action="store_true",
                   help="calibrate the teacher-forced fit with fitted overnight drift of its copies (see above)")
    p.add_argument("--session-effects", type=float, nargs=2, default=None, metavar=("BIAS", "GAIN"),
                   help="calibrate the fit with session effects: mice simulated with them (see above)")
    p.add_argument("--drift-sd", type=float, nargs=2, default=(0.05, 0.4), metavar=("LO", "HI"))
    p.add_argument("--summary-weight", type=float, default=1.0)
    p.add_argument("--fit-copies", type=int, default=16)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if not args.k_sd >= 0 or not args.skew >= 0 or not args.side_pref >= 0:
        p.error(f"--k-sd, --skew and --side-pref must be >= 0, got {args.k_sd}, {args.skew} and {args.side_pref}")
    if args.crosstalk is not None and not 0 <= args.crosstalk[0] <= args.crosstalk[1] <= 1:
        p.error(f"--crosstalk: need 0 <= LO <= HI <= 1, got {args.crosstalk}")
    if args.mice < 3 or args.sessions < 1 or args.trials < 1 or args.copies < 2:
        p.error(f"need --mice >= 3 (correlations across mice), --sessions/--trials >= 1, --copies >= 2; got "
                f"{args.mice}, {args.sessions}, {args.trials}, {args.copies}")
    if args.freerun + args.tf_drift + (args.session_effects is not None) > 1:
        p.error("--freerun, --tf-drift and --session-effects: choose one")
    if args.session_effects is not None and not min(args.session_effects) >= 0:
        p.error(f"--session-effects: sds must be >= 0, got {args.session_effects}")
    if args.freerun:
        return freerun(args)

    from scipy.stats import spearmanr

    from mouse_rl.fit import fit_mice, make_transform
    from mouse_rl.fit.transforms import with_options
    from mouse_rl.fit.checks import check_fit, posterior_predictive_check
    from mouse_rl.params import ModelParams
    from mouse_rl.simulate import simulate_cohort

    r = np.random.default_rng(0)
    n = args.mice
    truth = default_truth(r, n, args.skew)
    if args.paper_regime:  # MODEL.md's parameters for every mouse: sides and biases emerge while learning
        truth = ModelParams(stim_skew=r.normal(0.0, args.skew, n) if args.skew > 0 else 0.0)
    if args.k_sd > 0:  # drawn after the others, so that they stay the draws of a run without it
        truth = truth.replace(k=np.exp(r.normal(0.0, args.k_sd, n)))
    if args.crosstalk is not None:  # drawn last too
        truth = truth.replace(crosstalk=r.uniform(*args.crosstalk, n))
    if args.side_pref > 0:  # and last
        truth = truth.replace(side_pref=r.normal(0.0, args.side_pref, n),
                              side_pref_tau=np.exp(r.uniform(np.log(300.0), np.log(3000.0), n)))
    tr = make_transform(with_options(args.skew > 0, args.k_sd > 0, crosstalk=args.crosstalk is not None,
                                     side_pref=args.side_pref > 0))
    if args.tf_drift:
        return tf_drift(args, truth, tr)
    if args.session_effects is not None:
        return tf_session_effects(args, truth, tr)
    sim = simulate_cohort(n, args.sessions, args.trials, truth, seed=args.seed, dtype=torch.float64)
    u = tr.to_u({k: getattr(truth, k) for k in tr.free}, n).numpy()
    exact = posterior_predictive_check(sim.trials, u, np.tile(np.eye(tr.n_free) * 1e6, (n, 1, 1)), tr, args.copies,
                                       1, parameter_uncertainty=False)
    t0 = time.perf_counter()
    fit = fit_mice(sim.trials, free=tr.free)
    fitted = check_fit(fit, sim.trials, n_copies=args.copies, seed=1)
    out = {"true_parameters": exact.summary, "fitted": fitted.summary, "fit_seconds": time.perf_counter() - t0}
    if args.k_sd > 0:
        k_fit = fit.params.sort_values("mouse")["k"].to_numpy()
        out["k_recovery"] = {"spearman": float(spearmanr(k_fit, truth.k)[0]),
                             "median_abs_log_error": float(np.median(np.abs(np.log(k_fit / truth.k))))}
    if args.crosstalk is not None:
        g_fit = fit.params.sort_values("mouse")["crosstalk"].to_numpy()
        out["crosstalk_recovery"] = {"spearman": float(spearmanr(g_fit, truth.crosstalk)[0]),
                                     "median_abs_error": float(np.median(np.abs(g_fit - truth.crosstalk))),
                                     "true": np.round(truth.crosstalk, 4).tolist(), "fitted": np.round(g_fit, 4).tolist()}
    if args.side_pref > 0:
        fp = fit.params.sort_values("mouse")
        rho, tau = fp["side_pref"].to_numpy(), fp["side_pref_tau"].to_numpy()
        out["side_pref_recovery"] = {
            "spearman_rho": float(spearmanr(rho, truth.side_pref)[0]),
            "sign_agrees": int((np.sign(rho) == np.sign(truth.side_pref)).sum()),
            "median_abs_error_rho": float(np.median(np.abs(rho - truth.side_pref))),
            "spearman_tau": float(spearmanr(tau, truth.side_pref_tau)[0]),
            "true_rho": np.round(truth.side_pref, 3).tolist(), "fitted_rho": np.round(rho, 3).tolist(),
            "true_tau": np.round(truth.side_pref_tau, 1).tolist(), "fitted_tau": np.round(tau, 1).tolist()}
    return report(out, args.out)


def tf_drift(args, truth, tr) -> int:
    """``--tf-drift``: mice simulated with overnight drift; teacher-forced fit, drift fitted with θ held, checks."""
    from scipy.stats import spearmanr

    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.checks import posterior_predictive_check
    from mouse_rl.fit.drift import GROUPS, sigma_matrix, simulate_drifting
    from mouse_rl.fit.freerun import fit_free_running
    from mouse_rl.simulate import simulate_cohort

    n = args.mice
    r = np.random.default_rng(1)  # the drift sds: a stream of their own, so the other draws stay those of main()
    lo, hi = np.log(args.drift_sd)
    sig = {g: np.exp(r.uniform(lo, hi, n)) for g in GROUPS}
    base = simulate_cohort(n, args.sessions, args.trials, truth, seed=args.seed, dtype=torch.float64).trials
    sim = simulate_drifting(base, truth, sigma_matrix(sig, n), seed=args.seed)
    u = tr.to_u({k: getattr(truth, k) for k in tr.free}, n).numpy()
    exact = posterior_predictive_check(sim, u, np.tile(np.eye(tr.n_free), (n, 1, 1)), tr, args.copies, 1,
                                       parameter_uncertainty=False, sigma_day=sigma_matrix(sig, n))
    t0 = time.perf_counter()
    fit = fit_mice(sim, free=tr.free)
    order = np.argsort(fit.params["mouse"].astype(str).to_numpy(), kind="stable")
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    dd = fit_free_running(sim, free=fit.transform.free, fixed=fit.transform.fixed, n_copies=args.fit_copies,
                          n_starts=32, n_gen=6, drift=tuple(GROUPS), theta=fit.u[order], seed=2)
    drift_seconds = time.perf_counter() - t0
    checks = {}
    for label, draws, sd in (("fitted_drift_parameter_draws", True, dd.sigma_day_matrix()),
                             ("fitted_drift_point_estimate", False, dd.sigma_day_matrix()),
                             ("no_drift_parameter_draws", True, None)):
        checks[label] = posterior_predictive_check(sim, fit.u[order], fit.hessian[order], fit.transform, args.copies,
                                                   seed=1, parameter_uncertainty=draws, sigma_day=sd).summary
    out = {"simulated": {"mice": n, "sessions": args.sessions, "trials": args.trials, "drift_sd": list(args.drift_sd),
                         "free": list(tr.free), "fit_copies": args.fit_copies},
           "true_parameters_true_drift": exact.summary, **checks, "fit_seconds": fit_seconds,
           "drift_seconds": drift_seconds,
           "recovery": {f"sigma_day_{g}_spearman": float(spearmanr(dd.sigma_day[g], sig[g])[0]) for g in GROUPS}
           | {f"sigma_day_{g}_median_fitted_true": [float(np.median(dd.sigma_day[g])), float(np.median(sig[g]))]
              for g in GROUPS}}
    return report(out, args.out)


def tf_session_effects(args, truth, tr) -> int:
    """``--session-effects``: mice simulated with session effects; teacher-forced fit, their sds fitted with θ
    held, checks with and without them."""
    from scipy.stats import spearmanr

    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.checks import check_fit, posterior_predictive_check
    from mouse_rl.fit.drift import simulate_drifting
    from mouse_rl.fit.session_effects import fit_session_effects
    from mouse_rl.simulate import simulate_cohort

    n = args.mice
    r = np.random.default_rng(2)  # the effects' sds: a stream of their own, so the other draws stay those of main()
    bias, gain = (sd * r.uniform(0.5, 1.5, n) for sd in args.session_effects)
    base = simulate_cohort(n, args.sessions, args.trials, truth, seed=args.seed, dtype=torch.float64).trials
    sim = simulate_drifting(base, truth, np.zeros((n, 9)), seed=args.seed, session_bias_sd=bias,
                            session_gain_sd=gain)
    u = tr.to_u({k: getattr(truth, k) for k in tr.free}, n).numpy()
    exact = posterior_predictive_check(sim, u, np.tile(np.eye(tr.n_free), (n, 1, 1)), tr, args.copies, 1,
                                       parameter_uncertainty=False, session_bias_sd=bias, session_gain_sd=gain)
    t0 = time.perf_counter()
    fit = fit_mice(sim, free=tr.free)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    effects = fit_session_effects(sim, fit.params)
    effects_seconds = time.perf_counter() - t0
    checks = {label: check_fit(fit, sim, args.copies, seed=1, parameter_uncertainty=draws,
                               session_effects=table).summary
              for label, draws, table in (("fitted_effects_parameter_draws", True, effects),
                                          ("fitted_effects_point_estimate", False, effects),
                                          ("no_effects_parameter_draws", True, None))}
    fitted = {k: effects[f"session_{k}_sd"].to_numpy() for k in ("bias", "gain")}
    out = {"simulated": {"mice": n, "sessions": args.sessions, "trials": args.trials,
                         "session_effects": list(args.session_effects), "free": list(tr.free)},
           "true_parameters_true_effects": exact.summary, **checks, "fit_seconds": fit_seconds,
           "effects_seconds": effects_seconds,
           "recovery": {f"session_{k}_sd_spearman": float(spearmanr(fitted[k], true)[0])
                        for k, true in (("bias", bias), ("gain", gain))}
           | {f"session_{k}_sd_median_fitted_true": [float(np.median(fitted[k])), float(np.median(true))]
              for k, true in (("bias", bias), ("gain", gain))}}
    return report(out, args.out)


def default_truth(r, n: int, skew: float):
    """The simulated mice's parameters (η 0.03, start biases drawn per mouse from ``r``; ``stim_skew`` from
    N(0, skew²) when ``skew`` > 0)."""
    from mouse_rl.params import ModelParams

    return ModelParams(eta=0.03, beta=8.0, w0=0.1, s0=0.25, b_L=r.uniform(0.01, 0.3, n),
                       b_R=r.uniform(0.01, 0.3, n), lapse=0.03,
                       stim_skew=r.normal(0.0, skew, n) if skew > 0 else 0.0)


def report(out: dict, path) -> int:
    import os
    import platform

    import numba

    out["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, numba threads {numba.get_num_threads()}"
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=1)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


def freerun(args) -> int:
    from scipy.stats import spearmanr

    from mouse_rl.fit.checks import posterior_predictive_check
    from mouse_rl.fit.drift import GROUPS, sigma_matrix, simulate_drifting
    from mouse_rl.fit.freerun import FREERUN_FREE, check_free_running, fit_free_running
    from mouse_rl.fit.transforms import ParamTransform
    from mouse_rl.simulate import simulate_cohort

    r = np.random.default_rng(0)
    n = args.mice
    lo, hi = np.log(args.drift_sd)
    sig = {g: np.exp(r.uniform(lo, hi, n)) for g in GROUPS}
    truth = default_truth(r, n, args.skew)
    true_skew = np.broadcast_to(np.asarray(truth.stim_skew, float), (n,))
    base = simulate_cohort(n, args.sessions, args.trials, truth, seed=args.seed, dtype=torch.float64).trials
    sim = simulate_drifting(base, truth, sigma_matrix(sig, n), seed=args.seed)
    tr = ParamTransform(free=FREERUN_FREE)
    u = tr.to_u({k: getattr(truth, k) for k in tr.free}, n).numpy()
    exact = posterior_predictive_check(sim, u, np.tile(np.eye(tr.n_free), (n, 1, 1)), tr, args.copies, 1,
                                       parameter_uncertainty=False, sigma_day=sigma_matrix(sig, n))
    t0 = time.perf_counter()
    fit = fit_free_running(sim, drift=tuple(GROUPS), summary_weight=args.summary_weight, n_copies=args.fit_copies,
                           seed=2)
    seconds = time.perf_counter() - t0
    drawn = check_free_running(fit, sim, args.copies, seed=1)
    point = check_free_running(fit, sim, args.copies, seed=1, parameter_uncertainty=False)
    skew = fit.params.sort_values("mouse")["stim_skew"].to_numpy()
    out = {"simulated": {"mice": n, "sessions": args.sessions, "trials": args.trials, "skew_sd": args.skew,
                         "drift_sd": list(args.drift_sd), "summary_weight": args.summary_weight,
                         "fit_copies": args.fit_copies},
           "true_parameters_true_drift": exact.summary, "fitted_with_parameter_draws": drawn.summary,
           "fitted_point_estimate": point.summary, "fit_seconds": seconds,
           "recovery": {"stim_skew_sign_agreement": float(np.mean(np.sign(skew) == np.sign(true_skew))),
                        "stim_skew_spearman": float(spearmanr(skew, true_skew)[0]),
                        **{f"sigma_day_{g}_spearman": float(spearmanr(fit.sigma_day[g], sig[g])[0]) for g in GROUPS}}}
    if args.out is not None:  # per mouse: true and fitted parameters, and the checks' per-mouse rows
        per = fit.params.sort_values("mouse").reset_index(drop=True)
        for k in tr.free:
            per[f"true_{k}"] = np.broadcast_to(np.asarray(getattr(truth, k), float), (n,))
        for g in GROUPS:
            per[f"true_sigma_day_{g}"] = sig[g]
        per = per.merge(drawn.per_mouse, on="mouse", suffixes=("", "_check"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        per.to_csv(args.out.with_suffix(".csv"), index=False)
    return report(out, args.out)


if __name__ == "__main__":
    sys.exit(main())
