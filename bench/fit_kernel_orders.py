"""Cost of one pass of the fused likelihood kernel over all mice, by derivative order.

Usage: python bench/fit_kernel_orders.py [--data DIR] [--repeats 5] [--threads 2] [--columns 8] [--old-kernel FILE]

``--columns`` columns per mouse (default 8, the default fit's kept starts; the kernel runs a mouse's columns
four to a group in vector lanes, so 1 column per mouse pays for 4) at the first points of the default fit's
restart design (seed 0; the same for every mouse), all trials scored, with k fixed as in the default fit
(five dual coordinates); each order's best of
``--repeats`` passes (numba threads set explicitly), interleaved so that load changes hit all orders alike.
Order 0 is the value, 1 adds the gradient, 2 the Hessian (what a Newton step needs). ``--old-kernel FILE``
(an earlier ``mouse_rl/fit/kernel.py``, e.g. ``git show REV:mouse_rl/fit/kernel.py > FILE``) times its passes
in the same run, interleaved with the current kernel's.
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
from mouse_rl.fit.fitting import make_transform  # noqa: E402
from mouse_rl.fit.kernel import nll_derivatives  # noqa: E402
from mouse_rl.network import encode  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--columns", type=int, default=8, help="columns (restarts) per mouse")
    ap.add_argument("--old-kernel", type=Path, default=None, help="an earlier mouse_rl/fit/kernel.py to compare")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        ap.error(f"--data: no such folder: {args.data}")
    if args.old_kernel is not None and not args.old_kernel.is_file():
        ap.error(f"--old-kernel: no such file: {args.old_kernel}")
    if args.columns < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--columns, --repeats, --threads: must be >= 1")
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = make_batch(load_trials(args.data))
    x = encode(batch.contrast.double(), "side").permute(1, 0, 2).contiguous().numpy()
    valid = batch.valid.T.numpy().copy()
    data = (x, batch.choice.T.numpy().copy(), batch.reward.T.double().numpy().copy(), valid, valid,
            batch.n_trials.numpy())
    rows = np.tile(np.arange(len(batch.mice)), args.columns)
    transform = make_transform()
    theta = np.repeat(transform.natural(transform.starts(args.columns, 0))[0], len(batch.mice), axis=0)
    kw = dict(rows=rows, k_derivatives=False)
    kernels = {"current": nll_derivatives}
    if args.old_kernel is not None:
        sys.path.insert(0, str(ROOT / "bench"))
        from fit_speed import _load_module
        old = _load_module(args.old_kernel, "kernel")
        width = len(old.THETA)  # an earlier kernel may know fewer parameters (the options added since are 0 here)
        kernels["old"] = lambda *a, **k: old.nll_derivatives(*a[:-1], a[-1][:, :width], **k)
    for kern in kernels.values():
        for order in (0, 1, 2):
            kern(*data, theta, order=order, **kw)  # compile / load the cache
    best = {(name, order): np.inf for name in kernels for order in (0, 1, 2)}
    for _ in range(args.repeats):
        for order in (2, 1, 0):
            for name, kern in kernels.items():
                t = time.perf_counter()
                kern(*data, theta, order=order, **kw)
                best[name, order] = min(best[name, order], time.perf_counter() - t)
    n = int(batch.n_trials.sum()) * args.columns
    print(f"{len(batch.mice)} mice x {args.columns} columns, {n:,} column-trials; {os.cpu_count()} CPUs, numba "
          f"threads {numba.get_num_threads()}; load {os.getloadavg()[0]:.2f}")
    for name in kernels:
        for order in (0, 1, 2):
            b = best[name, order]
            print(f"{name} kernel, order {order}: {b * 1e3:.1f} ms per pass ({b / best[name, 2]:.2f}x order 2, "
                  f"{b / n * 1e9:.0f} ns per column-trial)")
    if "old" in kernels:
        print("old / current: " + ", ".join(f"order {o} {best['old', o] / best['current', o]:.2f}x" for o in (0, 1, 2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
