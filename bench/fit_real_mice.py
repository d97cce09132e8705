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

Usage::

    python bench/fit_real_mice.py --data ../shared/data/liebana2025 --out out/bench_fit
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("network", "shallow", "qlearning", "qlearning_tabular", "psytrack")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_fit")
    p.add_argument("--mice", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--schemes", nargs="+", default=["time", "interleaved"], choices=["time", "interleaved"])
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--max-iter", type=int, default=50)
    p.add_argument("--engine", choices=["eager", "compile"], default="eager")
    p.add_argument("--map", dest="map_prior", action="store_true",
                   help="fit both networks by MAP with the weak priors of mouse_rl.fit (default: maximum likelihood)")
    p.add_argument("--predictive", choices=["laplace", "plugin"], default="laplace",
                   help="held-out scoring of the four batched models: Laplace posterior predictive (default; "
                        "the plug-in score is reported beside it) or plug-in only")
    p.add_argument("--samples", type=int, default=128, help="posterior draws per mouse for --predictive laplace")
    p.add_argument("--draw-seed", type=int, default=0,
                   help="seed of the posterior draws (the fits do not depend on it: rerun with another seed to see "
                        "the Monte-Carlo error of the predictive score)")
    p.add_argument("--summarise-only", action="store_true")
    args = p.parse_args(argv)

    from mouse_rl.baselines import default_models
    from mouse_rl.fit.cv import cross_validate, summarise

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        from mouse_rl.data import load_liebana2025

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trials = load_liebana2025(args.data, mice=args.mice)
        n_mice = trials["mouse"].nunique()
        print(f"{n_mice} mice, {len(trials)} trials, max {trials.groupby('mouse').size().max()} per mouse", flush=True)
        factories = default_models(q_kw=dict(n_restarts=args.restarts, max_iter=args.max_iter),
                                   n_restarts=args.restarts, max_iter=args.max_iter, engine=args.engine,
                                   map_prior=args.map_prior, predictive=args.predictive,
                                   n_samples=args.samples, draw_seed=args.draw_seed)
        for scheme in args.schemes:
            for name in args.models:
                t0 = time.perf_counter()
                cv = cross_validate(trials, {name: factories[name]}, scheme, progress=False)
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


if __name__ == "__main__":
    sys.exit(main())
