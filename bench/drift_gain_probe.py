"""Experiment (not a library option): overnight drift as a shared gain, on a teacher-forced fit with options.

The library's drift (:mod:`mouse_rl.fit.drift`) jumps each of a group's log-weights by its own noise, so the
stimulus group's jumps also move the balance between the two stimulus pathways and, near the learning
plateau, which side a copy learns. Here the two cortical stimulus gains a_L, a_R jump by one shared factor
per night (an engagement or attention gain: it scales how far the stimuli drive choices and learning, not which
side they favour), and the constant channel's gain a_b by another (``--groups bias stim``; ``--groups stim``: the
stimulus gain only). The drift sds are fitted with the teacher-forced parameters held, as
``bench/fit_free_running.py --default-drift`` does (energy score of the session rates, 16 copies, 32 Sobol
starts, 6 generations), and checked at the point estimate (50 copies, check seeds 1 and 2).

The shared noise replaces :func:`mouse_rl.fit.drift.drift_noise` inside this process only (the library's noise
stream, shared across the group's weights; the other weights' noise set to 0).

Usage (FIT_DIR: written by ``bench/fit_free_running.py --default-options ...``, holding ``default_fit.csv``)::

    python bench/drift_gain_probe.py bench/results/freerun_crosstalk_side_pref_drift_bias_stim --groups bias stim
    python bench/drift_gain_probe.py bench/results/freerun_crosstalk_side_pref_drift_bias_stim --groups stim
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mouse_rl.fit.drift as drift  # noqa: E402
from mouse_rl.data import load_trials  # noqa: E402
from mouse_rl.fit.freerun import check_free_running, fit_free_running  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_free_running import saved_default_fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("session_coverage", "late_slope_inside", "early_bias_inside", "late_bias_inside", "side_match",
        "expected_side_match")
_independent = drift.drift_noise


def shared_gain_noise(seeds: torch.Tensor, t: int, dtype=torch.float64) -> torch.Tensor:
    """``(B, 9)`` overnight noise: a_L and a_R one shared draw, a_b its own, the six U weights none."""
    e = _independent(seeds, t, dtype)
    out = torch.zeros_like(e)
    out[:, 0] = out[:, 1] = e[:, 0]
    out[:, 2] = e[:, 2]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fit_dir", help="folder of bench/fit_free_running.py --default-options ... (default_fit.csv)")
    ap.add_argument("--groups", nargs="+", default=["bias", "stim"], choices=["bias", "stim"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liebana2025"))
    ap.add_argument("--out", default=None, help="folder of the results (default: FIT_DIR/gain_<groups>)")
    args = ap.parse_args(argv)
    fit_csv = Path(args.fit_dir) / "default_fit.csv"
    if not fit_csv.is_file():
        ap.error(f"fit_dir: {args.fit_dir!r} holds no default_fit.csv (a folder of bench/fit_free_running.py)")
    out = Path(args.out or Path(args.fit_dir) / f"gain_{'_'.join(args.groups)}")
    out.mkdir(parents=True, exist_ok=True)
    trials = load_trials(args.data)
    _, tr, u = saved_default_fit(Path(args.fit_dir))
    drift.drift_noise = shared_gain_noise
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    fit = fit_free_running(trials, free=tr.free, fixed=tr.fixed, n_copies=16, n_starts=32, n_gen=6,
                           drift=tuple(args.groups), theta=u)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_before": load_before,
               "fit_dir": str(args.fit_dir), "free": list(tr.free), "groups": list(args.groups),
               "drift_seconds": time.perf_counter() - t0,
               **{f"sigma_day_{g}_median": float(np.median(v)) for g, v in fit.sigma_day.items()}}
    fit.params.to_csv(out / "gain_drift_fit.csv", index=False)
    for seed in (1, 2):
        chk = check_free_running(fit, trials, 50, seed=seed, parameter_uncertainty=False)
        chk.per_mouse.to_csv(out / f"check_per_mouse_seed{seed}.csv", index=False)
        summary[f"check_seed_{seed}"] = {k: chk.summary[k] for k in KEYS}
    summary["load_after"] = os.getloadavg()
    (out / "gain_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
