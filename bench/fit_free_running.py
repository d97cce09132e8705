"""Benchmark: the free-running fit (energy score of per-session choice rates) vs the default teacher-forced fit.

For every valid mouse of the Liebana et al. 2025 data (25; DAP044 is malformed and skipped):

1. ``fit_free_running`` (:mod:`mouse_rl.fit.freerun`, defaults: 16 copies, 128 Sobol starts, 15 generations
   of the cross-entropy method, free = default set + ``stim_skew``), then its posterior-predictive check at
   the point estimate with 50 fresh copies per mouse (check seed 1, fit seed ``--seed``, default 0; use a
   fit seed other than 1, whose first 16 choice streams are the check's);
2. the default teacher-forced fit (``fit_mice``) of the same mice and its check, the same way (point estimate,
   50 copies, seed 1), so the two columns differ only in how θ was chosen (``--no-default`` skips it);
3. for both, the teacher-forced log-likelihood of all the mouse's choices at the fitted θ (bits/trial,
   in-sample): what choosing θ by free-running behaviour costs in trial-by-trial prediction.

Option ``--drift bias [stim]`` (:mod:`mouse_rl.fit.drift`): the free-running copies' weights jump at every
session start (log-normal, sd ``sigma_day_<group>`` per night), one extra free parameter per group fitted by
the same energy score; the check then uses the fitted drift. Default: no drift (MODEL.md).
Option ``--default-drift bias [stim]``: the same drift fitted on top of the default teacher-forced fit (its
parameters held, only ``sigma_day`` searched: ``fit_free_running(theta=...)``, 32 Sobol starts, 6
generations), checked with that drift at the point estimate (case ``default_drift``) and with the copies'
parameters drawn from the teacher-forced Laplace posterior (``default_drift_uncertainty``; without drift:
``default_uncertainty``, checked with every default fit). ``--default-options crosstalk side_pref`` (also ``stim_skew``, ``k``): the teacher-forced
fit frees those options (nested, as ``mouse-rl fit --fit-crosstalk --fit-side-pref``).
``--default-session-effects bias [gain]``: each mouse's session effects (:mod:`mouse_rl.fit.session_effects`: a
N(0, sd^2) logit offset and a log-normal gain on beta per session, sds by the marginal likelihood of the
teacher-forced choices at the fit; ``bias`` alone: no gain) are fitted after the teacher-forced fit
(``session_effects.csv``) and every ``default*`` case's copies get them (the drift, if any, is searched with
them). ``--no-freerun`` skips the free-running fit. ``--summary-weight W``: the free-running fit also scores the
per-mouse early bias and late slope difference (``fit_free_running(summary_weight=W)``).
``--check-from DIR``: no fit; the free-running fit saved in ``DIR/freerun_fit.csv`` (with its drift sds) is
checked again with the current code (cases ``freerun`` at the point estimate and ``freerun_uncertainty`` with
θ drawn from :func:`mouse_rl.fit.freerun.choice_precision`), e.g. fits made before the check drew parameters.
``--check-seed`` (default 1) sets the check's seed.
``--refit-drift-from DIR --drift ...``: θ from a saved free-running fit (``DIR/freerun_fit.csv``, e.g. one with
``--summary-weight 3``) held, only the drift sds fitted on the session rates (case ``refit_drift``; combine
with ``--no-freerun --no-default``).

Writes ``OUT/freerun_fit.csv``, ``OUT/freerun_history.csv``, ``OUT/check_per_mouse_<fit>.csv``,
``OUT/check_per_session_<fit>.csv`` and ``OUT/freerun_summary.json`` (with the shares of sessions below and above
the copies' band, :func:`band_misses`); prints a table.

Usage::

    python bench/fit_free_running.py --out bench/results/freerun
    python bench/fit_free_running.py --mice DAP024 DAP033 --no-default --out /tmp/ff
    python bench/fit_free_running.py --no-default --seed 2 --out bench/results/freerun_seed2
    python bench/fit_free_running.py --no-default --drift bias --out bench/results/freerun_drift_bias
    python bench/fit_free_running.py --no-freerun --default-drift stim --out bench/results/freerun_default_drift_stim
    python bench/fit_free_running.py --no-freerun --default-options crosstalk side_pref --default-drift bias stim \
        --out bench/results/freerun_crosstalk_side_pref_drift_bias_stim
    python bench/fit_free_running.py --no-freerun --default-options crosstalk side_pref --default-session-effects bias \
        --default-drift bias stim --out bench/results/freerun_crosstalk_side_pref_session_bias_drift_bias_stim
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mouse_rl.data import load_trials  # noqa: E402
from mouse_rl.fit import fit_mice, log_likelihood  # noqa: E402
from mouse_rl.fit.checks import posterior_predictive_check  # noqa: E402
from mouse_rl.fit.freerun import (FREERUN_FREE, FreeRunFit, check_free_running, choice_precision,  # noqa: E402
                                  fit_free_running)
from mouse_rl.fit.session_effects import fit_session_effects  # noqa: E402
from mouse_rl.fit.transforms import with_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: ``--default-options`` names and the :func:`mouse_rl.fit.transforms.with_options` flag each sets.
DEFAULT_OPTIONS = {"stim_skew": "skew", "k": "k", "crosstalk": "crosstalk", "side_pref": "side_pref"}


def default_free(options) -> tuple:
    """The teacher-forced fit's free set with the ``--default-options`` ``options`` freed."""
    return with_options(**{DEFAULT_OPTIONS[o]: True for o in options})


