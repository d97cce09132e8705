"""Seed agreement and cost of variants of the default fit's search, on the real mice.

Usage::

    python bench/fit_search_variants.py [--mice DAP039 DAP048 ...] [--seeds 0 1 2]
        [--variant HOP_STARTS=24 --variant HOP_ROUNDS_ALL=3 --variant n_restarts=12 ...] [--out FILE.csv]

Each ``--variant`` is a comma-separated list of ``NAME=VALUE`` settings: upper-case names are constants of
:mod:`mouse_rl.fit.fitting` (``HOP_STARTS``, ``HOP_SCALES``, ``HOP_ROUNDS_ALL``, ``POLISH``, ...), lower-case
ones keyword arguments of :func:`~mouse_rl.fit.fitting.fit_batch` (``n_restarts``, ``n_screen``,
``screen_iter``, ``n_hops``); the current defaults always run first. Every variant fits the mice once per
seed (a mouse's result does not depend on which mice it is fitted with, so a subset gives each mouse's own
numbers). Prints per fit the wall and CPU seconds and the kernel work (column-trials, load-independent), then
per variant the number of mice on which each pair of seeds agrees within
:data:`~mouse_rl.fit.fitting.AGREE_NATS` and the total log posterior per seed, and per mouse the gap to the
best log posterior any fit found.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _variant(text: str) -> dict:
    """``"A=1,B=(0.25, 1.0)"`` -> ``{"A": 1, "B": (0.25, 1.0)}``."""
    out = {}
    for part in _split(text):
        name, _, value = part.partition("=")
        out[name.strip()] = ast.literal_eval(value.strip())
    return out


def _split(text: str) -> list[str]:
    """Split ``A=1,B=(0.25, 1.0)`` at the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in parts + [cur] if p.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--mice", nargs="+", default=None, help="mouse names (default: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", action="append", default=[], help="NAME=VALUE[,NAME=VALUE...] (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="per-fit table (CSV)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        ap.error(f"--data: no such folder: {args.data}")
    import numba
    import pandas as pd
    import torch

    numba.set_num_threads(args.threads)
    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit import fitting
    from mouse_rl.fit.batch import make_batch, prepare_trials

    try:
        variants = [{}] + [_variant(v) for v in args.variant]
    except (ValueError, SyntaxError):
        ap.error(f"--variant: need NAME=VALUE[,NAME=VALUE...] with Python literals, got {args.variant}")
    for v in variants:
        for name in v:
            if name.isupper() and not hasattr(fitting, name):
                ap.error(f"--variant: mouse_rl.fit.fitting has no constant {name!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_liebana2025(args.data)
    if args.mice:
        unknown = sorted(set(args.mice) - set(trials["mouse"]))
        if unknown:
            ap.error(f"--mice: not in the data: {unknown}")
        trials = trials[trials["mouse"].isin(args.mice)]
    tr = fitting.make_transform()
    batch = make_batch(prepare_trials(trials), tr.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    mice = list(batch.mice)
    rows = []
    for v in variants:
        saved = {k: getattr(fitting, k) for k in v if k.isupper()}
        kw = {k: val for k, val in v.items() if not k.isupper()}
        label = ", ".join(f"{k}={val}" for k, val in v.items()) or "default"
        try:
            for k in saved:
                setattr(fitting, k, v[k])
            for seed in args.seeds:
                t, c = time.perf_counter(), time.process_time()
                r = fitting.fit_batch(batch, tr, seed=seed, **kw)
                row = dict(variant=label, seed=seed, wall_s=time.perf_counter() - t, cpu_s=time.process_time() - c,
                           work_M=r.info["work"] / 1e6)
                row.update({m: -float(f) for m, f in zip(mice, r.nll.numpy())})
                rows.append(row)
                print(f"{label} seed {seed}: {row['wall_s']:.1f} s (CPU {row['cpu_s']:.1f} s), work "
                      f"{row['work_M']:.0f}M column-trials, log posterior {sum(row[m] for m in mice):.1f}", flush=True)
        finally:
            for k, val in saved.items():
                setattr(fitting, k, val)
    d = pd.DataFrame(rows)
    if args.out:
        d.to_csv(args.out, index=False)
    for label, g in d.groupby("variant", sort=False):
        pairs = [f"{a.seed}-{b.seed}: {int((abs(a[mice].astype(float) - b[mice].astype(float)) <= fitting.AGREE_NATS).sum())}"
                 for (_, a), (_, b) in itertools.combinations(g.iterrows(), 2)]
        print(f"{label}: agreement {', '.join(pairs)} of {len(mice)}")
    gap = d[mice].max() - d[mice]
    worst = [m for m in mice if (gap[m] > fitting.AGREE_NATS).any()]
    if worst:
        print("gap to the best optimum found (nats), mice where some fit misses it:")
        print(pd.concat([d[["variant", "seed"]], gap[worst].round(2)], axis=1).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
