"""``mouse-rl dopamine TRIALS [--recordings REC] --out DIR``: model dopamine read-outs (and regression)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("dopamine", help="model dopamine read-outs; regress recordings on the model deltas",
                       description=__doc__.splitlines()[0])
    p.add_argument("trials", type=Path, help="trial table with model columns (.parquet or .csv)")
    p.add_argument("--recordings", type=Path, help="per-trial dopamine table (da_* columns)")
    p.add_argument("--weights", type=Path,
                   help="per-session weight snapshots (default: TRIALS.weights.parquet beside TRIALS if present)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--bins", type=int, default=5, help="sessions per stage bin (default %(default)s)")
    p.add_argument("--gain-threshold", type=float, default=None, help="cortical gain above which a stimulus is associated")
    p.add_argument("--reward-mode", choices=["experienced", "model"], default="experienced")
    p.add_argument("--normalise", action="store_true", help="normalise recordings per session first")
    p.add_argument("--n-null", type=int, default=100, help="null draws per regression (default %(default)s)")
    p.add_argument("--null", choices=["sessions", "circular"], default="sessions")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _read(path: Path):
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)


def run(args: argparse.Namespace) -> int:
    from mouse_rl.dopamine import (
        DEFAULT_GAIN_THRESHOLD, load_recordings, plot_delta_over_sessions, plot_delta_vs_contrast, readout_table,
        regress_recordings, summarise_readouts,
    )

    trials = _read(args.trials)
    weights_path = args.weights or args.trials.with_suffix(".weights.parquet")
    weights = _read(weights_path) if (args.weights or weights_path.exists()) else None
    table = readout_table(trials, weights, reward_mode=args.reward_mode, bins=args.bins,
                          gain_threshold=args.gain_threshold if args.gain_threshold is not None else DEFAULT_GAIN_THRESHOLD)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "readouts.parquet", index=False)
    summarise_readouts(table).to_csv(out / "readout_summary.csv", index=False)
    summarise_readouts(table, by=("session", "association")).to_csv(out / "readout_by_association.csv", index=False)
    plot_delta_vs_contrast(table).savefig(out / "delta_vs_contrast.png", dpi=120)
    plot_delta_over_sessions(table).savefig(out / "delta_over_sessions.png", dpi=120)
    written = ["readouts.parquet", "readout_summary.csv", "readout_by_association.csv", "delta_vs_contrast.png",
               "delta_over_sessions.png"]
    if args.recordings is not None:
        rec = load_recordings(args.recordings, trials=trials)
        report = regress_recordings(trials, rec, reward_mode=args.reward_mode, normalise=args.normalise,
                                    n_null=args.n_null, null=args.null, seed=args.seed)
        report.scores.to_csv(out / "regression_scores.csv", index=False)
        report.best.to_csv(out / "regression_best.csv", index=False)
        report.gains.to_csv(out / "regression_gains.csv", index=False)
        report.summary.to_csv(out / "regression_summary.csv", index=False)
        written += ["regression_scores.csv", "regression_best.csv", "regression_gains.csv", "regression_summary.csv"]
        print(report.summary.to_string(index=False))
    print(f"wrote {', '.join(written)} to {out}")
    return 0
