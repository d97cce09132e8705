"""``mouse-rl recover``: parameter recovery of the network fit on simulated mice."""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("recover", help="simulate mice with known parameters, fit them, report recovery",
                              description=__doc__)
    p.add_argument("--mice", type=int, default=30, help="simulated mice (default %(default)s)")
    p.add_argument("--sessions", type=int, default=8, help="sessions per mouse (default %(default)s)")
    p.add_argument("--trials", type=int, default=150, help="trials per session (default %(default)s)")
    p.add_argument("--free", nargs="+", default=["eta", "beta", "b_L", "b_R"],
                   help="parameters drawn per mouse and fitted; others fixed at defaults (default %(default)s)")
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--max-iter", type=int, default=60)
    p.add_argument("--method", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--engine", choices=["eager", "compile"], default="eager")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="optional folder for recovery.csv and recovery.png")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fit.recovery import parameter_recovery

    if args.mice < 3 or args.sessions < 1 or args.trials < 1:
        raise ValueError("need --mice >= 3, --sessions >= 1, --trials >= 1")
    summary, table, fit = parameter_recovery(args.mice, args.sessions, args.trials, tuple(args.free), seed=args.seed,
                                             n_restarts=args.restarts, max_iter=args.max_iter, method=args.method,
                                             engine=args.engine, device=args.device, progress=True)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "recovery.csv", index=False)
        summary.to_csv(args.out / "recovery_summary.csv", index=False)
        names = list(args.free)
        fig = Figure(figsize=(3.2 * len(names), 3.2), layout="constrained")
        for ax, n in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
            ax.plot(table[f"{n}_true"], table[f"{n}_fit"], "o", ms=4)
            lo, hi = table[[f"{n}_true", f"{n}_fit"]].min().min(), table[[f"{n}_true", f"{n}_fit"]].max().max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set(xlabel=f"true {n}", ylabel=f"fitted {n}")
        fig.savefig(args.out / "recovery.png", dpi=110)
        print(f"wrote {args.out / 'recovery.csv'}")
    return 0
