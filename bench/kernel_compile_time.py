"""Benchmark: first-call (compilation) time of the fit kernel's entry points, with an empty numba cache.

The test suite in a fresh clone is dominated by numba compiling the fit kernel's entry points (one per set of
dual coordinates, :mod:`mouse_rl.fit.kernel`). This times, each in a fresh Python process with its own empty
``NUMBA_CACHE_DIR``, the first order-2 call of the default fit's entry point (k fixed) and of the stimulus-skew
fit's, on 3 columns x 200 trials (their run time is milliseconds: the rest is compilation), and checks that a
second process reading the cache takes under a second. Run it at two commits to compare kernels.

Usage::

    python bench/kernel_compile_time.py --out bench/results/kernel_compile/current.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CALL = """
import sys, time
import numpy as np
sys.path.insert(0, {root!r})
from mouse_rl.fit import kernel
g = np.random.default_rng(0)
B, T = 3, 200
c = g.choice([-1, 0, 1], (B, T))
x = np.stack([c < 0, c > 0, np.ones_like(c, bool)], -1).astype(float)
choice, reward, m = g.integers(0, 2, (B, T)), g.integers(0, 2, (B, T)).astype(float), np.ones((B, T), bool)
theta = np.tile([0.05, 5, 0.3, 1, 0.5, 0.4, 0.1, 0.05, {skew}], (B, 1))
t0 = time.perf_counter()
nll, *_ = kernel.nll_derivatives(x, choice, reward, m, m, np.full(B, T), theta, order=2, k_derivatives=False,
                                 skew_derivatives={skew_free})
print(time.perf_counter() - t0, float(nll.sum()))
"""


def first_call(cache: str, skew: bool, threads: int) -> tuple[float, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "NUMBA_NUM_THREADS": str(threads)}
    code = CALL.format(root=str(ROOT), skew=0.5 if skew else 0.0, skew_free=skew)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    seconds, nll = out.stdout.split()
    return float(seconds), float(nll)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="NUMBA_NUM_THREADS of the processes (default 2)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write (default: print only)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads: must be >= 1, got {args.threads}")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "commit": commit,
               "threads": args.threads, "load_before": os.getloadavg()}
    for name, skew in (("default", False), ("stim_skew", True)):
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            compile_s, nll = first_call(cache, skew, args.threads)
            cached_s, nll2 = first_call(cache, skew, args.threads)
            summary[name] = {"first_call_seconds": compile_s, "cached_first_call_seconds": cached_s,
                             "process_seconds": time.perf_counter() - t0, "nll": nll, "same_nll_cached": nll == nll2}
        print(name, json.dumps(summary[name]), flush=True)
    summary["load_after"] = os.getloadavg()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
