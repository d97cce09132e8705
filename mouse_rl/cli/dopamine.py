"""``mouse-rl dopamine TRIALS [--recordings REC] --out DIR``: model dopamine read-outs (and regression)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..dopamine._common import DELTAS, Q_COLUMNS, REWARD_MODES
from ..dopamine.readouts import DEFAULT_GAIN_THRESHOLD
from ..dopamine.regression import NULLS
from .options import add_reward_rule_option


def add_parser(sub) -> None:
    p = sub.add_parser("dopamine", help="model dopamine read-outs; regress recordings on the model deltas",
                       description=__doc__.splitlines()[0])
    p.add_argument("trials", type=Path, help="trial table with model columns (.parquet or .csv)")
    p.add_argument("--recordings", type=Path, help="per-trial dopamine table (da_* columns)")
    p.add_argument("--weights", type=Path,
                   help="per-session weight snapshots (default: TRIALS.weights.parquet beside TRIALS if present)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--bins", type=int, default=5, help="sessions per stage bin (default %(default)s)")
    p.add_argument("--gain-threshold", type=float, default=DEFAULT_GAIN_THRESHOLD,
                   help="cortical gain above which a stimulus is associated (default %(default)s)")
    p.add_argument("--reward-mode", choices=REWARD_MODES, default="experienced",
                   help="deltas from the reward received (default) or the logged learning signals")
    p.add_argument("--normalise", action="store_true", help="normalise recordings per session first")
    p.add_argument("--n-null", type=int, default=100, help="null draws per regression (default %(default)s)")
    p.add_argument("--null", choices=NULLS, default="sessions",
                   help="null of the regression: permuted session blocks (default) or circular shifts")
    p.add_argument("--seed", type=int, default=0)
    add_reward_rule_option(p)
    p.set_defaults(func=run)


#: Most null draws per regression.
MAX_NULL = 100_000


def _check_options(args) -> None:
    import math

    if args.bins < 1:
        raise ValueError(f"--bins: must be >= 1 (sessions per stage bin), got {args.bins}")
    if args.n_null < 0:
        raise ValueError(f"--n-null: must be >= 0 (null draws per regression; 0 = none), got {args.n_null}")
    if args.n_null > MAX_NULL:
        raise ValueError(f"--n-null: must be <= {MAX_NULL:,} (p-values to 1e-5; more only takes longer), "
                         f"got {args.n_null}")
    if args.recordings is None:
        ignored = [flag if value is True else f"{flag} {value}" for flag, value, unused in  # --n-null 0 (no null draws) is harmless
                   (("--normalise", args.normalise, (False,)), ("--n-null", args.n_null, (0, 100)),
                    ("--null", args.null, ("sessions",))) if value not in unused]
        if ignored:
            raise ValueError(f"{ignored[0]}: applies to the regression on --recordings, so it would be ignored "
                             "without them; give --recordings FILE or drop it")
    if not (math.isfinite(args.gain_threshold) and args.gain_threshold > 0):
        raise ValueError(f"--gain-threshold: must be a finite cortical gain > 0, got {args.gain_threshold}")


def read_trials_table(path: Path, reward_rule: str = "stimulus"):
    """The dopamine command's trial table: read and validated (schema, model columns finite) at the boundary."""
    from ..data import validate_trials
    from ..data.files import read_table_file
    from ..data.validation import DataFormatError

    table = read_table_file(path, "trial table")
    if len(table) == 0:
        raise DataFormatError(f"{path}: no trials (the table has no rows)")
    required = ["mouse", "session", "trial", "signed_contrast", "choice", "reward"] + Q_COLUMNS + list(DELTAS)
    return validate_trials(table, str(path), required=required, reward_rule=reward_rule)


def read_weights_table(path: Path):
    """Per-session weight snapshots, read and validated."""
    from ..data.files import read_table_file
    from ..data.validation import validate_weights

    return validate_weights(read_table_file(path, "weights table"), str(path))


def run(args: argparse.Namespace) -> int:
    from mouse_rl.dopamine import (
        load_recordings, plot_delta_over_sessions, plot_delta_vs_contrast, readout_table,
        regress_recordings, summarise_readouts,
    )

    from ..outputs import OutputSet

    _check_options(args)
    trials = read_trials_table(args.trials, args.reward_rule)
    weights_path = args.weights or args.trials.with_suffix(".weights.parquet")
    weights = read_weights_table(weights_path) if (args.weights or weights_path.exists()) else None
    rec = load_recordings(args.recordings, trials=trials) if args.recordings is not None else None
    table = readout_table(trials, weights, reward_mode=args.reward_mode, bins=args.bins,
                          gain_threshold=args.gain_threshold)
    report = None
    if rec is not None:
        report = regress_recordings(trials, rec, reward_mode=args.reward_mode, normalise=args.normalise,
                                    n_null=args.n_null, null=args.null, seed=args.seed)
    out = args.out
    with OutputSet(out, meta={"command": "dopamine"}) as outputs:
        table.to_parquet(outputs.path("readouts.parquet"), index=False)
        summarise_readouts(table).to_csv(outputs.path("readout_summary.csv"), index=False)
        summarise_readouts(table, by=("session", "association")).to_csv(
            outputs.path("readout_by_association.csv"), index=False)
        plot_delta_vs_contrast(table).savefig(outputs.path("delta_vs_contrast.png"), dpi=120, format="png")
        plot_delta_over_sessions(table).savefig(outputs.path("delta_over_sessions.png"), dpi=120, format="png")
        if report is not None:
            report.scores.to_csv(outputs.path("regression_scores.csv"), index=False)
            report.best.to_csv(outputs.path("regression_best.csv"), index=False)
            report.gains.to_csv(outputs.path("regression_gains.csv"), index=False)
            report.summary.to_csv(outputs.path("regression_summary.csv"), index=False)
    if report is not None:
        print(report.summary.to_string(index=False))
    print(f"wrote {', '.join(f.name for f in outputs.files)} to {out}")
    return 0
