"""``mouse-rl theory``: predicted (mean-field) learning trajectory, plot and stage sequence."""
from __future__ import annotations

from pathlib import Path

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
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..theory import mean_field_trajectory, predict_stages
    from ..theory.plots import plot_trajectory

    if args.sessions < 1:
        raise ValueError(f"--sessions: must be >= 1, got {args.sessions}")
    if args.out.suffix != ".parquet":
        raise ValueError(f"--out: must end in .parquet, got {args.out}")
    params, task = model_params(args), task_config(args)
    every = 1 if args.per == "trial" else task.trials_per_session
    res = mean_field_trajectory(params, task, args.sessions, device=args.device, record_every=every)
    table = res.to_frame() if args.per == "trial" else res.session_frame()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_trajectory(res, ax)
    ax.legend(fontsize=8)
    ax.set_title(f"mean-field prediction (w0={args.w0}, b_R={args.b_R})")
    png = args.out.with_suffix(".png")
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    stages = predict_stages(params, task, n_sessions=args.sessions, device=args.device)
    seq = " -> ".join(f"{r.strategy_name} ({r.n_sessions:.1f} sessions)" for r in stages.itertuples())
    print(f"predicted stages: {seq}")
    print(f"wrote {args.out} and {png}")
    return 0
