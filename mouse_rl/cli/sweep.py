"""``mouse-rl sweep``: run a grid / random parameter sweep of simulated cohorts."""
from __future__ import annotations

from pathlib import Path

from ..sweep import BACKENDS, run_sweep
from ..sweep.backends import check_backend, import_ray
from ..sweep.config import load_config
from ..sweep.runner import RESULTS_NAME
from .common import resolve_device
from .guards import check_out
from .limits import check_cohort_size


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a parameter sweep from a TOML file; write one summary row per point",
        description="Expand CONFIG (a TOML sweep file) into points (parameters x seed), simulate each as one "
                    "batched cohort and write DIR/sweep_results.parquet (+ .csv). Finished points are "
                    "checkpointed in DIR/points/, so rerunning the same command resumes a killed sweep.",
    )
    p.add_argument("config", type=Path, help="sweep file (.toml)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: sweeps/<config name> in the current folder)")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="where points run (default %(default)s)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--workers", type=int, default=None,
                   help="local: worker processes (default sequential); ray: CPUs of a local Ray instance")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    out = args.out if args.out is not None else Path("sweeps") / args.config.stem
    check_out(out, "folder")
    if args.config.is_dir():
        raise ValueError(f"config: {str(args.config)!r} is a folder; give a sweep file (.toml)")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {args.workers}")
    if args.address is not None and args.backend != "ray":
        raise ValueError(f"--address {args.address}: applies to --backend ray, so it would be ignored with "
                         f"--backend {args.backend}; drop it or add --backend ray")
    config = load_config(args.config)
    check_backend(args.backend, args.address, args.workers)
    if args.backend == "ray":
        import_ray()  # an install hint now, not after the points are expanded
    at_once = args.workers if (args.backend == "local" and args.workers) else 1
    check_cohort_size(config.mice, config.sessions, config.trials, copies=at_once,
                      options=("sweep.mice", "sweep.sessions", "sweep.trials"))
    table = run_sweep(config, backend=args.backend, address=args.address, workers=args.workers,
                      out=out, device=resolve_device(args.device), progress=not args.quiet)
    print(f"wrote {len(table)} points to {out / (RESULTS_NAME + '.parquet')} (+ .csv)")
    return 0
