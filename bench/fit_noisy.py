"""Benchmark: the noisy learner (issue 12) against PsyTrack and the other models, same folds, same run.

For the valid Liebana et al. 2025 mice (25; DAP044 skipped), both schemes of
:mod:`mouse_rl.fit.cv` (time-aware: fit the first half of the sessions, score the
rest; interleaved: hold out every 10th trial), the models

* ``noisy``    - :class:`mouse_rl.fit.statespace.NoisyNetworkModel` (batched over mice; held-out choices
  scored by each trial's Laplace posterior predictive, plug-in score beside it);
* ``psytrack`` - PsyTrack, one mouse at a time (its fit time per mouse is recorded);
* optionally ``network``, ``shallow``, ``qlearning``, ``qlearning_tabular`` (``--others``; the defaults of
  ``bench/fit_real_mice.py``).

Thread counts are set explicitly (``--threads``, torch and numba; PsyTrack's numpy/BLAS through
``OMP_NUM_THREADS`` etc., set before numpy loads) and the machine load (``uptime``) is recorded before and
after every fit. Writes ``OUT/cv_<scheme>_<model>.csv`` (and for the noisy learner
``OUT/params_<scheme>_<label>.csv``: its fitted hyperparameters and Laplace evidence per mouse),
``OUT/timing.csv`` (appended to by later runs into the same folder) and ``OUT/summary.csv``;
``--recovery`` instead runs the parameter-recovery check on simulated noisy learners (``OUT/recovery.csv``; with
``--noise`` / ``--frozen`` the mice are simulated and fitted with that variant, and the bands are scored on the
latent weights).

Usage::

    python bench/fit_noisy.py --out out/bench_noisy
    python bench/fit_noisy.py --schemes interleaved --models noisy psytrack --mice DAP007 DAP009
    python bench/fit_noisy.py --recovery --out out/bench_noisy
    python bench/fit_noisy.py --recovery --n-sim 10 --noise linear --frozen a --sim-sessions 20 --sim-trials 250 \
        --known-beta --population eta --seed 0 --out out/recovery   # issue 12's recovery test (README table)
    python bench/fit_noisy.py --profile --mice DAP027 DAP019 --noise linear --frozen a --encoding magnitude \
        --sigma-per column --out out/bench_noisy          # where one fit's time goes (cProfile)
    python bench/fit_noisy.py --schemes interleaved --models noisy psytrack --noise linear --frozen a \
        --encoding magnitude --sigma-per column --predictive probit --start network psytrack --give-up 3 10 \
        --label noisy_col_2start --out out/bench_noisy  # issue 12's setting against PsyTrack, same process
        # (add --no-closed-form for the autograd code path: the same results to rounding, about 2x the time)
    python bench/fit_noisy.py --free eta beta sigma_a sigma_U sigma_day_a sigma_day_U --search newton \
        --label noisy_newton_eta --models noisy --mice DAP027 DAP019 DAP035 DAP009   # eta fitted jointly
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_noisy")
    p.add_argument("--mice", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=["noisy", "psytrack"],
                   choices=["noisy", "psytrack", "network", "shallow", "qlearning", "qlearning_tabular"])
    p.add_argument("--schemes", nargs="+", default=["interleaved", "time"], choices=["time", "interleaved"])
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    p.add_argument("--max-outer", type=int, default=20,
                   help="evidence (BFGS) iterations of the noisy fit (default 20: the README tables of this bench; "
                        "not fit_noisy's default)")
    p.add_argument("--free", nargs="+", default=None, help="free hyperparameters of the noisy fit")
    p.add_argument("--search", choices=["bfgs", "newton"], default="bfgs",
                   help="evidence search of the noisy fit (newton: trust-region Newton, for eta free)")
    p.add_argument("--noise", choices=["log", "linear"], default="log", help="noise variant of the noisy fit")
    p.add_argument("--frozen", nargs="*", default=(), choices=["a", "U"], help="weight groups held fixed")
    p.add_argument("--label", default=None, help="model label of the noisy fit in the output (default noisy)")
    p.add_argument("--predictive", choices=["laplace", "plugin", "probit"], default="laplace",
                   help="held-out score of the noisy fit: posterior average by sampling (laplace), by the probit "
                        "approximation (probit), or at the MAP weights (plugin); the plug-in score is always beside")
    p.add_argument("--sigma-per", choices=["group", "column"], default="group",
                   help="noise sds of U per weight group or per input column (PsyTrack's per-weight sigma)")
    p.add_argument("--encoding", choices=["side", "magnitude"], default="side",
                   help="stimulus encoding of the noisy learner (and of its network start)")
    p.add_argument("--start", nargs="+", default=["network"], choices=["network", "defaults", "psytrack"],
                   help="start(s) of the evidence search; several: per mouse the one ending at the higher evidence")
    p.add_argument("--give-up", nargs=2, type=float, default=None, metavar=("K", "NATS"),
                   help="with several starts: from iteration K a later start stops for a mouse NATS below the best")
    p.add_argument("--no-active-set", action="store_true",
                   help="solve every mouse on every evidence-search iteration (the search before the active set)")
    p.add_argument("--no-closed-form", action="store_true",
                   help="affine variant: autograd through the rule and full 9 x 9 solves instead of the closed form "
                        "(the code path before; same results to rounding, about twice as slow)")
    p.add_argument("--recovery", action="store_true", help="parameter recovery on simulated noisy learners")
    p.add_argument("--profile", action="store_true",
                   help="instead of the CV: profile one noisy fit (interleaved training fold) with cProfile and "
                        "write OUT/profile_<label>.txt (where the time goes; evaluation counts)")
    p.add_argument("--n-sim", type=int, default=12)
    p.add_argument("--sim-sessions", type=int, default=10, help="--recovery: sessions per simulated mouse")
    p.add_argument("--sim-trials", type=int, default=200, help="--recovery: trials per simulated session")
    p.add_argument("--population", nargs="+", default=[], metavar="NAME",
                   help="fitted hyperparameters given a population prior estimated across the mice fitted together "
                   "(fit_noisy(population=...), e.g. eta beta; with --recovery, across the simulated mice)")
    p.add_argument("--known-beta", action="store_true", help="--recovery: beta fixed at its simulated value (the "
                   "log-odds noise is beta x sigma: with beta free the two trade off)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numba
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch/numba threads {args.threads}"
    if args.recovery and min(args.n_sim, args.sim_sessions, args.sim_trials) < 1:
        p.error("--n-sim, --sim-sessions, --sim-trials: must be >= 1")
    from mouse_rl.fit.statespace import check_population

    if args.recovery:
        try:
            check_population(args.population, recovery_free(args), "--population")
        except ValueError as e:
            p.error(str(e))
        return recovery(args, machine)

    from mouse_rl.baselines import PsyTrackModel, default_models
    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit.cv import cross_validate, summarise
    from mouse_rl.fit.statespace import NoisyNetworkModel, default_free

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_liebana2025(args.data, mice=args.mice)
    print(f"{trials['mouse'].nunique()} mice, {len(trials)} trials; {machine}", flush=True)
    free = tuple(args.free) if args.free else default_free(tuple(args.frozen), args.sigma_per)
    try:
        check_population(args.population, free, "--population")
    except ValueError as e:
        p.error(str(e))
    noisy_name = args.label or ("noisy" if args.encoding == "side" else f"noisy_{args.encoding}")
    built = []

    def noisy_factory(df):
        built.append(NoisyNetworkModel(df, name=noisy_name, predictive=args.predictive, max_outer=args.max_outer,
                                       free=free, encoding=args.encoding, search=args.search, noise=args.noise,
                                       frozen=tuple(args.frozen), sigma_per=args.sigma_per,
                                       start=tuple(args.start), active_set=not args.no_active_set,
                                       closed_form=not args.no_closed_form,
                                       give_up=None if args.give_up is None else (int(args.give_up[0]),
                                                                                 args.give_up[1]),
                                       population=tuple(args.population)))
        return built[-1]

    if args.profile:
        return profile(args, trials, noisy_factory, noisy_name, machine)
    factories = {"noisy": noisy_factory,
                 "psytrack": lambda df: PsyTrackModel(df)}
    others = [m for m in args.models if m not in factories]
    if others:
        factories.update({k: v for k, v in default_models(predictive="laplace", n_samples=128).items() if k in others})
    timing = []
    previous = pd.read_csv(args.out / "timing.csv") if (args.out / "timing.csv").exists() else pd.DataFrame()
    for scheme in args.schemes:
        for name in args.models:
            before = load()
            t0, c0 = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cv = cross_validate(trials, {name: factories[name]}, scheme, progress=False)
            wall = time.perf_counter() - t0
            after = load()
            label = noisy_name if name == "noisy" else name
            cv["model"] = label
            cv.to_csv(args.out / f"cv_{scheme}_{label}.csv", index=False)
            if name == "noisy":  # fitted hyperparameters and Laplace evidence of the (last) fold's fit
                built[-1].fitted_params().assign(scheme=scheme, model=label).to_csv(
                    args.out / f"params_{scheme}_{label}.csv", index=False)
                pd.DataFrame(built[-1].result.history).to_json(args.out / f"history_{scheme}_{label}.json",
                                                               orient="records")  # evidence per iteration
            fit_s = float(cv["fit_seconds"].iloc[0] if cv["batched"].iloc[0] else cv["fit_seconds"].sum())
            total = cv["loglik"].sum() / cv["n_trials"].sum() / np.log(2)
            plug = cv["loglik_plugin"].sum() / cv["n_trials"].sum() / np.log(2) if "loglik_plugin" in cv else np.nan
            cpu = time.process_time() - c0
            timing.append(dict(scheme=scheme, model=label, fit_seconds_all_mice=fit_s, wall_seconds=wall,
                               cpu_seconds=cpu, bits_per_trial=total, bits_per_trial_plugin=plug, load_before=before, load_after=after,
                               machine=machine))
            pd.concat([previous, pd.DataFrame(timing)], ignore_index=True).to_csv(args.out / "timing.csv", index=False)
            print(f"{scheme:12s} {label:16s} held-out {total:+.4f} bits/trial (plug-in {plug:+.4f}); "
                  f"fit {fit_s:.0f} s all mice (wall {wall:.0f} s, CPU {cpu:.0f} s); load before [{before}] "
                  f"after [{after}]", flush=True)
    if "noisy" in args.models:
        print(f"noisy fit: free {free}, search {args.search}, max_outer {args.max_outer}, noise {args.noise}, "
              f"frozen {tuple(args.frozen)}, encoding {args.encoding}, sigma_per {args.sigma_per}, "
              f"predictive {args.predictive}, start {tuple(args.start)}, give_up {args.give_up}, "
              f"active_set {not args.no_active_set}, closed_form {not args.no_closed_form}")
    files = sorted(args.out.glob("cv_*_*.csv"))
    table = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    summary = summarise(table)
    summary.to_csv(args.out / "summary.csv", index=False)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def profile(args, trials, noisy_factory, label, machine) -> int:
    """cProfile of one noisy fit on the interleaved scheme's training fold: top functions by cumulative time."""
    import cProfile
    import io
    import pstats

    from mouse_rl.fit.cv import folds

    model = noisy_factory(trials)
    train, _ = folds(model.trials, "interleaved")[0]
    before = load()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    model.fit(train)
    prof.disable()
    wall = time.perf_counter() - t0
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(45)
    fit = model.result
    head = (f"noisy fit {label}: {trials['mouse'].nunique()} mice, {int(train.sum())} training trials, {wall:.1f} s "
            f"wall under cProfile; {int(fit.params['n_outer'].iloc[0])} outer iterations, "
            f"{int(fit.params['converged'].sum())} converged; {machine}; load before [{before}] after [{load()}]\n"
            f"evidence search: {fit.history}\n\n")
    (args.out / f"profile_{label}.txt").write_text(head + buf.getvalue())
    print(head)
    return 0


