"""Cost of one pass of the fused likelihood kernel over all mice, by derivative order.

Usage: python bench/fit_kernel_orders.py [--data DIR] [--repeats 5] [--threads 2]

One column per mouse at the model defaults (lapse 0.02), all trials scored; each order's best of
``--repeats`` passes (numba threads set explicitly), interleaved so that load changes hit all orders alike.
Order 0 is the value, 1 adds the gradient, 2 the Hessian (what a Newton step needs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mouse_rl.data import load_trials  # noqa: E402
from mouse_rl.fit.batch import make_batch  # noqa: E402
from mouse_rl.fit.kernel import THETA, nll_derivatives  # noqa: E402
from mouse_rl.network import encode  # noqa: E402
from mouse_rl.params import PARAMS  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = make_batch(load_trials(args.data))
    x = encode(batch.contrast.double(), "side").permute(1, 0, 2).contiguous().numpy()
    valid = batch.valid.T.numpy().copy()
    data = (x, batch.choice.T.numpy().copy(), batch.reward.T.double().numpy().copy(), valid, valid,
            batch.n_trials.numpy())
    theta = np.tile([PARAMS[n].default if n != "lapse" else 0.02 for n in THETA], (len(batch.mice), 1))
    for order in (0, 1, 2):
        nll_derivatives(*data, theta, order=order)  # compile / load the cache
    best = {0: np.inf, 1: np.inf, 2: np.inf}
    for _ in range(args.repeats):
        for order in (2, 1, 0):
            t = time.perf_counter()
            nll_derivatives(*data, theta, order=order)
            best[order] = min(best[order], time.perf_counter() - t)
    n = int(batch.n_trials.sum())
    print(f"{len(batch.mice)} mice, {n:,} trials; {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}; "
          f"load {os.getloadavg()[0]:.2f}")
    for order in (0, 1, 2):
        print(f"order {order}: {best[order] * 1e3:.1f} ms per pass ({best[order] / best[2]:.2f}x order 2, "
              f"{n / best[order]:.3g} trials/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
