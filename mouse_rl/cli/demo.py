"""``mouse-rl demo``: a small simulated cohort end to end, on built-in defaults."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import analysis
from ..analysis.metrics import LEARNER_SIDES
from ..examples import EXAMPLE_TRUTH, load_example_mouse
from ..outputs import OutputSet
from ..params import ModelParams
from ..simulate import simulate_cohort
from ..theory import mean_field_trajectory
from ..theory.plots import STIMULUS_SIDE_COLORS
from .limits import check_cohort_size


def theory_overlay(sessions, params: ModelParams, n_sessions: int) -> Figure:
    """Cohort-mean P(R | stimulus side) per session (solid) with the mean-field cohort prediction (dashed)."""
    theory = mean_field_trajectory(params, n_sessions=n_sessions, record_every=None, closure="unscented")
    predicted = theory.session_p_right_side()[0]
    columns = {side: f"p_right_{side}" for side in STIMULUS_SIDE_COLORS}
    observed = sessions.groupby("session")[list(columns.values())].mean()
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(1, n_sessions + 1)
    for j, (side, colour) in enumerate(STIMULUS_SIDE_COLORS.items()):
        ax.plot(observed.index, observed[columns[side]], "-", color=colour, label=f"simulated cohort, {side}")
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
    p.add_argument("--no-fit", dest="fit", action="store_false", help="skip fitting the example mouse")
    p.set_defaults(func=run)


def fit_example(out: Path):
    """Fit the bundled synthetic example mouse; return (truth-vs-fit table, figure)."""
    from ..fit import fit_mice
    from ..fit.plots import plot_mouse_fit

    print("\nFitting the bundled example mouse (data/example_mouse.parquet, 12 sessions) by exact likelihood ...")
    fit = fit_mice(load_example_mouse(), n_restarts=1, max_iter=25, fit_lapse=False, progress=True)
    fitted = fit.params.iloc[0]
    names = list(fit.transform.free)
    table = pd.DataFrame({"true": [EXAMPLE_TRUTH[n] for n in names], "fitted": [fitted[n] for n in names],
                          "std_error": [fitted.get(f"se_{n}") for n in names]}, index=names)
    fit.params.to_csv(out / "example_fit.csv", index=False)
    print(table.round(4).to_string())
    print(f"log-likelihood {fitted.loglik:.1f} over {int(fitted.n_trials)} trials ({fitted.bits_per_trial:.3f} bits/trial)")
    return table, plot_mouse_fit(fit.trials)


def write_report(out: Path, summary: pd.DataFrame, figures: dict, fit_table: pd.DataFrame | None) -> Path:
    """A one-page HTML report that embeds the demo's figures."""
    parts = ["<html><head><meta charset='utf-8'><title>mouse_rl demo</title></head><body>",
             "<h1>mouse_rl demo</h1>",
             "<h2>Simulated cohort: mean per session</h2>", summary.round(3).to_html()]
    if fit_table is not None:
        parts += ["<h2>Example mouse: true vs fitted parameters</h2>", fit_table.round(4).to_html()]
    for name in figures:
        parts.append(f"<h3>{html.escape(name)}</h3><img src='{html.escape(name)}' style='max-width:720px'>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def run(args) -> int:
    out = args.out
    check_cohort_size(args.mice, args.sessions, 220, options=("--mice", "--sessions", "trials per session"))
    out.mkdir(parents=True, exist_ok=True)
    outputs = OutputSet(out, meta={"command": "demo"})  # `outputs / name`: written as one set at the end
    print(f"Simulating {args.mice} mice x {args.sessions} sessions x 220 trials (mouse_rl/MODEL.md defaults) ...")
    result = simulate_cohort(args.mice, args.sessions, params=ModelParams(), seed=args.seed, progress=True)
    result.trials.to_parquet(outputs / "cohort.parquet", index=False)
    result.weights.to_parquet(outputs / "cohort.weights.parquet", index=False)
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
        sides = early_late.learner_side.value_counts().reindex(list(LEARNER_SIDES), fill_value=0)
        print(f"\nLearner sides (late right-minus-left slope): {sides.to_dict()}")
        if len(early_late) >= 3:
            from ..analysis.metrics import PAPER_COHORT_R

            corr = analysis.cohort_correlations(early_late)
            print("Cohort relations: " + "; ".join(
                f"r({r.x}, {r.y}) = {r.r:+.2f} (paper {PAPER_COHORT_R[r.x, r.y]:+.2f})" for r in corr.itertuples()))
    fit_table = None
    if args.fit:
        fit_table, figures["example_mouse_fit.png"] = fit_example(outputs)
    for name, fig in figures.items():
        fig.savefig(outputs / name, dpi=120, format="png")
    write_report(outputs, summary, figures, fit_table)
    outputs.commit()
    print(f"\nWrote {out / 'cohort.parquet'}, {', '.join(figures)} and report.html to {out}/")
    return 0