def saved_default_fit(fit_dir: Path):
    """``(rows, transform, u)`` of the teacher-forced fit a ``--default-options`` run saved in ``fit_dir``
    (``default_fit.csv``, its options in ``freerun_summary.json``): rows sorted by mouse, the fit's transform and
    the unconstrained parameters ``(M, P)``."""
    from mouse_rl.fit.fitting import make_transform

    options = json.loads((fit_dir / "freerun_summary.json").read_text())["default_options"]
    saved = pd.read_csv(fit_dir / "default_fit.csv").sort_values("mouse")
    tr = make_transform(default_free(options), None)
    return saved, tr, tr.to_u({f: saved[f].to_numpy(float) for f in tr.free}, len(saved)).numpy()


def band_misses(per_session: pd.DataFrame) -> dict:
    """Shares of sessions whose accuracy lies below / above the copies' band, overall and in the last third of
    each mouse's sessions (where the mice end more accurate than copies on another strategy)."""
    a = per_session
    last = a["session"] > 2 / 3 * a.groupby("mouse")["session"].transform("max")
    below, above = a["accuracy"] < a["accuracy_lo"], a["accuracy"] > a["accuracy_hi"]
    return {"below_band": float(below.mean()), "above_band": float(above.mean()),
            "below_band_last_third": float(below[last].mean()), "above_band_last_third": float(above[last].mean())}


def bits_per_trial(trials, params) -> float:
    ll = log_likelihood(trials, params).numpy()
    return float(ll.sum() / trials.groupby("mouse").size().sum() / math.log(2))


def saved_theta(path: Path, trials):
    """``(rows, transform, u)`` of a saved ``freerun_fit.csv``: its rows of the mice in ``trials`` (sorted by
    mouse), the free-running transform and their unconstrained parameters."""
    from mouse_rl.fit.fitting import make_transform

    saved = pd.read_csv(path)
    saved = saved[saved["mouse"].isin(trials["mouse"].astype(str).unique())].sort_values("mouse")
    tr = make_transform(FREERUN_FREE, None)
    return saved, tr, tr.to_u({f: saved[f].to_numpy(float) for f in tr.free}, len(saved)).numpy()


