"""``mouse-rl forecast DATA --out DIR``: animal-holdout forecasts of each mouse's final sessions.

Mice (sorted by id) go to --folds folds round-robin. In each fold the other mice are the
reference cohort (their first --context and final --horizon sessions observed); each mouse of
the fold contributes only its first --context sessions and is scored on its final --horizon
sessions. Models: pooled logistic GLMs (psychometric, late-phase, early-bias), PsyTrack carried
forward, and tabular Q-learning, the shallow network and the network with a population prior
from the reference cohort and a predictive through the unobserved sessions; on request
(--models ... network_freerun) the network fitted by its free-running behaviour on the context, and
(--models ... network_drift) the network whose copies drift overnight, the drift sds (--drift-bias,
--drift-stim) chosen per fold on the reference cohort's horizons (--drift-select).
"""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from ..forecast import MODELS
    from ..forecast.drift import DEFAULT_GRID, SELECT
    from ..forecast.protocol import OPTIONAL_MODELS

    p = subparsers.add_parser("forecast", help="forecast each mouse's final sessions from its first ones "
                                               "(animal-holdout folds, every model)", description=__doc__)
    p.add_argument("data", nargs="+", type=Path,
                   help="trial files or folders (liebana2025 folder, .npy, .parquet, .csv); concatenated")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--mice", nargs="+", default=None, help="only these mice")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS) + list(OPTIONAL_MODELS),
                   metavar="MODEL", help=f"models to compare (default: {' '.join(MODELS)}; also "
                   f"{' '.join(OPTIONAL_MODELS)}: the network fitted by its free-running behaviour; the network with "
                   "overnight drift of its copies)")
    p.add_argument("--folds", type=int, default=5, help="folds of mice (default %(default)s)")
    p.add_argument("--context", type=int, default=8, help="observed first sessions (default %(default)s)")
    p.add_argument("--horizon", type=int, default=5, help="scored final sessions (default %(default)s)")
    p.add_argument("--copies", type=int, default=100,
                   help="parameter draws x free-running copies per mouse (default %(default)s)")
    p.add_argument("--restarts", type=int, default=4, help="starts per mouse of the network fits (default %(default)s)")
    p.add_argument("--em-iter", type=int, default=4, help="EM iterations of the population fits (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    for group, what in (("bias", "the constant channel"), ("stim", "the six stimulus weights")):
        p.add_argument(f"--drift-{group}", type=float, nargs="+", default=None, metavar="SD",
                       help=f"network_drift: overnight log-weight sds of {what} to try, chosen per fold on "
                       "the reference horizons (default " + " ".join(map(str, DEFAULT_GRID[group])) + ")")
    p.add_argument("--drift-select", choices=list(SELECT), default="own",
                   help="network_drift: the reference horizon score that picks the sds (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the figures")
    p.set_defaults(func=run)


def check_eligible(trials, folds: int, context: int, horizon: int) -> None:
    """Refuse --folds / --context / --horizon that leave fewer eligible mice than folds (named with the counts)."""
    sessions = trials.groupby("mouse")["session"].nunique()
    need = context + horizon + 1
    eligible = int((sessions >= need).sum())
    if eligible < folds:
        raise ValueError(
            f"--folds {folds} needs at least {folds} mice with >= {need} sessions (--context {context} + "
            f"--horizon {horizon} + a gap of 1), but only {eligible} of {len(sessions)} mice have that many "
            f"(most sessions: {int(sessions.max()) if len(sessions) else 0}); lower --context/--horizon/--folds "
            "or add mice")


def drift_grid(args) -> dict | None:
    """``network_drift``'s grid from --drift-bias / --drift-stim (None: the default grid)."""
    from ..forecast.drift import DEFAULT_GRID

    if args.drift_bias is None and args.drift_stim is None:
        return None
    return {g: getattr(args, f"drift_{g}") or DEFAULT_GRID[g] for g in ("bias", "stim")}


def run(args) -> int:
    import json

    import matplotlib

    matplotlib.use("Agg")
    from ..forecast import run_forecast
    from ..forecast.plots import forecast_figures
    from ..outputs import OutputSet
    from .fit import load_many

    for name, value, low in (("--folds", args.folds, 2), ("--context", args.context, 1),
                             ("--horizon", args.horizon, 1), ("--copies", args.copies, 1),
                             ("--restarts", args.restarts, 1), ("--em-iter", args.em_iter, 0)):
        if value < low:
            raise ValueError(f"{name}: must be >= {low}, got {value}")
    for group in ("bias", "stim"):
        bad = [v for v in getattr(args, f"drift_{group}") or () if not (v >= 0 and v < float("inf"))]
        if bad:
            raise ValueError(f"--drift-{group}: sds must be finite and >= 0, got {bad[0]}")
    if "network_drift" not in args.models:
        unused = [flag for flag, v in (("--drift-bias", args.drift_bias), ("--drift-stim", args.drift_stim),
                                       ("--drift-select", None if args.drift_select == "own" else 1)) if v is not None]
        if unused:
            raise ValueError(f"{unused[0]}: applies to --models network_drift, so it would be ignored")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out: {str(args.out)!r} exists and is not a folder")
    trials = load_many(args.data, args.mice, single_block_option=None)
    check_eligible(trials, args.folds, args.context, args.horizon)
    from .limits import check_copies_size

    check_copies_size(len(trials), args.copies)
    res = run_forecast(trials, models=args.models, n_folds=args.folds, n_context=args.context,
                       n_horizon=args.horizon, n_copies=args.copies, n_restarts=args.restarts,
                       em_iter=args.em_iter, seed=args.seed, progress=not args.quiet,
                       drift_grid=drift_grid(args), drift_select=args.drift_select)
    with OutputSet(args.out, meta={"command": "forecast"}) as outputs:
        res.predictions.to_parquet(outputs.path("forecast_predictions.parquet"), index=False)
        res.scores.to_csv(outputs.path("forecast_scores.csv"), index=False)
        res.summary.to_csv(outputs.path("forecast_summary.csv"), index=False)
        res.reliability.to_csv(outputs.path("forecast_reliability.csv"), index=False)
        res.folds.to_csv(outputs.path("forecast_folds.csv"), index=False)
        outputs.path("forecast_options.json").write_text(json.dumps({**res.options, "models": args.models,
                                                                     "excluded": res.excluded}, indent=1))
        if args.plots:
            for name, fig in forecast_figures(res.predictions, res.scores, res.summary).items():
                fig.savefig(outputs.path(f"forecast_{name}.png"), dpi=110, format="png")
    if res.excluded:
        print(f"excluded (fewer than {args.context + args.horizon + 1} sessions): {', '.join(res.excluded)}")
    print(res.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {args.out}")
    return 0
