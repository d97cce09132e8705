"""Benchmark: the network vs four baselines on the Liebana et al. 2025 mice, held-out bits/trial.

For every valid mouse (25; DAP044 is malformed and skipped), both
cross-validation schemes of :mod:`mouse_rl.fit.cv` (time-aware: fit the first
half of the sessions, score the rest; interleaved: hold out every 10th
trial), the models

* ``network``  - the deep network (w0 free), one batched fit of all mice x restarts;
* ``shallow``  - the same with w0 = 1 fixed;
* ``qlearning`` / ``qlearning_tabular`` - Q-learning baselines (batched);
* ``psytrack`` - PsyTrack (one mouse at a time, its own hyperparameter optimisation).

The four batched models are scored by their Laplace posterior predictive
(:mod:`mouse_rl.fit.predictive`, ``--predictive laplace``, the default) with
the plug-in score beside it (``bits_per_trial_plugin_total``); PsyTrack is
scored at its fitted weights.

Writes ``OUT/cv_<scheme>_<model>.csv`` as each finishes (so that a partial run
is usable) and ``OUT/summary.csv``: held-out bits/trial per model (total over
mice, trial-weighted, and mean over mice) and fit wall time (batched models:
one batched fit; PsyTrack: sum over mice).

``--trust`` runs the fit-trust benchmark instead (what a user gets from
``mouse-rl fit DATA`` with no options): the default fit of all mice (wall
time), a rerun with another restart seed (how many mice reach the same
optimum within 0.5 log-posterior units), convergence and identifiability per
mouse, model-vs-data learner sides, and the posterior-predictive check (50
free-running copies per mouse), and the cohort relations of the fitted model learning from each
mouse's own choices (``teacher_forced_r_...``, with the mice whose constant channel ends frozen):
``OUT/trust_fit_seed{0,1}.csv``,
``OUT/trust_check_per_mouse.csv`` and ``OUT/trust_summary.json``.

Usage::

    python bench/fit_real_mice.py --trust --out out/bench_trust
    python bench/fit_real_mice.py --trust --seeds 0 --fit-skew --out out/bench_trust_skew
    python bench/fit_real_mice.py --models network --fit-skew --out out/bench_fit_skew
    python bench/fit_real_mice.py --trust --fit-k --out bench/results/trust_fit_k
    python bench/fit_real_mice.py --models network --fit-k --out bench/results/cv_network_fit_k
    python bench/fit_real_mice.py --trust --fit-crosstalk --out bench/results/trust_crosstalk
    python bench/fit_real_mice.py --models network --schemes time interleaved --fit-crosstalk --out bench/results/cv_network_crosstalk
    python bench/fit_real_mice.py --trust --fit-crosstalk --fit-side-pref --out bench/results/trust_crosstalk_side_pref
    python bench/fit_real_mice.py --models network --schemes time interleaved --fit-crosstalk --fit-side-pref --out bench/results/cv_network_crosstalk_side_pref
    python bench/fit_real_mice.py --data ../shared/data/liebana2025 --out out/bench_fit
    python bench/fit_real_mice.py --models network --encoding graded --out out/bench_graded
    python bench/fit_real_mice.py --trust --seeds 0 --no-positive --out bench/results/trust_signed
    python bench/fit_real_mice.py --data path/to/ibl_subject_folder --models network --out out/bench_ibl
    python bench/fit_real_mice.py --models network psytrack --schemes time --mice DAP007 DAP009
    python bench/fit_real_mice.py --summarise-only --out out/bench_fit
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

import real_mice

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("network", "shallow", "qlearning", "qlearning_tabular", "psytrack")


#: The network's fit options beyond MODEL.md's set: ``--fit-NAME`` (the keyword of
#: :func:`mouse_rl.fit.transforms.with_options` and the results' tag) and what it frees.
FIT_OPTIONS = {
    "skew": "stim_skew (per-side initial stimulus channels, mouse_rl.params.PARAMS; an option beyond MODEL.md)",
    "k": "k, the constant channel's initial cortical gain (MODEL.md fixes it at 1)",
    "crosstalk": "crosstalk (a grating also drives the other side's stimulus input; MODEL.md: 0)",
    "side_pref": "the innate side preference side_pref * exp(-trial / side_pref_tau) (MODEL.md: 0)",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", default=[ROOT.parent / "shared" / "data" / "liebana2025"],
                   help="any source mouse_rl.data.load_trials reads (Liebana folder or .npy, ALF session or subject "
                        "folder, ONE cache, the Liebana release CSV, IBL/flat tables); several are concatenated "
                        "(default: the Liebana et al. 2025 folder)")
    p.add_argument("--encoding", choices=["side", "magnitude", "graded"], default="side",
                   help="network input encoding of both networks (mouse_rl.params.ENCODINGS); non-default "
                        "encodings are reported as <model>_<encoding>")
    p.add_argument("--zero-reward", choices=["expected", "random"], default="expected",
                   help="reward the networks learn from at zero contrast (random: the stored feedback where known)")
    p.add_argument("--no-positive", dest="positive", action="store_false",
                   help="let both networks' weights change sign (MODEL.md's positive=False); the comparison reports "
                        "<model>_signed")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_fit")
    p.add_argument("--mice", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--schemes", nargs="+", default=["time", "interleaved"], choices=["time", "interleaved"])
    p.add_argument("--restarts", type=int, default=8)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--engine", choices=["eager", "compile"], default="eager")
    p.add_argument("--ml", dest="map_prior", action="store_false",
                   help="fit both networks by maximum likelihood (default: MAP with the priors of mouse_rl.params)")
    p.add_argument("--trust", action="store_true", help="run the fit-trust benchmark (see module docstring)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="--trust: restart seeds (default 0 1)")
    p.add_argument("--no-lapse", dest="fit_lapse", action="store_false", help="--trust: fix the lapse at 0")
    for name, what in FIT_OPTIONS.items():
        p.add_argument(f"--fit-{name.replace('_', '-')}", action="store_true",
                       help=f"also fit {what}: --trust fits with it; the comparison reports network_{name} / "
                            f"shallow_{name}")
    p.add_argument("--prior-sd", nargs="+", default=[], metavar="NAME=SD", type=real_mice.prior_sd_item,
                   help="--trust: override prior sds of mouse_rl.params.PARAMS (e.g. lapse=0.75 beta=0.5)")
    p.add_argument("--threads", type=int, default=2, help="numba threads of the fit kernel (default 2)")
    p.add_argument("--predictive", choices=["laplace", "plugin"], default="laplace",
                   help="held-out scoring of the four batched models: Laplace posterior predictive (default; "
                        "the plug-in score is reported beside it) or plug-in only")
    p.add_argument("--samples", type=int, default=128, help="posterior draws per mouse for --predictive laplace")
    p.add_argument("--draw-seed", type=int, default=0,
                   help="seed of the posterior draws (the fits do not depend on it: rerun with another seed to see "
                        "the Monte-Carlo error of the predictive score)")
    p.add_argument("--summarise-only", action="store_true")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.data if not d.exists()]
    if missing and not args.summarise_only:
        p.error(f"--data: no such file or folder: {', '.join(missing)}")
    import numba

    numba.set_num_threads(args.threads)
    if args.trust:
        return trust(args)

    from mouse_rl.baselines import default_models
    from mouse_rl.fit.cv import cross_validate, summarise

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        trials = load_data(args.data, args.mice)
        n_mice = trials["mouse"].nunique()
        print(f"{n_mice} mice, {len(trials)} trials, max {trials.groupby('mouse').size().max()} per mouse", flush=True)
        factories = default_models(q_kw=dict(n_restarts=args.restarts, max_iter=args.max_iter),
                                   n_restarts=args.restarts, max_iter=args.max_iter, engine=args.engine,
                                   map_prior=args.map_prior, predictive=args.predictive,
                                   n_samples=args.samples, draw_seed=args.draw_seed,
                                   fixed=fixed_options(args),
                                   **({"free": free_set(args)} if any(fit_options(args).values()) else {}))
        tag = "".join(f"_{name}" for name, on in fit_options(args).items() if on)
        names = {name: f"{name}{tag}" if name in ("network", "shallow") else name for name in args.models}
        if (args.encoding, args.zero_reward, args.positive) != ("side", "expected", True):
            suffix = "".join(f"_{v}" for v, d in ((args.encoding, "side"), (args.zero_reward, "expected")) if v != d)
            suffix += "" if args.positive else "_signed"
            names = {name: f"{names[name]}{suffix}" if name in ("network", "shallow") else name for name in args.models}
        for scheme in args.schemes:
            for name in args.models:
                t0 = time.perf_counter()
                cv = cross_validate(trials, {names[name]: factories[name]}, scheme, progress=False)
                name = names[name]
                cv.to_csv(args.out / f"cv_{scheme}_{name}.csv", index=False)
                total = cv["loglik"].sum() / cv["n_trials"].sum() / 0.6931471805599453
                plug = (f" (plug-in {cv['loglik_plugin'].sum() / cv['n_trials'].sum() / 0.6931471805599453:+.4f})"
                        if "loglik_plugin" in cv else "")
                print(f"{scheme:12s} {name:18s} held-out {total:+.4f} bits/trial{plug}  "
                      f"({time.perf_counter() - t0:.0f} s incl. scoring)", flush=True)
    files = sorted(args.out.glob("cv_*_*.csv"))
    if not files:
        print("no results yet")
        return 1
    table = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    table.to_csv(args.out / "cv_all.csv", index=False)
    summary = summarise(table)
    summary.to_csv(args.out / "summary.csv", index=False)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    wide = table.pivot_table(index=["scheme", "mouse"], columns="model", values="bits_per_trial")
    wide.to_csv(args.out / "bits_per_mouse.csv")
    print(wide.round(3).to_string())
    return 0


def fixed_options(args):
    """The networks' fixed model options of ``--encoding``, ``--zero-reward`` and ``--no-positive``."""
    from mouse_rl.params import ModelParams

    return ModelParams(encoding=args.encoding, zero_reward=args.zero_reward, positive=args.positive)


