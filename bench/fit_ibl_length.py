"""Benchmark: wall time of the default fit (``mouse_rl.fit.fit_mice``) of one IBL-length mouse (10,000 trials).

The mouse is simulated by the model network (MODEL.md defaults; ``--encoding``)
on the IBL training protocol (``envs.ibl_network.simulate_ibl_cohort``: 20
sessions x 500 trials = 10,000 trials, curriculum advancing on its own
performance), then fitted with the defaults of ``fit_mice`` (what ``mouse-rl
fit`` runs: MAP, 8 restarts chosen from 32 screened starts, basin hopping,
per-mouse Newton on the fused kernel; numba threads ``--threads``). The fit is
timed ``--repeats`` times (the first includes loading numba's cached kernels);
``--profile`` adds a cProfile of one fit. Target: <= 60 s on 2 cores.

Writes ``OUT/fit_ibl_length.json`` (machine, load average before/after, times) and prints it.

Usage::

    python bench/fit_ibl_length.py --out out/bench_ibl_length
    python bench/fit_ibl_length.py --profile --repeats 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_ibl_length")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--trials", type=int, default=500, help="trials per session (default 500: 20 x 500 = 10,000)")
    p.add_argument("--encoding", choices=["side", "magnitude", "graded"], default="side",
                   help="encoding of the simulated mouse and of the fit (default side, the model default)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="numba threads of the fit kernel (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)

    import numba
    import torch

    from envs.ibl_network import simulate_ibl_cohort
    from mouse_rl.fit import fit_mice
    from mouse_rl.params import ModelParams

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    params = ModelParams(encoding=args.encoding)
    t0 = time.perf_counter()
    sim, _ = simulate_ibl_cohort(1, args.sessions, params, trials_per_session=args.trials, seed=args.seed)
    sim_seconds = time.perf_counter() - t0
    trials = sim.assign(mouse="ibl_sim")
    print(f"simulated {len(trials)} trials in {sim_seconds:.1f} s; final training phase "
          f"{int(trials['training_phase'].iloc[-1])}, last-session accuracy "
          f"{trials.loc[trials['session'] == trials['session'].max(), 'reward'].mean():.3f}", flush=True)
    table = trials[["mouse", "session", "trial", "contrastLeft", "contrastRight", "signed_contrast", "choice",
                    "reward", "feedbackType"]]
    times, load = [], [os.getloadavg()]
    for r in range(args.repeats):
        t0 = time.perf_counter()
        res = fit_mice(table, fixed=params)
        times.append(time.perf_counter() - t0)
        load.append(os.getloadavg())
        print(f"fit {r + 1}: {times[-1]:.1f} s", flush=True)
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        fit_mice(table, fixed=params)
        prof.disable()
        stats = pstats.Stats(prof).sort_stats("cumulative")
        with open(args.out / "fit_ibl_length_profile.txt", "w") as fh:
            stats.stream = fh
            stats.print_stats(30)
    row = res.params.iloc[0]
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numba threads {args.threads}, "
                   f"torch {torch.__version__}",
        "load_average_1_5_15_before_and_after_each_fit": [list(map(float, x)) for x in load],
        "n_trials": int(len(table)), "n_sessions": int(table["session"].nunique()), "encoding": args.encoding,
        "simulate_seconds": sim_seconds, "fit_seconds": times, "target_seconds": 60,
        "converged": bool(row["converged"]), "bits_per_trial": float(row["bits_per_trial"]),
        "fitted": {k: float(row[k]) for k in ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse")},
    }
    (args.out / "fit_ibl_length.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.exit(main())
