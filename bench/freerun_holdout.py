"""Benchmark: the free-running fit on held-out sessions and choices, against the default teacher-forced fit.

The in-sample checks of the free-running fit (``bench/drift_table.py``) score statistics the fit itself was
chosen on. Here both fits see only part of each mouse:

* **time split** (``mouse_rl.fit.cv.time_split``, first half of each mouse's sessions observed): each fit
  uses only those sessions' choices (the free-running copies still run the mouse's whole stimulus sequence
  and session lengths). Held-out: teacher-forced bits/trial of the second half's choices at the fitted θ,
  and the posterior-predictive check (point estimate, ``--copies`` fresh copies, check seed 1) restricted to
  what the fit never saw: session coverage of the second half's sessions, the late slope difference and
  the learner side (both from the last 5 sessions, always in the second half: every mouse has >= 14
  sessions). The early bias (sessions 4-8) lies in the first half: reported, but in-sample.
* **interleaved** (``--interleaved``; every 10th trial held out): held-out teacher-forced bits/trial, the
  README's cross-validation scheme.

Cases: ``default`` (``fit_mice`` defaults, via ``NetworkModel``) and ``freerun`` (``fit_free_running`` with
``--drift`` groups and ``--summary-weight``; defaults: drift bias + stim, summary weight 1, fit seed 0).

Writes ``OUT/holdout_per_mouse.csv``, ``OUT/holdout_summary.json``; prints the summary.

Usage::

    python bench/freerun_holdout.py --interleaved --out bench/results/freerun_holdout
    python bench/freerun_holdout.py --mice DAP024 DAP033 --out /tmp/fh
    python bench/freerun_holdout.py --interleaved --cases default --out bench/results/freerun_holdout_default
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

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mouse_rl.data import load_trials  # noqa: E402
from mouse_rl.fit import prepare_trials  # noqa: E402
from mouse_rl.fit.checks import posterior_predictive_check  # noqa: E402
from mouse_rl.fit.cv import NetworkModel, interleaved_split, time_split  # noqa: E402
from mouse_rl.fit.freerun import FreeRunModel, check_free_running  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LN2 = np.log(2)


def held_out_check(chk, df: pd.DataFrame, train: np.ndarray) -> pd.DataFrame:
    """Per mouse: coverage of the sessions with no observed choice, late slope / side / early bias flags."""
    seen = df.loc[train].groupby("mouse")["session"].nunique()
    ps = chk.per_session.copy()
    ps["held_out"] = ps["session"] > ps["mouse"].map(seen).to_numpy()
    cov = ps[ps["held_out"]].groupby("mouse")["accuracy_inside"].agg(["sum", "count"])
    pm = chk.per_mouse.set_index("mouse")
    return pd.DataFrame({"held_out_sessions_inside": cov["sum"], "held_out_sessions": cov["count"],
                         "late_slope_inside": pm["late_slope_diff_inside"], "side_match": pm["side_match"],
                         "side_share": pm["side_share"], "early_bias_inside_insample": pm["early_bias_inside"]})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liebana2025"))
    ap.add_argument("--mice", nargs="*", default=None)
    ap.add_argument("--copies", type=int, default=50, help="copies per mouse in the checks (seed 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the free-running fit")
    ap.add_argument("--drift", nargs="*", default=["bias", "stim"], choices=["bias", "stim"])
    ap.add_argument("--summary-weight", type=float, default=1.0)
    ap.add_argument("--interleaved", action="store_true", help="also the interleaved held-out bits/trial")
    ap.add_argument("--cases", nargs="+", default=["default", "freerun"], choices=["default", "freerun"])
    ap.add_argument("--out", default="bench/results/freerun_holdout")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trials = load_trials(args.data)
    if args.mice:
        trials = trials[trials["mouse"].isin(args.mice)]
    df = prepare_trials(trials)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, numba threads {numba.get_num_threads()}",
               "load_before": os.getloadavg(), "n_mice": int(df["mouse"].nunique()), "check_copies": args.copies,
               "check_seed": 1, "fit_seed": args.seed, "drift": list(args.drift),
               "summary_weight": args.summary_weight}
    cases = {"default": lambda d: NetworkModel(d),
             "freerun": lambda d: FreeRunModel(d, drift=tuple(args.drift), summary_weight=args.summary_weight,
                                               seed=args.seed, progress=True)}
    cases = {name: cases[name] for name in args.cases}
    train, test = time_split(df, 0.5)
    tables = []
    for name, make in cases.items():
        t0 = time.perf_counter()
        model = make(df).fit(train)
        seconds = time.perf_counter() - t0
        held = model.score(test).set_index("mouse")
        if name == "default":
            u = model.u.numpy()
            chk = posterior_predictive_check(df, u, np.broadcast_to(np.eye(u.shape[1]), (*u.shape, u.shape[1])),
                                             model.transform, args.copies, seed=1, parameter_uncertainty=False)
        else:
            chk = check_free_running(model.result, df, args.copies, seed=1)
        t = held_out_check(chk, df, train)
        t["time_loglik"], t["time_n"] = held["loglik"], held["n_trials"]
        if args.interleaved:
            tr_i, te_i = interleaved_split(df)
            held_i = make(df).fit(tr_i).score(te_i).set_index("mouse")
            t["interleaved_loglik"], t["interleaved_n"] = held_i["loglik"], held_i["n_trials"]
        t.insert(0, "case", name)
        tables.append(t.reset_index())
        s = {"time_bits_per_trial": float(t["time_loglik"].sum() / t["time_n"].sum() / LN2),
             "held_out_session_coverage": float(t["held_out_sessions_inside"].sum() / t["held_out_sessions"].sum()),
             "late_slope_inside": int(t["late_slope_inside"].sum()), "side_match": int(t["side_match"].sum()),
             "mean_side_share": float(t["side_share"].mean()),
             "early_bias_inside_insample": int(t["early_bias_inside_insample"].sum()),
             "time_fit_seconds": seconds}
        if args.interleaved:
            s["interleaved_bits_per_trial"] = float(t["interleaved_loglik"].sum() / t["interleaved_n"].sum() / LN2)
        summary[name] = s
        print(name, json.dumps(s), flush=True)
    summary["load_after"] = os.getloadavg()
    pd.concat(tables).to_csv(out / "holdout_per_mouse.csv", index=False)
    (out / "holdout_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