def saved_fit(path: Path, trials) -> FreeRunFit:
    """A :class:`FreeRunFit` rebuilt from its ``freerun_fit.csv`` (natural values, drift sds), with the
    precision :func:`choice_precision` computes at it."""
    saved, tr, u = saved_theta(path, trials)
    sigma = {c.removeprefix("sigma_day_"): saved[c].to_numpy(float) for c in saved if c.startswith("sigma_day_")}
    return FreeRunFit(saved.reset_index(drop=True), u, tr, pd.DataFrame(), {}, sigma,
                      choice_precision(trials, u, tr))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liebana2025"))
    ap.add_argument("--mice", nargs="*", default=None)
    ap.add_argument("--copies", type=int, default=50, help="copies per mouse in the checks")
    ap.add_argument("--no-default", action="store_true", help="skip the default teacher-forced fit")
    ap.add_argument("--seed", type=int, default=0, help="seed of the free-running fit (the checks use seed 1)")
    ap.add_argument("--fit-copies", type=int, default=16, help="copies per candidate in the fit (default 16)")
    ap.add_argument("--generations", type=int, default=15, help="cross-entropy generations (default 15)")
    ap.add_argument("--drift", nargs="*", default=[], choices=["bias", "stim"],
                    help="weight groups with fitted overnight drift (default none)")
    ap.add_argument("--default-drift", nargs="*", default=[], choices=["bias", "stim"],
                    help="also fit this overnight drift on top of the default teacher-forced fit")
    ap.add_argument("--default-options", nargs="*", default=[], choices=list(DEFAULT_OPTIONS),
                    help="options freed in the default teacher-forced fit (nested, as mouse-rl fit --fit-OPTION)")
    ap.add_argument("--default-session-effects", nargs="*", default=[], choices=["bias", "gain"],
                    help="fit each mouse's session effects (bias, gain) at the teacher-forced fit; the default "
                         "cases' copies get them")
    ap.add_argument("--summary-weight", type=float, default=0.0,
                    help="free-running fit: also score early bias and late slope difference with this weight")
    ap.add_argument("--refit-drift-from", default=None, metavar="DIR",
                    help="take θ of the free-running fit saved in DIR/freerun_fit.csv (no refit) and fit only the "
                         "--drift sds on the session rates (summary weight 0), θ held")
    ap.add_argument("--no-freerun", action="store_true", help="skip the free-running fit")
    ap.add_argument("--check-from", default=None, metavar="DIR",
                    help="check the free-running fit saved in DIR/freerun_fit.csv instead of fitting")
    ap.add_argument("--check-seed", type=int, default=1, help="seed of the checks' copies (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: unchanged)")
    ap.add_argument("--out", default="bench/results/freerun")
    args = ap.parse_args(argv)
    if args.check_from and not (Path(args.check_from) / "freerun_fit.csv").is_file():
        ap.error(f"--check-from: {args.check_from!r} holds no freerun_fit.csv (a folder this script wrote)")
    if args.refit_drift_from and not args.drift:
        ap.error("--refit-drift-from needs --drift")
    if {"stim_skew", "k", "crosstalk"} <= set(args.default_options):
        ap.error("--default-options: at most two of stim_skew, k and crosstalk at once (the fit kernel's limit)")
    if args.no_default and (args.default_drift or args.default_options or args.default_session_effects):
        ap.error("--default-drift, --default-options and --default-session-effects need the default fit "
                 "(drop --no-default)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trials = load_trials(args.data)
    if args.mice:
        trials = trials[trials["mouse"].isin(args.mice)]
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, numba threads {numba.get_num_threads()}",
               "load_before": os.getloadavg(), "n_mice": int(trials["mouse"].nunique()),
               "check_copies": args.copies, "check_seed": args.check_seed, "fit_seed": args.seed,
               "fit_copies": args.fit_copies, "generations": args.generations, "drift": list(args.drift),
               "default_drift_groups": list(args.default_drift), "default_options": list(args.default_options),
               "summary_weight": args.summary_weight, "default_session_effects": list(args.default_session_effects)}
    cases, fits = {}, {}
    cs = args.check_seed
    if args.check_from:
        ff = saved_fit(Path(args.check_from) / "freerun_fit.csv", trials)
        summary["checked_from"] = str(args.check_from)
    elif not args.no_freerun:
        t0 = time.perf_counter()
        ff = fit_free_running(trials, seed=args.seed, n_copies=args.fit_copies, n_gen=args.generations,
                              progress=True, drift=tuple(args.drift),
                              summary_weight=args.summary_weight)
        summary["freerun_seconds"] = time.perf_counter() - t0
        ff.params.to_csv(out / "freerun_fit.csv", index=False)
        ff.history.to_csv(out / "freerun_history.csv", index=False)
    if args.check_from or not args.no_freerun:
        fixed = ff.transform.fixed
        mp = fixed.replace(**{f: ff.params.sort_values("mouse")[f].to_numpy(float) for f in ff.transform.free})
        bits = bits_per_trial(trials, mp)
        cases["freerun"] = (check_free_running(ff, trials, args.copies, seed=cs, parameter_uncertainty=False), bits)
        cases["freerun_uncertainty"] = (check_free_running(ff, trials, args.copies, seed=cs), bits)
        fits["freerun"] = fits["freerun_uncertainty"] = ff
    if args.refit_drift_from:
        saved, tr, theta = saved_theta(Path(args.refit_drift_from) / "freerun_fit.csv", trials)
        t0 = time.perf_counter()
        rd = fit_free_running(trials, seed=args.seed, n_copies=args.fit_copies, n_starts=32, n_gen=6,
                              drift=tuple(args.drift), theta=theta, progress=True)
        summary["refit_drift_seconds"] = time.perf_counter() - t0
        summary["refit_drift_from"] = str(args.refit_drift_from)
        rd.params.to_csv(out / "refit_drift_fit.csv", index=False)
        mp = tr.fixed.replace(**{f: saved[f].to_numpy(float) for f in tr.free})
        chk = check_free_running(rd, trials, args.copies, seed=cs, parameter_uncertainty=False)
        cases["refit_drift"] = (chk, bits_per_trial(trials, mp))
        fits["refit_drift"] = rd
    if not args.no_default:
        t0 = time.perf_counter()
        fit = fit_mice(trials, free=default_free(args.default_options))
        summary["default_seconds"] = time.perf_counter() - t0
        fit.params.to_csv(out / "default_fit.csv", index=False)
        order = np.argsort(fit.params["mouse"].astype(str).to_numpy(), kind="stable")
        se = {}
        if args.default_session_effects:
            t0 = time.perf_counter()
            table = fit_session_effects(trials, fit.params, bias="bias" in args.default_session_effects,
                                        gain="gain" in args.default_session_effects)
            summary["session_effects_seconds"] = time.perf_counter() - t0
            table.to_csv(out / "session_effects.csv", index=False)
            se = {k: table[k].to_numpy() for k in ("session_bias_sd", "session_gain_sd")}
            summary.update({f"{k}_median": float(np.median(v)) for k, v in se.items()})
            summary["session_effects_loglik_gain"] = float(table["loglik_gain"].sum())
        chk = posterior_predictive_check(trials, fit.u[order], fit.hessian[order], fit.transform, args.copies,
                                         seed=cs, parameter_uncertainty=False, **se)
        cases["default"] = (chk, bits_per_trial(trials, fit.model_params()))
        chk = posterior_predictive_check(trials, fit.u[order], fit.hessian[order], fit.transform, args.copies,
                                         seed=cs, **se)
        cases["default_uncertainty"] = (chk, cases["default"][1])
        if args.default_drift:
            t0 = time.perf_counter()
            dd = fit_free_running(trials, free=fit.transform.free, fixed=fit.transform.fixed, seed=args.seed,
                                  n_copies=args.fit_copies, n_starts=32, n_gen=6, drift=tuple(args.default_drift),
                                  theta=fit.u[order], progress=True, **se)
            summary["default_drift_seconds"] = time.perf_counter() - t0
            dd.params.to_csv(out / "default_drift_fit.csv", index=False)
            chk = check_free_running(dd, trials, args.copies, seed=cs, parameter_uncertainty=False)
            cases["default_drift"] = (chk, cases["default"][1])
            fits["default_drift"] = dd
            # the same drift, the copies' parameters drawn from the teacher-forced fit's Laplace posterior
            chk = posterior_predictive_check(trials, fit.u[order], fit.hessian[order], fit.transform, args.copies,
                                             seed=cs, sigma_day=dd.sigma_day_matrix(), **se)
            cases["default_drift_uncertainty"] = (chk, cases["default"][1])
            fits["default_drift_uncertainty"] = dd

    for name, (chk, bits) in cases.items():
        chk.per_mouse.to_csv(out / f"check_per_mouse_{name}.csv", index=False)
        chk.per_session.to_csv(out / f"check_per_session_{name}.csv", index=False)
        summary[name] = {**chk.summary, "teacher_forced_bits_per_trial": bits, **band_misses(chk.per_session)}
    for name, f in fits.items():
        for g, v in f.sigma_day.items():
            summary[name][f"sigma_day_{g}_median"] = float(np.median(v))
    summary["load_after"] = os.getloadavg()
    (out / "freerun_summary.json").write_text(json.dumps(summary, indent=1))
    keys = ("session_coverage", "late_slope_inside", "early_bias_inside", "late_bias_inside", "side_match",
            "expected_side_match", "mean_side_share", "expected_side_share", "teacher_forced_bits_per_trial")
    width = max(14, *(len(c) + 2 for c in cases)) if cases else 14
    print(f"{'':32s}" + "".join(f"{c:>{width}s}" for c in cases))
    for k in keys:
        print(f"{k:32s}" + "".join(f"{summary[c][k]:{width}.4g}" for c in cases))
    return summary


if __name__ == "__main__":
    main()