def fit_options(args) -> dict:
    """Which of :data:`FIT_OPTIONS` are asked for (``--fit-NAME``), by name."""
    return {name: getattr(args, f"fit_{name}") for name in FIT_OPTIONS}


def free_set(args) -> tuple:
    """The network's free parameters: the default set plus the :data:`FIT_OPTIONS` asked for."""
    from mouse_rl.fit.transforms import with_options

    return with_options(**fit_options(args))


def load_data(paths, mice=None) -> pd.DataFrame:
    """Trials of every source in ``paths`` (``mouse_rl.data.load_trials``; Liebana folders skip DAP044), concatenated."""
    from mouse_rl.data import DataFormatError, load_liebana2025, load_trials

    def fail(message: str):
        print(f"fit_real_mice.py: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    tables = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the malformed DAP044 is skipped with a warning
        for path in paths:
            try:
                if path.is_dir() and any(path.glob("*_data.npy")):
                    tables.append(load_liebana2025(path, mice=mice))
                else:
                    tables.append(load_trials(path))
            except DataFormatError as e:  # e.g. --mice naming a mouse the folder lacks
                fail(str(e))
    trials = pd.concat(tables, ignore_index=True)
    if mice is not None:
        missing = sorted(set(mice) - set(trials["mouse"].astype(str)))
        if missing:
            fail(f"--mice: not in the data: {missing}")
        trials = trials[trials["mouse"].astype(str).isin(mice)].reset_index(drop=True)
    return trials


def teacher_forced_relations(fit) -> dict:
    """The cohort relations of the fitted model's P(Right) on each mouse's own trials (learning from the
    mouse's choices): can the fit represent the relation at all, before its copies run free? And how many
    mice end with a frozen constant channel: U[., bias] learns at rate eta * a_b^2 (MODEL.md section 3), so
    its time constant 1 / (eta a_b^2) at the last trial, against the mouse's number of trials."""
    from mouse_rl import analysis

    el = analysis.early_late_metrics(analysis.session_metrics(fit.trials, use_model=True))
    r = analysis.cohort_correlations(el)
    last = fit.trials.sort_values(["mouse", "session", "trial"]).groupby("mouse").agg(
        a_b=("a_b", "last"), n_trials=("trial", "size"))
    eta = fit.params.set_index("mouse")["eta"].reindex(last.index)
    tau = 1.0 / (eta * last["a_b"] ** 2)
    return {**{f"teacher_forced_r_{x}_{y}": float(v) for x, y, v in zip(r["x"], r["y"], r["r"])},
            "constant_channel_frozen": int((tau > last["n_trials"]).sum()),
            "constant_channel_tau_median_trials": float(tau.median())}


def trust(args) -> int:
    """Default fit (two restart seeds), convergence, restart agreement, learner sides, posterior-predictive check."""
    import json
    import platform

    import numpy as np

    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.checks import check_fit
    from mouse_rl.fit.labels import strategy_labels

    real_mice.apply_prior_sds(args.prior_sd)
    args.out.mkdir(parents=True, exist_ok=True)
    trials = load_data(args.data, args.mice)
    fits, seconds, loads = [], [], []
    for seed in args.seeds:
        t0 = time.perf_counter()
        res = fit_mice(trials, seed=seed, map_prior=args.map_prior, n_restarts=args.restarts, max_iter=args.max_iter,
                       fit_lapse=args.fit_lapse, free=free_set(args),
                       fixed=fixed_options(args))
        seconds.append(time.perf_counter() - t0)
        loads.append(round(__import__('os').getloadavg()[0], 2))
        res.params.to_csv(args.out / f"trust_fit_seed{seed}.csv", index=False)
        fits.append(res)
        print(f"default fit, restart seed {seed}: {seconds[-1]:.1f} s", flush=True)
    a, b = (f.params.set_index("mouse") for f in (fits * 2)[:2])
    key = "log_posterior" if "log_posterior" in a else "loglik"
    gap = (a[key] - b[key]).abs()  # zero with one seed
    agreement = []  # model-vs-data learner sides of each seed's fit
    for fit in fits:
        sides = strategy_labels(fit.trials, fit.params)[0].dropna(subset=["learner_side_data"])
        agreement.append(float((sides["learner_side_data"] == sides["learner_side_model"]).mean()))
    t0 = time.perf_counter()
    check = check_fit(fits[0], trials, n_copies=50, seed=0)
    check_seconds = time.perf_counter() - t0
    check.per_mouse.to_csv(args.out / "trust_check_per_mouse.csv", index=False)
    check.per_session.to_csv(args.out / "trust_check_per_session.csv", index=False)
    p = fits[0].params
    summary = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, numba threads {args.threads}",
        "n_mice": int(len(p)), "fit_seconds": seconds, "load_average_1min": loads, "seeds": args.seeds,
        "fit_lapse": args.fit_lapse, "positive": args.positive,
        **{f"fit_{name}": on for name, on in fit_options(args).items()},
        "prior_sd": [f"{n}={v:g}" for n, v in args.prior_sd],
        "log_posterior_total": float(p[key].sum()),
        "same_optimum_within_0.5": int((gap <= 0.5).sum()), "max_gap": float(gap.max()),
        "converged": int(p["converged"].sum()), "stop_reasons": p["stop_reason"].value_counts().to_dict(),
        "median_restarts_at_best": float(p["n_restarts_at_best"].median()),
        "finite_se": int(np.isfinite(p[[c for c in p if c.startswith("se_") and c != "se_status"]]).all(axis=1).sum()),
        "lapse_max": float(p["lapse"].max()), "beta_max": float(p["beta"].max()),
        "learner_side_agreement": agreement[0], "learner_side_agreement_by_seed": agreement,
        **teacher_forced_relations(fits[0]),
        "check_seconds": check_seconds, **{f"check_{k}": v for k, v in check.summary.items()},
    }
    (args.out / "trust_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    cols = ["mouse", "session_coverage", "early_bias", "early_bias_median", "early_bias_inside", "late_slope_diff",
            "late_slope_diff_median", "late_slope_diff_inside", "side", "side_modal_sim", "side_share"]
    table = check.per_mouse[cols]
    from mouse_rl.fit.transforms import DEFAULT_FREE

    extra = [n for n in free_set(args) if n not in DEFAULT_FREE]  # the options' parameters
    if extra:
        table = table.merge(p[["mouse", *extra]], on="mouse", how="left")
    for n in extra:
        print(f"fitted {n}: {p[n].describe()[['min', '50%', 'max']].round(3).to_dict()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
