"""``mouse-rl demo``: a small simulated cohort end to end, on built-in defaults."""
from __future__ import annotations

from pathlib import Path

from .. import analysis
from ..params import ModelParams
from ..simulate import simulate_cohort


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="simulate a small cohort, print a summary, write plots and a report")
    p.add_argument("--out", type=Path, default=Path("mouse_rl_demo"), help="output folder (default %(default)s)")
    p.add_argument("--mice", type=int, default=30, help="cohort size (default %(default)s)")
    p.add_argument("--sessions", type=int, default=25, help="sessions (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"Simulating {args.mice} mice x {args.sessions} sessions x 220 trials (MODEL.md defaults) ...")
    result = simulate_cohort(args.mice, args.sessions, params=ModelParams(), seed=args.seed, progress=True)
    result.to_parquet(out / "cohort.parquet")
    sessions = analysis.session_metrics(result.trials)
    summary = sessions.groupby("session")[["accuracy", "bias", "left_slope", "right_slope"]].mean()
    print("\nCohort mean per session (accuracy on c != 0; bias = P(R|0) - 0.5):")
    print(summary.round(3).to_string())
    figures = {
        "learning_curves.png": analysis.plot_learning_curves(sessions),
        "psychometrics.png": analysis.plot_psychometrics(result.trials),
    }
    if args.sessions >= 8:
        early_late = analysis.early_late_metrics(sessions)
        figures["early_bias_vs_late_slope.png"] = analysis.plot_early_late(early_late)
        sides = early_late.learner_side.value_counts().reindex(["left", "balanced", "right"], fill_value=0)
        print(f"\nLearner sides (late right-minus-left slope): {sides.to_dict()}")
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=120)
    print(f"\nWrote {out / 'cohort.parquet'} and {', '.join(figures)} to {out}/")
    return 0
