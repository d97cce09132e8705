"""Issue 10's labels and posterior-predictive checks for the noisy learner, on the Liebana et al. 2025 mice.

Fits the noisy learner (:func:`mouse_rl.fit.statespace.fit_noisy`) to every trial of every valid mouse, then

* **labels**: the model-derived learner side (late right - left slope difference of the model's P(Right) at
  the MAP weight trajectory, with the fitted beta and lapse, on the mouse's own trials) against the
  behavioural one, by :func:`mouse_rl.fit.labels.strategy_labels` -- the definition of ``bench/fit_real_mice.py
  --trust`` (:func:`mouse_rl.fit.noisy_checks.noisy_labels`). In-sample: the MAP trajectory is a smoother.
  Beside it, the same labels from the fit's learning rule alone (sigma = 0, teacher-forced from the first
  trial's MAP weights: :func:`mouse_rl.fit.noisy_checks.rule_only_weights`), i.e. what the noise adds;
* **check**: ``--copies`` free-running copies per mouse of the fitted noisy learner on the mouse's own stimuli
  and session lengths, with the fitted noise, and the same with the noise off (sigma = 0 copies at the fit's
  eta, beta, lapse and first-trial weights), summarised by :mod:`mouse_rl.fit.checks` as the trust bench is
  (:func:`mouse_rl.fit.noisy_checks.check_noisy`);
* optionally (``--baseline``) the trust bench's own numbers for the deterministic default fit, same process.

Variants: ``--variant recommended`` (default; README "Noisy learner": linear noise, gains frozen, magnitude
encoding, sigma per column, starts network + psytrack chosen by evidence, give-up 3 10) or ``default`` (the
library default: log-weight noise, side encoding, sigma per group, network start).

Writes into ``--out``: ``noisy_params.csv`` and ``noisy_weights.parquet`` (the fit; ``--fit-from DIR`` reads
them instead of refitting; parquet files under bench/results are git-ignored), ``per_mouse.csv`` (labels and
both checks, one row per mouse), ``per_session_noise.csv`` / ``per_session_noise_off.csv`` (the checks'
session bands), ``copies_noise.csv`` and ``summary.json`` (numbers, targets, machine, torch/numba threads,
load averages, wall times).

Usage::

    python bench/noisy_labels_checks.py --out bench/results/noisy_checks/recommended
    python bench/noisy_labels_checks.py --variant default --out bench/results/noisy_checks/default
    python bench/noisy_labels_checks.py --mice DAP007 DAP009 --copies 10 --out out/noisy_checks_small
    python bench/noisy_labels_checks.py --fit-from bench/results/noisy_checks/recommended --seed 1 \
        --out bench/results/noisy_checks/recommended_seed1      # the checks again, other copies, same fit
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "recommended": dict(noise="linear", frozen=("a",), encoding="magnitude", sigma_per="column",
                        start=("network", "psytrack"), give_up=(3, 10)),
    "default": dict(noise="log", frozen=(), encoding="side", sigma_per="group", start="network", give_up=None),
}
#: Issue 10's targets (25 mice): sessions inside the band, late slope inside, modal side, label agreement.
TARGETS = {"session_coverage": 0.85, "late_slope_inside": 20, "side_match": 20, "label_agreement": 0.80}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025",
                   help="Liebana et al. 2025 folder (DAP044, malformed, is skipped)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "noisy_checks" / "recommended")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="recommended")
    p.add_argument("--mice", nargs="+", default=None, help="a subset of mice (default: all valid mice)")
    p.add_argument("--copies", type=int, default=50, help="free-running copies per mouse (>= 2; default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the copies' random streams (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    p.add_argument("--max-outer", type=int, default=None,
                   help="evidence-search iterations of the noisy fit (default: fit_noisy's)")
    p.add_argument("--fit-from", type=Path, default=None, metavar="DIR",
                   help="read the fit (noisy_params.csv, noisy_weights.parquet) from DIR, a previous run of the same "
                        "--variant, instead of refitting")
    p.add_argument("--baseline", action="store_true",
                   help="also the deterministic default fit's labels and check (as bench/fit_real_mice.py --trust)")
    args = p.parse_args(argv)
    if args.copies < 2:
        p.error("--copies: must be >= 2")
    if args.threads < 1:
        p.error("--threads: must be >= 1")
    if not Path(args.data).exists():
        p.error(f"--data: no such file or folder: {args.data}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numba
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit.noisy_checks import check_noisy, noisy_labels, rule_only_weights
    from mouse_rl.fit.statespace import fit_noisy
    from mouse_rl.outputs import write_parquet

    v = VARIANTS[args.variant]
    model = {k: v[k] for k in ("noise", "frozen", "sigma_per", "encoding")}
    args.out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the malformed DAP044 is skipped with a warning
        trials = load_liebana2025(args.data, mice=args.mice)
    summary = {"variant": args.variant, **{k: list(x) if isinstance(x, tuple) else x for k, x in v.items()},
               "n_mice": int(trials["mouse"].nunique()), "n_trials": int(len(trials)),
               "machine": f"{platform.machine()} {platform.processor() or ''}".strip()
               + f", {os.cpu_count()} cores, torch/numba threads {args.threads}",
               "copies": args.copies, "seed": args.seed, "load_1min": {"start": load_avg()}}
    print(f"{summary['n_mice']} mice, {summary['n_trials']} trials; {summary['machine']}; load {load_avg()}",
          flush=True)

    params_path, weights_path = args.out / "noisy_params.csv", args.out / "noisy_weights.parquet"
    if args.fit_from is not None:
        src = args.fit_from
        if not (src / "noisy_params.csv").is_file() or not (src / "noisy_weights.parquet").is_file():
            p.error(f"--fit-from: no noisy_params.csv / noisy_weights.parquet in {src}")
        params, weights = pd.read_csv(src / "noisy_params.csv"), pd.read_parquet(src / "noisy_weights.parquet")
        old = json.loads((src / "summary.json").read_text()) if (src / "summary.json").is_file() else {}
        if old.get("variant", args.variant) != args.variant:
            p.error(f"--fit-from: {src} holds a {old['variant']!r} fit, not --variant {args.variant}")
        summary["fit_from"] = str(src)
        for k in ("fit_seconds", "fit_load_1min"):
            if k in old:
                summary[k] = old[k]
        if src.resolve() != args.out.resolve():
            params.to_csv(params_path, index=False)
    else:
        t0 = time.perf_counter()
        limit = {} if args.max_outer is None else {"max_outer": args.max_outer}
        fit = fit_noisy(trials, threads=args.threads, **limit, **v)
        summary["fit_seconds"] = round(time.perf_counter() - t0, 1)
        summary["load_1min"]["after_fit"] = load_avg()
        summary["fit_load_1min"] = {k: summary["load_1min"][k] for k in ("start", "after_fit")}
        params, weights = fit.params, fit.weights
        params.to_csv(params_path, index=False)
        write_parquet(weights, weights_path, dictionary=("mouse",))
        print(f"noisy fit: {summary['fit_seconds']} s, {int(params['converged'].sum())} / {len(params)} converged",
              flush=True)
    summary["converged"] = int(params["converged"].sum())
    if "start" in params:
        summary["start_kept"] = params["start"].value_counts().to_dict()

    # labels: the trust bench's definition on the noisy fit's P(R)
    labels, _ = noisy_labels(trials, params, weights, encoding=v["encoding"])
    labels = labels.dropna(subset=["learner_side_data"])
    agree = labels["learner_side_data"] == labels["learner_side_model"]
    summary["label_agreement"] = float(agree.mean())
    summary["label_agreement_count"] = f"{int(agree.sum())} / {len(agree)}"
    summary["label_misses"] = {r.mouse: f"data {r.learner_side_data} ({r.late_slope_diff_data:+.3f}), model "
                               f"{r.learner_side_model} ({r.late_slope_diff_model:+.3f})"
                               for r in labels[~agree].itertuples()}
    print(f"labels: model = data for {summary['label_agreement_count']} mice", flush=True)
    # the same labels from the fit's learning rule alone (sigma = 0, teacher-forced, causal): what the noise adds
    rule, _ = noisy_labels(trials, params, rule_only_weights(trials, params, weights, **model), encoding=v["encoding"])
    rule = rule.dropna(subset=["learner_side_data"])
    agree_rule = rule["learner_side_data"] == rule["learner_side_model"]
    summary["label_agreement_rule_only"] = float(agree_rule.mean())
    summary["label_agreement_rule_only_count"] = f"{int(agree_rule.sum())} / {len(agree_rule)}"
    labels = labels.merge(rule[["mouse", "learner_side_model", "late_slope_diff_model"]].rename(
        columns=lambda c: c if c == "mouse" else f"{c}_rule_only"), on="mouse", how="left")
    print(f"labels, learning rule alone (sigma = 0, teacher-forced): {summary['label_agreement_rule_only_count']}",
          flush=True)

    per_mouse = params.drop(columns=[c for c in ("n_outer", "fit_seconds") if c in params]).merge(
        labels, on="mouse", how="left")
    for tag, off in (("noise", False), ("noise_off", True)):
        t0 = time.perf_counter()
        check = check_noisy(trials, params, weights, n_copies=args.copies, seed=args.seed, noise_off=off, **model)
        summary[f"check_{tag}_seconds"] = round(time.perf_counter() - t0, 1)
        summary[f"check_{tag}"] = check.summary
        summary["load_1min"][f"after_check_{tag}"] = load_avg()
        check.per_session.to_csv(args.out / f"per_session_{tag}.csv", index=False)
        if not off:
            check.copies.to_csv(args.out / f"copies_{tag}.csv", index=False)
        cols = [c for c in check.per_mouse.columns if c != "mouse"]
        per_mouse = per_mouse.merge(check.per_mouse.rename(columns={c: f"{c}_{tag}" for c in cols}), on="mouse",
                                    how="left")
        print(f"check ({tag}): {summary[f'check_{tag}_seconds']} s, " + ", ".join(
            f"{k} {val:.3f}" if isinstance(val, float) else f"{k} {val}" for k, val in check.summary.items()),
            flush=True)

    if args.baseline:
        summary["baseline"] = baseline(trials, args.copies, args.seed)
        summary["load_1min"]["after_baseline"] = load_avg()
    summary["targets"] = TARGETS
    c = summary["check_noise"]
    summary["targets_met"] = {"session_coverage": c["session_coverage"] >= TARGETS["session_coverage"],
                              "late_slope_inside": c["late_slope_inside"] >= TARGETS["late_slope_inside"],
                              "side_match": c["side_match"] >= TARGETS["side_match"],
                              "label_agreement": summary["label_agreement"] >= TARGETS["label_agreement"]}
    per_mouse.to_csv(args.out / "per_mouse.csv", index=False)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))
    return 0


def baseline(trials, copies: int, seed: int) -> dict:
    """The trust bench's labels and check of the deterministic default fit (restart seed 0), as
    ``bench/fit_real_mice.py --trust`` computes them (check seed ``seed``)."""
    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.checks import check_fit
    from mouse_rl.fit.labels import strategy_labels

    t0 = time.perf_counter()
    res = fit_mice(trials, seed=0)
    per_mouse, _ = strategy_labels(res.trials, res.params)
    sides = per_mouse.dropna(subset=["learner_side_data"])
    check = check_fit(res, trials, n_copies=copies, seed=seed)
    agree = sides["learner_side_data"] == sides["learner_side_model"]
    out = {"seconds": round(time.perf_counter() - t0, 1), "label_agreement": float(agree.mean()),
           "label_agreement_count": f"{int(agree.sum())} / {len(agree)}", **check.summary}
    print(f"baseline (deterministic default fit): {out}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
