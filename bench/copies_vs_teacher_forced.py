"""Benchmark: where the free-running copies leave the mouse -- the check's teacher-forced column, by thirds.

The posterior-predictive check (``check_fit``) now also reports, per session, the fitted model's expected
accuracy learning from the mouse's own choices (``accuracy_teacher_forced``) and whether it lies inside the
copies' band (``teacher_forced_coverage``). This fits the 25 real mice (default fit, or with ``--fit-crosstalk
--fit-side-pref``, optionally ``--session-effects``: each mouse's day-to-day effects for its copies), checks them
(50 copies, parameter draws, check seed 1) and splits the sessions of each mouse into thirds: the real accuracy,
the teacher-forced accuracy and the copies' median, the share of real and of teacher-forced sessions inside the
band, above and below it. Then, for the mouse with the largest late gap between its teacher-forced path and its
copies (or ``--mouse``), P(Right | left / right stimulus) per session: the mouse, the fit learning from its
choices, and its copies' median (as checked).

Writes ``OUT/summary.json``, ``OUT/thirds.csv``, ``OUT/late_per_mouse.csv``, ``OUT/example_mouse.csv``; prints the
tables.

Usage::

    python bench/copies_vs_teacher_forced.py --out bench/results/copies_vs_teacher_forced/default
    python bench/copies_vs_teacher_forced.py --fit-crosstalk --fit-side-pref --session-effects \\
        --out bench/results/copies_vs_teacher_forced/crosstalk_side_pref_session_effects
    python bench/copies_vs_teacher_forced.py --fit-crosstalk --fit-side-pref --session-effects --prior-sd side_pref=1 \\
        --out bench/results/copies_vs_teacher_forced/crosstalk_side_pref_session_effects_prior1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import real_mice

sys.path.insert(0, str(real_mice.ROOT))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_mice.add_arguments(ap, "bench/results/copies_vs_teacher_forced/default")
    ap.add_argument("--fit-crosstalk", action="store_true")
    ap.add_argument("--fit-side-pref", action="store_true")
    ap.add_argument("--session-effects", action="store_true", help="the copies get each mouse's session effects")
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--check-seed", type=int, default=1)
    ap.add_argument("--mouse", default=None, help="the example mouse (default: the largest late gap)")
    ap.add_argument("--prior-sd", nargs="+", default=[], metavar="NAME=SD", type=real_mice.prior_sd_item,
                    help="override prior sds of mouse_rl.params.PARAMS for this run (e.g. side_pref=1)")
    args = ap.parse_args(argv)
    real_mice.check_arguments(ap, args)
    if args.copies < 10:
        ap.error(f"--copies: must be >= 10 for 5-95% bands, got {args.copies}")

    import numpy as np
    import pandas as pd
    import torch

    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.batch import make_batch
    from mouse_rl.fit.checks import check_fit, teacher_forced_sessions
    from mouse_rl.fit.session_effects import fit_session_effects
    from mouse_rl.fit.transforms import with_options

    real_mice.apply_prior_sds(args.prior_sd)
    df = real_mice.load(args)
    if args.mouse is not None and args.mouse not in set(df["mouse"]):
        ap.error(f"--mouse: {args.mouse!r} is not among the loaded mice")
    free = with_options(crosstalk=args.fit_crosstalk, side_pref=args.fit_side_pref)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
               "load_before": os.getloadavg(), "free": list(free), "n_mice": int(df["mouse"].nunique()),
               "copies": args.copies, "check_seed": args.check_seed, "session_effects": args.session_effects,
               "prior_sd": {n: v for n, v in args.prior_sd}}
    t0 = time.perf_counter()
    res = fit_mice(df, free=free)
    summary["fit_seconds"] = time.perf_counter() - t0
    summary["loglik"] = float(res.params["loglik"].sum())
    se = fit_session_effects(df, res.params) if args.session_effects else None
    check = check_fit(res, df, n_copies=args.copies, seed=args.check_seed, session_effects=se)
    summary["check"] = {k: check.summary[k] for k in ("session_coverage", "teacher_forced_coverage",
                                                      "late_slope_inside", "side_match", "expected_side_match")}

    ps = check.per_session.copy()
    n = ps.groupby("mouse")["session"].transform("count")
    ps["third"] = np.ceil(3 * ps.groupby("mouse")["session"].rank() / n).astype(int)
    for who, col in (("real", "accuracy"), ("tf", "accuracy_teacher_forced")):
        ps[f"{who}_above"] = ps[col] > ps["accuracy_hi"]
        ps[f"{who}_below"] = ps[col] < ps["accuracy_lo"]
    ps["real_inside"], ps["tf_inside"] = ps["accuracy_inside"], ps["teacher_forced_inside"]
    cols = ["accuracy", "accuracy_teacher_forced", "accuracy_median", "real_inside", "real_above", "real_below",
            "tf_inside", "tf_above", "tf_below"]
    thirds = ps.groupby("third")[cols].mean().reset_index()
    late = ps[ps["third"] == 3].groupby("mouse")[cols].mean().reset_index()
    late["gap"] = late["accuracy_teacher_forced"] - late["accuracy_median"]
    both_above = ps["real_above"] & ps["tf_above"]
    summary["real_above_late"] = float(ps.loc[ps["third"] == 3, "real_above"].mean())
    summary["real_above_late_with_tf_above"] = float(both_above[ps["third"] == 3].sum()
                                                     / max(ps.loc[ps["third"] == 3, "real_above"].sum(), 1))

    mouse = args.mouse or str(late.sort_values("gap")["mouse"].iloc[-1])
    order = np.argsort(res.params["mouse"].astype(str).to_numpy(), kind="stable")
    m = int(np.flatnonzero(res.params["mouse"].astype(str).to_numpy()[order] == mouse)[0])
    tr = res.transform
    batch = make_batch(df[df["mouse"] == mouse], tr.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    tf = teacher_forced_sessions(batch, res.u[order][m:m + 1], tr)
    example = ps[ps["mouse"] == mouse][["session"]].reset_index(drop=True)
    one = ps[ps["mouse"] == mouse].reset_index(drop=True)
    for key in ("p_right_left", "p_right_right"):
        example[f"{key}_mouse"] = one[key]
        example[f"{key}_teacher_forced"] = tf[key][:len(one), 0]
        example[f"{key}_copies_median"] = one[f"{key}_median"]
    point = res.params.set_index(res.params["mouse"].astype(str)).loc[mouse]
    summary["example_mouse"] = {"mouse": mouse, **{k: float(point[k]) for k in free}}

    args.out.mkdir(parents=True, exist_ok=True)
    thirds.to_csv(args.out / "thirds.csv", index=False)
    late.to_csv(args.out / "late_per_mouse.csv", index=False)
    example.to_csv(args.out / "example_mouse.csv", index=False)
    summary["load_after"] = os.getloadavg()
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    pd.set_option("display.width", 200)
    print(json.dumps(summary["check"], default=float))
    print(thirds.round(3).to_string(index=False))
    print(late.sort_values("gap").round(3).to_string(index=False))
    print(f"example {mouse}: P(Right | left / right stimulus), the mouse, the fit on its choices, copies:")
    print(example.round(2).to_string(index=False))
    return summary


if __name__ == "__main__":
    main()
