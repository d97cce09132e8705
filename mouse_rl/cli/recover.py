"""``mouse-rl recover``: parameter recovery of the network fit on simulated mice."""
from __future__ import annotations

import warnings
from pathlib import Path

from ..fit.fitting import METHODS
from ..fit.likelihood import ENGINES
from ..fit.recovery import RECOVERY_FREE
from ..params import check_names
from ..outputs import OutputSet
from .limits import check_cohort_size


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("recover", help="simulate mice with known parameters, fit them, report recovery",
                              description=__doc__)
    p.add_argument("--mice", type=int, default=30, help="simulated mice (default %(default)s)")
    p.add_argument("--sessions", type=int, default=8, help="sessions per mouse (default %(default)s)")
    p.add_argument("--trials", type=int, default=150, help="trials per session (default %(default)s)")
    p.add_argument("--free", nargs="+", default=list(RECOVERY_FREE),
                   help="parameters drawn per mouse and fitted; others fixed at defaults (default %(default)s)")
    p.add_argument("--restarts", type=int, default=4, help="starts per mouse (default %(default)s)")
    p.add_argument("--max-iter", type=int, default=100, help="iterations per start (default %(default)s)")
    p.add_argument("--method", choices=METHODS, default="newton",
                   help="optimiser (default %(default)s: per-mouse trust-region Newton, see `mouse-rl fit`)")
    p.add_argument("--engine", choices=ENGINES, default="eager",
                   help="torch unroll of the lbfgs/adam fits (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="optional folder for recovery.csv and recovery.png")
    p.set_defaults(func=run)


def _check_options(args) -> None:
    """Everything the run needs, checked before the simulation and the fit start."""
    for option, value, minimum in (("--mice", args.mice, 3), ("--sessions", args.sessions, 1),
                                   ("--trials", args.trials, 1), ("--restarts", args.restarts, 1),
                                   ("--max-iter", args.max_iter, 1)):
        if value < minimum:
            raise ValueError(f"{option}: must be >= {minimum}, got {value}")
    if args.method == "newton" and args.engine != "eager":
        raise ValueError(f"--engine {args.engine}: applies to --method lbfgs/adam (the Newton fit has no torch "
                         "unroll), so it would be ignored; drop it or add --method lbfgs")
    check_names(args.free, "--free")
    check_cohort_size(args.mice, args.sessions, args.trials, fit_restarts=args.restarts)


def run(args) -> int:
    from ..fit.recovery import parameter_recovery

    _check_options(args)
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):  # a NaN correlation is reported below, in words
        result = parameter_recovery(args.mice, args.sessions, args.trials, tuple(args.free), seed=args.seed,
                                    n_restarts=args.restarts, max_iter=args.max_iter, method=args.method,
                                    engine=args.engine, device=args.device, progress=True)
    summary, table = result.summary, result.table
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    undefined = summary.loc[summary["pearson_r"].isna(), "parameter"].tolist()
    if undefined:
        warnings.warn(f"pearson_r is undefined (NaN) for {undefined}: true or fitted values do not vary across "
                      "mice; try more --mice, --sessions or --max-iter", UserWarning, stacklevel=1)
    if args.out is not None:
        from matplotlib.figure import Figure

        names = list(args.free)
        fig = Figure(figsize=(3.2 * len(names), 3.2), layout="constrained")
        for ax, n in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
            ax.plot(table[f"{n}_true"], table[f"{n}_fit"], "o", ms=4)
            lo, hi = table[[f"{n}_true", f"{n}_fit"]].min().min(), table[[f"{n}_true", f"{n}_fit"]].max().max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set(xlabel=f"true {n}", ylabel=f"fitted {n}")
        with OutputSet(args.out, meta={"command": "recover"}) as outputs:
            table.to_csv(outputs.path("recovery.csv"), index=False)
            summary.to_csv(outputs.path("recovery_summary.csv"), index=False)
            fig.savefig(outputs.path("recovery.png"), dpi=110, format="png")
        print(f"wrote {args.out / 'recovery.csv'}")
    return 0
