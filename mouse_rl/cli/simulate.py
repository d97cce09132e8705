"""``mouse-rl simulate``: train a simulated cohort and write its trial table."""
from __future__ import annotations

from pathlib import Path

from ..simulate import simulate_cohort
from .common import add_device_option, dtype_of, resolve_device
from .options import add_model_options, add_task_options, model_params, task_config


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="train N simulated mice for S sessions; write a parquet trial table")
    p.add_argument("--mice", type=int, default=30, help="number of mice (default %(default)s)")
    p.add_argument("--sessions", type=int, default=25, help="sessions per mouse (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output .parquet (weights go to *.weights.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint file (default OUT.ckpt); rerunning a killed command resumes from it")
    p.add_argument("--record-weights", choices=["session", "trial"], default="session",
                   help="also log the weights of every trial (default: per-session snapshots only)")
    add_device_option(p)
    add_model_options(p)
    add_task_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.out.suffix != ".parquet":
        raise ValueError(f"--out: expected a .parquet file name, got {str(args.out)!r}")
    checkpoint = args.checkpoint or args.out.with_suffix(".ckpt")
    result = simulate_cohort(
        n_mice=args.mice, n_sessions=args.sessions, params=model_params(args), task=task_config(args),
        seed=args.seed, device=resolve_device(args.device), dtype=dtype_of(args), progress=not args.quiet,
        record_weights=args.record_weights, checkpoint=checkpoint,
    )
    result.to_parquet(args.out)
    checkpoint.unlink(missing_ok=True)
    print(f"wrote {len(result.trials):,} trials of {args.mice} mice to {args.out}")
    return 0
