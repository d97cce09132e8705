"""Why the copies miss the mice's sides: the paper's cohort relations under different parameter sets.

The paper's headline relations across mice (MODEL.md section 6: r(early bias, late right-minus-left slope
difference) = 0.69, r(early bias, late bias) = -0.53) say that the bias a mouse shows in sessions 4-8
predicts the side it learns, and that its bias then reverses. For the 25 valid Liebana et al. mice this
script prints the real relations and, for free-running copies on every mouse's own stimuli and session
lengths (:func:`mouse_rl.fit.checks.posterior_predictive_check`, point parameters, 50 copies, seed 0;
cohort k = copy k of every mouse), the band of the same r over the simulated cohorts, for:

* ``common``: one parameter set for every mouse, MODEL.md's (η 0.0026, β 9, symmetric start, no lapse), and
  η 0.0043 (the median of the fit below);
* ``fit_default``: the default fit (``fit_mice``: η, β, w0, s0, b_L, b_R, lapse per mouse), and the same with
  β fixed at 9 for every mouse (``fit_default_beta_fixed_9``), the same learning from the drawn reward on
  zero-contrast trials (``fit_default_zero_reward_random``), and a fit whose start bias weights are
  the same for every mouse (b_L = b_R = 0.05) with ``stim_skew`` free, so that a mouse's bias has to come
  from its learning (``fit_symmetric_bias_with_skew``);
* each fit's model learning from the mouse's own choices (teacher-forced P(Right) on its trials): the same
  relations, ``teacher_forced_r_...``: whether the fitted model can represent them at all; and the mice
  whose constant channel is frozen at the end (its time constant 1 / (η a_b²) longer than all their trials);
* ``fit_rule``: a fit of η, β and lapse only (MODEL.md's start), then copies with the fitted values of one
  parameter per mouse and the others common (η 0.0043, β 9, lapse 0), to see which per-mouse spread
  changes the relations.

Also the real mice's first-session bias against their early bias and late metrics. Writes
``OUT/cohort_relations.json``; prints a table.

    python bench/cohort_relations.py --out bench/results/cohort_relations
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def relations(summary: dict) -> dict:
    keep = [k for k in summary if k.startswith("r_") and not k.endswith("_inside")]
    return {**{k: summary[k] for k in keep}, "session_coverage": summary["session_coverage"],
            "side_match": summary["side_match"], "expected_side_match": summary["expected_side_match"],
            "n_mice": summary["n_mice"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="torch and numba threads (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cohort_relations")
    args = ap.parse_args(argv)
    if not args.data.exists():
        ap.error(f"--data: {str(args.data)!r} does not exist (the Liebana et al. 2025 folder)")
    if args.copies < 2 or args.threads < 1:
        ap.error(f"--copies must be >= 2 and --threads >= 1, got {args.copies}, {args.threads}")
    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    from mouse_rl import analysis
    from mouse_rl.data import load_trials
    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.checks import check_fit, posterior_predictive_check
    from mouse_rl.fit.transforms import ParamTransform

    from fit_real_mice import teacher_forced_relations

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DAP044 (malformed) is skipped with a warning
        trials = load_trials(args.data)
    M = trials["mouse"].nunique()
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
           "load_before": os.getloadavg(), "copies": args.copies}

    st = analysis.session_metrics(trials)
    el = analysis.early_late_metrics(st).set_index("mouse")
    first = st[st["session"] == st.groupby("mouse")["session"].transform("min")].set_index("mouse")["bias"]
    out["real_first_session_bias"] = {
        f"r_first_session_bias_{k}": float(np.corrcoef(first.loc[el.index], el[k])[0, 1])
        for k in ("early_bias", "late_bias", "late_slope_diff")}

    def copies(tr, values, label):
        u = tr.to_u(values, M).numpy()
        eye = np.tile(np.eye(tr.n_free), (M, 1, 1))
        s = posterior_predictive_check(trials, u, eye, tr, args.copies, 0, parameter_uncertainty=False).summary
        out[label] = relations(s)

    rule = ParamTransform(free=("eta", "beta", "lapse"))
    for eta in (0.0026, 0.0043):
        copies(rule, {"eta": eta, "beta": 9.0, "lapse": 1e-6}, f"common_eta{eta}")
    from mouse_rl.fit import DEFAULT_FREE
    from mouse_rl.params import ModelParams

    fits = {"fit_default": {},
            "fit_default_beta_fixed_9": dict(free=tuple(f for f in DEFAULT_FREE if f != "beta"),
                                             fixed=ModelParams(beta=9.0)),
            "fit_default_zero_reward_random": dict(fixed=ModelParams(zero_reward="random")),
            "fit_symmetric_bias_with_skew": dict(free=("eta", "beta", "w0", "s0", "lapse", "stim_skew"),
                                                 fixed=ModelParams(b_L=0.05, b_R=0.05))}
    for label, kw in fits.items():
        fit = fit_mice(trials, **kw)
        out[label] = {**relations(check_fit(fit, trials, n_copies=args.copies, seed=0,
                                            parameter_uncertainty=False).summary),
                      **teacher_forced_relations(fit)}
    fr = fit_mice(trials, free=rule.free).params.sort_values("mouse")
    common = {"eta": 0.0043, "beta": 9.0, "lapse": 1e-6}
    out["fit_rule_medians"] = {k: float(fr[k].median()) for k in rule.free}
    for keep in ("eta", "beta", "lapse", "all"):
        vals = {k: (fr[k].to_numpy() if keep in (k, "all") else v) for k, v in common.items()}
        copies(rule, vals, f"fit_rule_per_mouse_{keep}")
    out["seconds"] = time.perf_counter() - t0
    out["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cohort_relations.json").write_text(json.dumps(out, indent=1))
    rows = {k: v for k, v in out.items() if isinstance(v, dict) and "n_mice" in v}
    real = next(iter(rows.values()))
    print(f"real mice: r(early bias, late slope diff) = {real['r_early_bias_late_slope_diff']:.2f}, "
          f"r(early bias, late bias) = {real['r_early_bias_late_bias']:.2f}; first-session bias: "
          + ", ".join(f"{k} {v:.2f}" for k, v in out["real_first_session_bias"].items()))
    table = pd.DataFrame({name: {
        "r(eb, slope) copies": f"{v['r_early_bias_late_slope_diff_median']:.2f} "
                               f"[{v['r_early_bias_late_slope_diff_lo']:.2f}, {v['r_early_bias_late_slope_diff_hi']:.2f}]",
        "r(eb, late bias) copies": f"{v['r_early_bias_late_bias_median']:.2f} "
                                   f"[{v['r_early_bias_late_bias_lo']:.2f}, {v['r_early_bias_late_bias_hi']:.2f}]",
        "teacher-forced r (slope / late bias)": (
            f"{v['teacher_forced_r_early_bias_late_slope_diff']:.2f} / "
            f"{v['teacher_forced_r_early_bias_late_bias']:.2f}" if "teacher_forced_r_early_bias_late_bias" in v
            else ""),
        "frozen const. channel": (f"{v['constant_channel_frozen']}/{v['n_mice']}"
                                  if "constant_channel_frozen" in v else ""),
        "sessions in band": f"{v['session_coverage']:.1%}",
        "sides (calibrated expects)": f"{v['side_match']}/{v['n_mice']} ({v['expected_side_match']:.1f})"}
        for name, v in rows.items()}).T
    print(table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
