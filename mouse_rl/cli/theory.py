"""``mouse-rl theory``: predicted (mean-field) learning trajectory, plot and stage sequence."""
from __future__ import annotations

from pathlib import Path

from ..outputs import OutputSet, marker_for_file
from ..theory.mean_field import CLOSURES
from .limits import check_theory_size
from .options import add_model_options, add_task_options, model_params, task_config


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("theory", help="mean-field theory: predicted trajectory and strategy stages",
                              description=__doc__)
    add_model_options(p)
    add_task_options(p)
    p.add_argument("--sessions", type=int, default=25, help="number of sessions (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output table FILE.parquet (a PNG is written beside it)")
    p.add_argument("--per", choices=["session", "trial"], default="session",
                   help="rows of the table: one per session (default) or per trial")
    p.add_argument("--closure", choices=CLOSURES, default="unscented",
                   help="'unscented' (default): the mean of a simulated cohort (mean-field mean and covariance); "
                        "'none': the plain mean-field map (one noise-free mouse)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from matplotlib.figure import Figure

    from ..theory import mean_field_trajectory, predict_stages
    from ..theory.plots import plot_trajectory

    if args.sessions < 1:
        raise ValueError(f"--sessions: must be >= 1, got {args.sessions}")
    if args.out.suffix != ".parquet":
        raise ValueError(f"--out: must end in .parquet, got {args.out}")
    params, task = model_params(args), task_config(args)
    check_theory_size(args.sessions, task.trials_per_session, args.per)
    every = 1 if args.per == "trial" else task.trials_per_session
    res = mean_field_trajectory(params, task, args.sessions, device=args.device, record_every=every,
                                closure=args.closure)
    table = res.to_frame() if args.per == "trial" else res.session_frame()
    stages = predict_stages(params, task, n_sessions=args.sessions, device=args.device)
    png = args.out.with_suffix(".png")
    with OutputSet(args.out.parent, marker=marker_for_file(args.out), meta={"command": "theory"}) as outputs:
        table.to_parquet(outputs.path(args.out.name), index=False)
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        plot_trajectory(res, ax)
        ax.legend(fontsize=8)
        ax.set_title(f"mean-field prediction, closure={args.closure} (w0={params.w0}, b_R={params.b_R})")
        fig.savefig(outputs.path(png.name), dpi=120, bbox_inches="tight", format="png")
    seq = " -> ".join(f"{r.strategy_name} ({r.n_sessions:.1f} sessions)" for r in stages.itertuples())
    print(f"predicted stages: {seq}")
    print(f"wrote {args.out} and {png}")
    return 0
