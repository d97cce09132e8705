"""The population prior as a lever on the posterior-predictive check (issue: fits you can trust).

Fits the 25 valid Liebana et al. mice hierarchically (``fit_mice(population=True)``: a Gaussian
population over the free parameters by empirical Bayes, every mouse's MAP under it), then runs
the posterior-predictive check (50 free-running copies per mouse) and the learner-side labels,
as ``bench/fit_real_mice.py --trust`` does for the default per-mouse fit.

Usage::

    python bench/population_check.py [--data ../shared/data/liebana2025] [--iter 6] [--copies 50]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "liebana2025"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--iter", type=int, default=6, help="EM iterations")
    p.add_argument("--copies", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from mouse_rl.data import load_trials
    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.checks import check_fit
    from mouse_rl.fit.labels import strategy_labels

    trials = load_trials(args.data)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    res = fit_mice(trials, population=True, population_iter=args.iter, seed=args.seed)
    seconds = time.perf_counter() - t0
    print(res.population.population().to_string(index=False))
    print(res.population.history[["iteration", "log_evidence"]].to_string(index=False))
    chk = check_fit(res, trials, n_copies=args.copies, seed=args.seed)
    labels, _ = strategy_labels(res.trials, res.params)
    agree = float((labels["learner_side_data"] == labels["learner_side_model"]).mean())
    print(json.dumps({**chk.summary, "label_agreement": agree, "fit_seconds": seconds,
                      "converged": res.options["population_converged"], "lapse_max": float(res.params["lapse"].max()),
                      "load_before": load0, "load_after": os.getloadavg()[0]}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
