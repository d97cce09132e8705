"""Animal-holdout forecasts on real mice: every model on the same folds (issue: population prior and forecasts).

Runs :func:`mouse_rl.forecast.run_forecast` (5 folds of mice round-robin; each forecast mouse's
first 8 sessions observed, scored on its final 5) and writes the tables and figures that
``mouse-rl forecast`` writes, plus the wall time and machine load.

Usage::

    python bench/forecast.py [--data ../shared/data/liebana2025] [--out bench/results/forecast]
                             [--models ...] [--copies 100] [--restarts 4] [--em-iter 4] [--threads 1] [--replot]
                             [--drift-bias SD ...] [--drift-stim SD ...] [--drift-select own]  (network_drift)
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

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "liebana2025"


def main(argv=None) -> int:
    from mouse_rl.forecast import MODELS
    from mouse_rl.forecast.protocol import OPTIONAL_MODELS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA])
    p.add_argument("--out", type=Path, default=Path("bench/results/forecast"))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS) + list(OPTIONAL_MODELS))
    p.add_argument("--copies", type=int, default=100)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--em-iter", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drift-bias", nargs="+", default=None, help="network_drift: bias sds to try")
    p.add_argument("--drift-stim", nargs="+", default=None, help="network_drift: stimulus sds to try")
    p.add_argument("--drift-select", default="own", help="network_drift: own | recalibrated | stacked")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (set explicitly)")
    p.add_argument("--replot", action="store_true", help="only redraw the figures of an existing --out")
    args = p.parse_args(argv)
    if args.replot:
        import pandas as pd

        from mouse_rl.forecast.plots import forecast_figures

        figs = forecast_figures(pd.read_parquet(args.out / "forecast_predictions.parquet"),
                                pd.read_csv(args.out / "forecast_scores.csv"),
                                pd.read_csv(args.out / "forecast_summary.csv"))
        for name, fig in figs.items():
            fig.savefig(args.out / f"forecast_{name}.png", dpi=110)
        return 0

    import torch

    torch.set_num_threads(args.threads)  # a benchmark script (not the library) owns the process
    from mouse_rl.cli import main as cli

    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    code = cli(["forecast", *map(str, args.data), "--out", str(args.out), "--models", *args.models,
                "--copies", str(args.copies), "--restarts", str(args.restarts), "--em-iter", str(args.em_iter),
                "--seed", str(args.seed),
                *(["--drift-bias", *args.drift_bias] if args.drift_bias else []),
                *(["--drift-stim", *args.drift_stim] if args.drift_stim else []),
                "--drift-select", args.drift_select])
    seconds = time.perf_counter() - t0
    info = {"seconds": seconds, "load_before": load0, "load_after": os.getloadavg()[0], "threads": args.threads,
            "cpus": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version()}
    (args.out / "forecast_timing.json").write_text(json.dumps(info, indent=1))
    print(f"{seconds:.0f} s on {os.cpu_count()} CPUs (load average {load0:.1f} before, "
          f"{info['load_after']:.1f} after), {args.threads} torch thread(s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
