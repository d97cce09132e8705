"""Benchmark: hidden correction trials (the repeats the Liebana data removed) as a model variant, on the real mice.

In the task an error at c != 0 was followed by repeats of the same stimulus until a correct choice; the data
drop them (``../shared/data/README.md``), but the mice learned from them, and every such run gave a rewarded
choice on the side of the error's stimulus -- the side the mouse neglects, which might explain why one-sided
mice lean away from their learned side at zero contrast. This fits the default network (``fit_mice``'s
defaults: 8 restarts, MAP) by teacher forcing twice: on the recorded trials, and with the end of each run put
back (:func:`mouse_rl.fit.corrections.with_corrections`: one hidden, correct, rewarded, unscored trial after
each error at c != 0); the two likelihoods are of the same recorded choices with the same parameters, so their
difference compares the models. Then the posterior-predictive checks (50 copies, parameter draws) of each fit:
copies without corrections, with forced corrections (one correct trial after each error: the model the second
fit is exact for) and with sampled runs (up to 64 trials, the task).

Writes ``OUT/summary.json`` and ``OUT/fit_{plain,corrections}.csv``; prints the table.

``--learn-shares S [S ...]`` instead profiles a weaker learning from the runs: the network learns from a random
share S of the hidden trials (seed 0; in expectation a factor S on their learning rate, 1 = the corrections fit
above, 0 = the plain fit) and each share is fitted by teacher forcing (no checks); writes
``OUT/learn_shares.json``.

Usage::

    python bench/corrections_probe.py --out bench/results/corrections
    python bench/corrections_probe.py --learn-shares 0 0.1 0.3 --out bench/results/corrections
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

CHECK_KEYS = ("session_coverage", "late_slope_inside", "early_bias_inside", "late_bias_inside", "side_match",
              "expected_side_match", "r_early_bias_late_bias", "r_early_bias_late_bias_lo",
              "r_early_bias_late_bias_hi")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_mice.add_arguments(ap, "bench/results/corrections")
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--check-seed", type=int, default=1)
    ap.add_argument("--learn-shares", nargs="+", type=float, default=None, metavar="S",
                    help="profile the share of hidden trials learned from (each in [0, 1]; fits only)")
    args = ap.parse_args(argv)
    real_mice.check_arguments(ap, args)
    if args.learn_shares is not None and not all(0 <= v <= 1 for v in args.learn_shares):
        ap.error(f"--learn-shares: each must be in [0, 1], got {args.learn_shares}")
    if args.copies < 10:
        ap.error(f"--copies: must be >= 10 for 5-95% bands, got {args.copies}")

    import pandas as pd
    import torch

    from envs import rng
    from mouse_rl.fit.batch import make_batch
    from mouse_rl.fit.checks import posterior_predictive_check
    from mouse_rl.fit.corrections import correction_trials, with_corrections
    from mouse_rl.fit.fitting import fit_batch, make_transform
    from mouse_rl.fit.transforms import DEFAULT_FREE

    df = real_mice.load(args)
    transform = make_transform(DEFAULT_FREE, None, True)
    batch = make_batch(df, transform.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    hidden = correction_trials(batch)
    if args.learn_shares is not None:
        return profile_learn_shares(args, batch, transform)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
               "load_before": os.getloadavg(), "n_mice": len(batch.mice), "copies": args.copies,
               "check_seed": args.check_seed, "hidden_trials": int(hidden.sum()),
               "hidden_per_recorded_trial": float(hidden.sum() / batch.valid.sum())}
    args.out.mkdir(parents=True, exist_ok=True)
    upper = transform.bounds_u()[1]
    for name in ("plain", "corrections"):
        b, score, learn = batch, batch.valid, batch.valid
        if name == "corrections":
            b, score, learn, _ = with_corrections(batch, score, learn)
        t0 = time.perf_counter()
        res = fit_batch(b, transform, score, learn)
        seconds = time.perf_counter() - t0
        u = res.u.numpy()
        p = transform.params(res.u)
        table = pd.DataFrame({"mouse": batch.mice, "loglik": -res.nll_loglik})
        for k in transform.free:
            table[k] = getattr(p, k).numpy()
        table.to_csv(args.out / f"fit_{name}.csv", index=False)
        at_bound = {k: int((u[:, j] >= upper[j] - 1e-6).sum()) for j, k in enumerate(transform.free)}
        entry = {"fit_seconds": seconds, "loglik": float(table["loglik"].sum()),
                 "median_beta": float(table["beta"].median()), "median_eta": float(table["eta"].median()),
                 "at_upper_bound": {k: v for k, v in at_bound.items() if v}}
        checks = {"none": {}, "forced": dict(corrections=1, corrections_forced=True),
                  "sampled": dict(corrections=rng.MAX_CORRECTIONS)}
        for cname, kw in checks.items():
            t0 = time.perf_counter()
            ck = posterior_predictive_check(df, u, res.hessian, transform, args.copies, args.check_seed, **kw)
            entry[f"check_{cname}"] = {k: ck.summary[k] for k in CHECK_KEYS} | {"seconds": time.perf_counter() - t0}
        summary[name] = entry
    summary["loglik_gain"] = summary["corrections"]["loglik"] - summary["plain"]["loglik"]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"{'fit':12s} {'loglik':>10s}  copies   sessions slopes early  late  sides (expected)  r(early, late bias) band")
    for name in ("plain", "corrections"):
        e = summary[name]
        for cname in ("none", "forced", "sampled"):
            c = e[f"check_{cname}"]
            print(f"{name:12s} {e['loglik']:10.1f}  {cname:8s} {c['session_coverage']:6.1%} {c['late_slope_inside']:5d} "
                  f"{c['early_bias_inside']:5d} {c['late_bias_inside']:5d} {c['side_match']:5d} "
                  f"({c['expected_side_match']:.1f})  {c['r_early_bias_late_bias_lo']:+.2f} .. "
                  f"{c['r_early_bias_late_bias_hi']:+.2f} (real {c['r_early_bias_late_bias']:+.2f})")
    return summary


def profile_learn_shares(args, batch, transform) -> dict:
    """Teacher-forced fits learning from a random share of the hidden trials (``--learn-shares``)."""
    import numpy as np
    import torch

    from mouse_rl.fit.corrections import with_corrections
    from mouse_rl.fit.fitting import fit_batch

    expanded, score, learn, index = with_corrections(batch)
    hidden = expanded.valid.numpy().copy()
    hidden[index, np.broadcast_to(np.arange(batch.shape[1]), batch.shape)] = False
    draw = np.random.default_rng(0).random(hidden.shape)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
               "load_before": os.getloadavg(), "n_mice": len(batch.mice), "hidden_trials": int(hidden.sum()),
               "shares": {}}
    for share in args.learn_shares:
        mask = learn & ~torch.as_tensor(hidden & (draw >= share))
        t0 = time.perf_counter()
        res = fit_batch(expanded, transform, score, mask)
        p = transform.params(res.u)
        entry = {"loglik": float((-res.nll_loglik).sum()), "median_beta": float(p.beta.median()),
                 "median_eta": float(p.eta.median()), "fit_seconds": time.perf_counter() - t0}
        summary["shares"][str(share)] = entry
        print(f"share {share:g}: loglik {entry['loglik']:.1f}, median beta {entry['median_beta']:.1f}, "
              f"median eta {entry['median_eta']:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learn_shares.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
