"""``mouse-rl demo``: a small simulated cohort end to end, on built-in defaults."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import analysis
from ..params import ModelParams
from ..simulate import simulate_cohort
from ..theory import mean_field_trajectory

SIDES = (("left", "p_right_left", "tab:blue"), ("zero", "p_right_zero", "0.4"), ("right", "p_right_right", "tab:red"))


def theory_overlay(sessions, params: ModelParams, n_sessions: int) -> Figure:
    """Cohort-mean P(R | stimulus side) per session (solid) with the mean-field prediction (dashed)."""
    theory = mean_field_trajectory(params, n_sessions=n_sessions, record_every=None, trials_per_step=20)
    predicted = theory.session_p_right_side()[0]
    observed = sessions.groupby("session")[[col for _, col, _ in SIDES]].mean()
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(1, n_sessions + 1)
    for j, (side, col, colour) in enumerate(SIDES):
        ax.plot(observed.index, observed[col], "-", color=colour, label=f"simulated cohort, {side}")
        ax.plot(x, predicted[:, j], "--", color=colour, label=f"theory, {side}")
    ax.set(xlabel="session", ylabel="P(choose Right | stimulus)", ylim=(0, 1),
           title="cohort mean (solid) vs mean-field theory (dashed)")
    ax.legend(fontsize=7, ncol=2)
    return fig


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
        "theory_vs_cohort.png": theory_overlay(sessions, ModelParams(), args.sessions),
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
