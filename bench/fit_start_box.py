"""Benchmark: the MAP fit's restart box, ``init_range`` (earlier) vs ``start_range`` (current), same run.

For every valid mouse of the Liebana et al. 2025 data, the default Newton fit (``fit_batch``) with the
Sobol restart design spread over each box in turn, per seed: kernel work (column-trials, a load-independent
cost), CPU and wall time, and the total objective (negative log posterior; lower is better).

Usage::

    python bench/fit_start_box.py [--seeds 0 1] | tee bench/results/fit_speed/start_box_ab.txt
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mouse_rl.data import load_liebana2025  # noqa: E402
from mouse_rl.fit import transforms  # noqa: E402
from mouse_rl.fit.batch import make_batch, prepare_trials  # noqa: E402
from mouse_rl.fit.fitting import fit_batch, make_transform  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liebana2025"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_liebana2025(args.data)
    df = prepare_trials(trials)
    tr = make_transform()
    batch = make_batch(df, tr.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    boxes = {"init_range": dict(transforms.INIT_RANGES), "start_range": dict(transforms.START_RANGES)}
    current = dict(transforms.START_RANGES)
    print(f"{batch.shape[1]} mice, {int(batch.n_trials.sum())} trials, {os.cpu_count()} CPUs", flush=True)
    try:
        for seed in args.seeds:
            for name, box in boxes.items():
                transforms.START_RANGES.clear()
                transforms.START_RANGES.update(box)
                c, w = time.process_time(), time.perf_counter()
                r = fit_batch(batch, tr, seed=seed)
                print(f"seed {seed} {name:11s}: work {r.info['work'] / 1e6:4.0f}M column-trials, CPU "
                      f"{time.process_time() - c:5.1f} s, wall {time.perf_counter() - w:5.1f} s, load "
                      f"{os.getloadavg()[0]:.1f}, objective {r.nll.sum().item():.2f}", flush=True)
    finally:
        transforms.START_RANGES.clear()
        transforms.START_RANGES.update(current)


if __name__ == "__main__":
    main()
