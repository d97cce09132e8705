"""Calibration of the posterior-predictive check on mice simulated from the network itself.

Simulates a cohort of deep-network mice (start biases drawn per mouse), then
runs :func:`mouse_rl.fit.checks.posterior_predictive_check` twice: with the
*true* parameters (no fit; what a perfect fit could achieve) and after fitting
them with the default :func:`mouse_rl.fit.fit_mice`. A calibrated check puts
~90% of sessions inside the copies' 5-95% band, and the mean share of copies
with each mouse's learner side equals the copies' self-agreement.

Usage::

    python bench/check_calibration.py [--mice 20] [--sessions 10] [--trials 200] [--copies 100] [--skew 2]

``--skew SD`` draws each simulated mouse's ``stim_skew`` (per-side initial stimulus channels, an option
of :data:`mouse_rl.params.PARAMS`) from N(0, SD^2) and fits with it free.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mice", type=int, default=20)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--copies", type=int, default=100)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--skew", type=float, default=0.0,
                   help="sd of the true per-mouse stim_skew (default 0 = MODEL.md); > 0 also fits it")
    args = p.parse_args(argv)

    from mouse_rl.fit import DEFAULT_FREE, fit_mice, make_transform
    from mouse_rl.fit.checks import check_fit, posterior_predictive_check
    from mouse_rl.params import ModelParams
    from mouse_rl.simulate import simulate_cohort

    r = np.random.default_rng(0)
    n = args.mice
    truth = ModelParams(eta=0.03, beta=8.0, w0=0.1, s0=0.25, b_L=r.uniform(0.01, 0.3, n),
                        b_R=r.uniform(0.01, 0.3, n), lapse=0.03,
                        stim_skew=r.normal(0.0, args.skew, n) if args.skew > 0 else 0.0)
    sim = simulate_cohort(n, args.sessions, args.trials, truth, seed=args.seed, dtype=torch.float64)
    tr = make_transform((*DEFAULT_FREE, "stim_skew") if args.skew > 0 else DEFAULT_FREE)
    u = tr.to_u({k: getattr(truth, k) for k in tr.free}, n).numpy()
    exact = posterior_predictive_check(sim.trials, u, np.tile(np.eye(tr.n_free) * 1e6, (n, 1, 1)), tr, args.copies,
                                       1, parameter_uncertainty=False)
    t0 = time.perf_counter()
    fit = fit_mice(sim.trials, free=tr.free)
    fitted = check_fit(fit, sim.trials, n_copies=args.copies, seed=1)
    out = {"true_parameters": exact.summary, "fitted": fitted.summary, "fit_seconds": time.perf_counter() - t0}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
