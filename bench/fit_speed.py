"""Wall time of the default Newton fit (``fit_batch``) against a baseline, interleaved on the real mice.

Usage::

    python bench/fit_speed.py [--mice 8] [--seeds 0] [--repeats 2] [--threads 2] [--old-kernel FILE]
                              [--old-stall-tol 0] [--old-newton FILE] [--profile]

Arms, run A, B, A, B (so that load changes on a shared machine hit both alike):

* ``new`` - the default fit;
* ``old`` - the same with the kernel propagating k's derivatives though k is fixed (``k_derivatives=True``,
  as before this was an option), or with ``--old-kernel FILE`` the likelihood kernel of FILE (e.g. an
  earlier ``mouse_rl/fit/kernel.py``, saved with ``git show REV:mouse_rl/fit/kernel.py > FILE``); with
  ``--old-stall-tol 0`` its loose passes also run to the radius collapse (as before the stall rule), and with
  ``--old-newton FILE`` it uses the optimiser of FILE (e.g. before the batched trust-region steps).

Prints per run the seconds (wall, and CPU time of all threads: steadier on a loaded machine), the 1-minute
load average, the kernel work (column-trials, load-independent)
and the total objective (negative log posterior), then per arm the best time and the old/new ratio, and
the per-mouse objective differences (new - old; negative = better).
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import re
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load_module(path: Path, name: str):
    """An earlier version of a mouse_rl.fit module, from its file (relative imports made absolute)."""
    src = re.sub(r"^from \.\.(\w*) import", lambda m: f"from mouse_rl{'.' + m[1] if m[1] else ''} import",
                 path.read_text(), flags=re.M)
    src = re.sub(r"^from \.(\w*) import", lambda m: f"from mouse_rl.fit{'.' + m[1] if m[1] else ''} import", src,
                 flags=re.M)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"_fit_speed_{name}.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location(f"_fit_speed_{name}", tmp)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # numba's cache rebuilds a cached kernel's environment by importing its module
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--mice", type=int, default=8, help="the first N mice by name (0 = all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old-kernel", type=Path, default=None)
    ap.add_argument("--old-newton", type=Path, default=None, help="an earlier mouse_rl/fit/newton.py for the old "
                    "arm's optimiser")
    ap.add_argument("--profile", action="store_true", help="also profile one default fit (cProfile) and print "
                    "the share of its time spent in the likelihood kernel")
    ap.add_argument("--old-stall-tol", type=float, default=None, help="stall_tol of the old arm (default: the "
                    "default fit's)")
    args = ap.parse_args(argv)
    import numba
    import torch

    numba.set_num_threads(args.threads)
    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit import fitting, objective
    from mouse_rl.fit.batch import make_batch, prepare_trials
    from mouse_rl.fit.fitting import fit_batch, make_transform

    new_kernel = objective.nll_derivatives
    if args.old_kernel is not None:
        old = _load_module(args.old_kernel, "kernel").nll_derivatives
        accepts = set(inspect.signature(old).parameters)

        def old_kernel(*a, **k):  # the options an older kernel did not have are left out
            return old(*a, **{name: v for name, v in k.items() if name in accepts})
    else:
        def old_kernel(*a, **k):
            return new_kernel(*a, **{**k, "k_derivatives": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_liebana2025(args.data)
    mice = sorted(trials["mouse"].unique())
    if args.mice:
        trials = trials[trials["mouse"].isin(mice[:args.mice])]
    df = prepare_trials(trials)
    tr = make_transform()
    batch = make_batch(df, tr.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    old_kw = {} if args.old_stall_tol is None else {"stall_tol": args.old_stall_tol}
    newton = {"new": fitting.minimize_newton}
    newton["old"] = newton["new"] if args.old_newton is None else _load_module(args.old_newton, "newton").minimize_newton
    arms = {"old": (old_kernel, old_kw), "new": (new_kernel, {})}
    small = make_batch(prepare_trials(trials[trials["mouse"] == trials["mouse"].iloc[0]]), prepared=True)
    for name, (kern, _) in arms.items():  # compile / load the caches
        objective.nll_derivatives, fitting.minimize_newton = kern, newton[name]
        fit_batch(small, tr, max_iter=2, n_restarts=1, n_hops=0)
    print(f"{batch.shape[1]} mice, {int(batch.n_trials.sum())} trials; {os.cpu_count()} CPUs, numba threads "
          f"{numba.get_num_threads()}")
    times, res = {}, {}
    for seed in args.seeds:
        for rep in range(args.repeats):
            for name, (kern, kw) in arms.items():
                objective.nll_derivatives, fitting.minimize_newton = kern, newton[name]
                t, c = time.perf_counter(), time.process_time()
                r = fit_batch(batch, tr, seed=seed, **kw)
                dt, dc = time.perf_counter() - t, time.process_time() - c
                times.setdefault((name, seed), []).append(dt)
                res[(name, seed)] = r
                print(f"seed {seed} rep {rep} {name}: {dt:6.1f} s (CPU {dc:6.1f} s), load {os.getloadavg()[0]:.2f}, work "
                      f"{r.info['work'] / 1e6:.1f}M column-trials, objective {r.nll.sum().item():.3f}, "
                      f"converged {int(r.converged.sum())}", flush=True)
    objective.nll_derivatives, fitting.minimize_newton = new_kernel, newton["new"]
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(fit_batch, batch, tr, seed=args.seeds[0])
        stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, primitive calls, own s, cumulative s, ...)
        total = max(v[3] for v in stats.values())  # the fit's own call
        kernel = sum(v[3] for k, v in stats.items() if k[2] == "nll_derivatives")
        print(f"profile (default fit, seed {args.seeds[0]}): likelihood kernel {kernel:.1f} s of {total:.1f} s "
              f"({kernel / total:.0%})")
    for seed in args.seeds if args.repeats > 0 else ():
        o, n = min(times[("old", seed)]), min(times[("new", seed)])
        d = res[("new", seed)].nll.numpy() - res[("old", seed)].nll.numpy()
        print(f"seed {seed}: best old {o:.1f} s, new {n:.1f} s, ratio {o / n:.2f}x; objective new - old: total "
              f"{d.sum():+.3f}, worst mouse {d.max():+.3f}, best mouse {d.min():+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