def recovery_free(args) -> tuple:
    """The hyperparameters a recovery run fits: eta, beta unless ``--known-beta``, the latent groups' sigmas."""
    return ("eta", *(() if args.known_beta else ("beta",)),
            *(f"sigma_{g}" for g in ("a", "U") if g not in tuple(args.frozen)))


def recovery(args, machine) -> int:
    """Simulate noisy learners with spread eta and sigma, refit, report correlations and band coverage."""
    import numpy as np
    import pandas as pd

    from mouse_rl.fit.statespace import fit_noisy, simulate_noisy
    from mouse_rl.schema import WEIGHT_COLUMNS

    rng = np.random.default_rng(args.seed)
    n = args.n_sim
    eta = np.exp(rng.uniform(np.log(0.003), np.log(0.03), n))
    sigma = np.exp(rng.uniform(np.log(0.005), np.log(0.04), n))
    hyper = dict(eta=eta, sigma_a=sigma, sigma_U=sigma, sigma_day_a=0.05, sigma_day_U=0.05, sigma_init=0.1)
    frozen = tuple(args.frozen)
    latent = [g for g in ("a", "U") if g not in frozen]  # the groups whose noise is simulated and fitted
    df, z_true = simulate_noisy(n, hyper, n_sessions=args.sim_sessions, trials_per_session=args.sim_trials,
                                seed=args.seed, noise=args.noise,
                                frozen=frozen)
    t0 = time.perf_counter()
    fit = fit_noisy(df, free=recovery_free(args),
                    fixed=dict(sigma_day_a=0.05, sigma_day_U=0.05, sigma_init=0.1), max_outer=args.max_outer,
                    start="defaults", noise=args.noise, frozen=frozen, population=tuple(args.population),
                    search=args.search)
    seconds = time.perf_counter() - t0
    p = fit.params
    cols = [j for j, c in enumerate(WEIGHT_COLUMNS) if c[0] in latent]  # frozen weights are known exactly
    sd = fit.weights[[f"{WEIGHT_COLUMNS[j]}_{'logsd' if args.noise == 'log' else 'sd'}" for j in cols]].to_numpy()
    inside = np.abs(fit.z.numpy()[:, cols] - z_true.numpy()[:, cols]) <= 1.96 * sd
    sigma_fit = np.exp(np.mean([np.log(p[f"sigma_{g}"]) for g in latent], axis=0))
    out = pd.DataFrame({"mouse": p["mouse"], "eta_true": eta, "eta_fit": p["eta"], "beta_fit": p["beta"], "sigma_true": sigma,
                        **{f"sigma_{g}_fit": p[f"sigma_{g}"] for g in latent},
                        "band_coverage": pd.Series(inside.mean(1)).groupby(fit.data.mouse.numpy()).mean().to_numpy()})
    out.to_csv(args.out / "recovery.csv", index=False)
    r_eta = np.corrcoef(np.log(eta), np.log(p["eta"]))[0, 1]
    r_sig = np.corrcoef(np.log(sigma), np.log(sigma_fit))[0, 1]
    print(out.round(4).to_string(index=False))
    for name, pop in fit.population.items():
        print(f"population prior of {name}: mean {pop['mean']:.4g}, sd {pop['sd']:.3f} ({pop['transform']} units), "
              f"{pop['iterations']} refits, converged {pop['converged']}; estimates after each fit: "
              + ", ".join(f"{m:.4g} (sd {sd:.3f})" for m, sd in zip(pop["trace_mean"], pop["trace_sd"])))
    print(f"recovery: r(log eta) = {r_eta:.3f}, r(log sigma) = {r_sig:.3f}, band coverage {inside.mean():.3f}, "
          f"fit {seconds:.0f} s ({machine}; load {load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
