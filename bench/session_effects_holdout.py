"""Benchmark: what the session effects buy in held-out prediction (mouse_rl.fit.session_effects).

For each scheme of :mod:`mouse_rl.fit.cv` (time-aware: the first half of each mouse's sessions trains, the rest
is scored; interleaved: every 10th trial held out), the network (``NetworkModel``, plug-in, 8 restarts; options as
``--fit-crosstalk`` / ``--fit-side-pref``) is fitted on the training choices, each mouse's session effects on
the same choices at that fit (:func:`~mouse_rl.fit.session_effects.fit_session_effects` with ``rows=train``: the
bias alone, and bias and gain), and the held-out choices are scored without and with them
(:func:`~mouse_rl.fit.session_effects.heldout_loglik`: a held-out session's effects are integrated over their
prior, or over their posterior given the session's training trials; so a held-out session's choices are
predicted from the choices before them in that session, as the network itself learns from them).

Writes ``OUT/session_effects_holdout.csv`` (per scheme and mouse) and ``OUT/summary.json``; prints bits/trial.

Usage::

    python bench/session_effects_holdout.py --out bench/results/session_effects_holdout
    python bench/session_effects_holdout.py --fit-crosstalk --fit-side-pref --out bench/results/session_effects_holdout_crosstalk_side_pref
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import real_mice

sys.path.insert(0, str(real_mice.ROOT))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_mice.add_arguments(ap, "bench/results/session_effects_holdout")
    ap.add_argument("--schemes", nargs="+", default=["time", "interleaved"], choices=["time", "interleaved"])
    ap.add_argument("--fit-crosstalk", action="store_true")
    ap.add_argument("--fit-side-pref", action="store_true")
    ap.add_argument("--restarts", type=int, default=8)
    args = ap.parse_args(argv)
    real_mice.check_arguments(ap, args)
    if args.restarts < 1:
        ap.error(f"--restarts: must be >= 1, got {args.restarts}")

    import numpy as np
    import pandas as pd

    from mouse_rl.fit.cv import NetworkModel, folds
    from mouse_rl.fit.session_effects import fit_session_effects, heldout_loglik
    from mouse_rl.fit.transforms import with_options

    df = real_mice.load(args)
    free = with_options(crosstalk=args.fit_crosstalk, side_pref=args.fit_side_pref)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
               "load_before": os.getloadavg(), "free": list(free), "n_mice": int(df["mouse"].nunique())}
    rows = []
    for scheme in args.schemes:
        (train, test), = folds(df, scheme)
        t0 = time.perf_counter()
        model = NetworkModel(df, free=free, n_restarts=args.restarts, predictive="plugin").fit(train)
        params = model.fitted_params()
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        zero = np.zeros(len(params))
        table = pd.DataFrame({"scheme": scheme, "mouse": params["mouse"]})
        plug = heldout_loglik(df, params, zero, zero, train, test)
        table["n_trials"], table["loglik_plugin"] = plug["n_trials"].to_numpy(), plug["loglik"].to_numpy()
        for name, gain in (("bias", False), ("bias_gain", True)):
            se = fit_session_effects(df, params, gain=gain, rows=train)
            b, g = se["session_bias_sd"].to_numpy(), se["session_gain_sd"].to_numpy()
            table[f"bias_sd_{name}"], table[f"gain_sd_{name}"] = b, g
            table[f"loglik_{name}"] = heldout_loglik(df, params, b, g, train, test)["loglik"].to_numpy()
        se_s = time.perf_counter() - t0
        check = model.score(test)["loglik"].to_numpy()  # the library's plug-in score: the same numbers
        rows.append(table)
        bits = lambda v: float(v.sum() / table["n_trials"].sum() / math.log(2))  # noqa: E731
        summary[scheme] = {"bits_per_trial_plugin": bits(table["loglik_plugin"]),
                           **{f"bits_per_trial_{n}": bits(table[f"loglik_{n}"]) for n in ("bias", "bias_gain")},
                           **{f"mice_better_{n}": int((table[f"loglik_{n}"] > table["loglik_plugin"]).sum())
                              for n in ("bias", "bias_gain")},
                           "mice_better_gain_over_bias": int((table["loglik_bias_gain"] > table["loglik_bias"]).sum()),
                           "bias_sd_median": float(table["bias_sd_bias_gain"].median()),
                           "gain_sd_median": float(table["gain_sd_bias_gain"].median()),
                           "max_abs_diff_vs_model_score": float(np.max(np.abs(check - table["loglik_plugin"].to_numpy()))),
                           "fit_seconds": fit_s, "session_effects_seconds": se_s}
        s = summary[scheme]
        print(f"{scheme:12s} plug-in {s['bits_per_trial_plugin']:+.4f}  bias {s['bits_per_trial_bias']:+.4f}  "
              f"bias and gain {s['bits_per_trial_bias_gain']:+.4f} bits/trial  ({s['mice_better_bias_gain']}/"
              f"{len(table)} mice better than plug-in; fit {fit_s:.0f} s)", flush=True)
    summary["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).to_csv(args.out / "session_effects_holdout.csv", index=False)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
