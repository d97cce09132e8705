"""Where the fitted network misses the mice's late behaviour (issue 10, "close the generative gap").

Per mouse, over its last 5 sessions (the late window of the learner side,
``mouse_rl.analysis.early_late_metrics``): the mean P(Right) on left-stimulus, zero-contrast and
right-stimulus trials, from the mouse's choices and from the fitted model's P(Right) on the same trials
(teacher-forced: the model learning from the mouse's own choices and rewards), and the late slope
difference of both. Then the learner-side label of choices drawn from the model's P(Right) on those
trials (``--draws`` times): whether the labels the fitted model misses are lost to the sampling noise of a
label read from choices, or to the model's expected behaviour.

    python bench/late_psychometric.py --out bench/results/late_psychometric
    python bench/late_psychometric.py --fit-skew --out bench/results/late_psychometric_skew

Writes ``per_mouse.csv`` and ``summary.json`` (with the machine and its load) under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

STIMULI = ("p_right_left", "p_right_zero", "p_right_right")


def late_means(sessions: pd.DataFrame, late_n: int) -> pd.DataFrame:
    """Per mouse, the mean of each P(Right) column over its last ``late_n`` sessions that have all three."""
    s = sessions.dropna(subset=list(STIMULI)).sort_values(["mouse", "session"])
    return s.groupby("mouse").tail(late_n).groupby("mouse")[list(STIMULI)].mean()


def leaning_away(side: pd.Series, p_right_zero: pd.Series) -> int:
    """How many one-sided mice (``side`` ``"left"`` / ``"right"``) have P(Right | zero contrast) on the other side
    of 0.5 (index-aligned Series)."""
    return int((((side == "right") & (p_right_zero < 0.5)) | ((side == "left") & (p_right_zero > 0.5))).sum())


def drawn_labels(fitted_trials: pd.DataFrame, draws: int, seed: int, side_threshold: float) -> pd.DataFrame:
    """Learner side and late slope difference of ``draws`` choice sets drawn from the model's P(Right)."""
    from mouse_rl.analysis import early_late_metrics, session_metrics

    rng = np.random.default_rng(seed)
    rows = []
    for d in range(draws):
        t = fitted_trials.assign(choice=(rng.random(len(fitted_trials)) < fitted_trials["p_right"]).astype(np.int64))
        for mouse, s in session_metrics(t).groupby("mouse"):
            el = early_late_metrics(s, side_threshold=side_threshold)
            rows.append({"mouse": str(mouse), "draw": d, "side": el["learner_side"].iloc[0],
                         "late_slope_diff": el["late_slope_diff"].iloc[0]})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "liebana2025")
    p.add_argument("--out", type=Path, default=Path("bench/results/late_psychometric"))
    p.add_argument("--fit-skew", action="store_true", help="fit stim_skew too (the --fit-skew option of mouse-rl fit)")
    p.add_argument("--fit-k", action="store_true", help="fit k too (the --fit-k option of mouse-rl fit)")
    p.add_argument("--seed", type=int, default=0, help="restart seed of the fit")
    p.add_argument("--draws", type=int, default=100, help="choice sets drawn from the model's P(Right)")
    p.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    args = p.parse_args(argv)
    if args.draws < 1:
        p.error(f"--draws: need at least 1, got {args.draws}")
    if args.threads < 1:
        p.error(f"--threads: need at least 1, got {args.threads}")
    from mouse_rl.cli.guards import check_out

    try:  # the CLI's --out check: not a file, not below a file, writable
        check_out(args.out, "folder")
    except ValueError as e:
        p.error(str(e))
    if not args.data.exists():
        p.error(f"--data: {str(args.data)!r} does not exist (the Liebana et al. 2025 folder)")

    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    from mouse_rl.analysis import session_metrics
    from mouse_rl.analysis.metrics import LEARNER_SIDE_THRESHOLD
    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit import DEFAULT_FREE, fit_mice
    from mouse_rl.fit.checks import LATE_SESSIONS
    from mouse_rl.fit.labels import strategy_labels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the malformed DAP044 is skipped with a warning
        trials = load_liebana2025(args.data)
    free = (*DEFAULT_FREE, *(("stim_skew",) if args.fit_skew else ()), *(("k",) if args.fit_k else ()))
    load = [os.getloadavg()[0]]
    t0 = time.perf_counter()
    fit = fit_mice(trials, free=free, seed=args.seed)
    seconds = time.perf_counter() - t0
    load.append(os.getloadavg()[0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sessions without zero-contrast trials: slopes by the other definition
        data = late_means(session_metrics(fit.trials), LATE_SESSIONS)
        model = late_means(session_metrics(fit.trials, use_model=True), LATE_SESSIONS)
        labels = strategy_labels(fit.trials, fit.params)[0].set_index("mouse")
        drawn = drawn_labels(fit.trials, args.draws, args.seed, LEARNER_SIDE_THRESHOLD)
    table = data.add_suffix("_data").join(model.add_suffix("_model"))
    table = table.join(labels[["learner_side_data", "learner_side_model", "late_slope_diff_data",
                               "late_slope_diff_model"]])
    g = drawn.groupby("mouse")
    table["learner_side_drawn_modal"] = g["side"].agg(lambda s: s.mode().iloc[0])
    table["share_drawn_as_data"] = g.apply(lambda d: float((d["side"] == table.loc[d.name, "learner_side_data"])
                                                           .mean()), include_groups=False)
    table["late_slope_diff_drawn_lo"] = g["late_slope_diff"].quantile(0.05)
    table["late_slope_diff_drawn_hi"] = g["late_slope_diff"].quantile(0.95)
    table = table.reset_index()
    ok = table["learner_side_data"].notna()
    t = table[ok]
    inside = (t["late_slope_diff_data"] >= t["late_slope_diff_drawn_lo"]) & \
             (t["late_slope_diff_data"] <= t["late_slope_diff_drawn_hi"])
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch/numba threads {args.threads}",
        "load_1min": load, "fit_seconds": round(seconds, 1), "free": list(free), "seed": args.seed,
        "draws": args.draws, "n_mice": int(ok.sum()),
        "mean_abs_error": {s: float((t[f"{s}_data"] - t[f"{s}_model"]).abs().mean()) for s in STIMULI},
        "mean_abs_from_half": {s: {"data": float((t[f"{s}_data"] - 0.5).abs().mean()),
                                   "model": float((t[f"{s}_model"] - 0.5).abs().mean())} for s in STIMULI},
        "mean_abs_late_slope_diff": {"data": float(t["late_slope_diff_data"].abs().mean()),
                                     "model": float(t["late_slope_diff_model"].abs().mean())},
        "zero_contrast_opposite_to_side": {
            "data": leaning_away(t["learner_side_data"], t["p_right_zero_data"]),
            "model": leaning_away(t["learner_side_data"], t["p_right_zero_model"]),
            "one_sided_mice": int(t["learner_side_data"].isin(["left", "right"]).sum())},
        "labels_agree_expected": int((t["learner_side_data"] == t["learner_side_model"]).sum()),
        "labels_agree_drawn_modal": int((t["learner_side_data"] == t["learner_side_drawn_modal"]).sum()),
        "labels_agree_drawn_expected": float(t["share_drawn_as_data"].sum()),
        "late_slope_diff_inside_drawn_band": int(inside.sum()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "per_mouse.csv", index=False)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
