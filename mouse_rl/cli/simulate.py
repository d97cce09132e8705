"""``mouse-rl simulate``: train a simulated cohort and write its trial table."""
from __future__ import annotations

import warnings
from pathlib import Path

from ..outputs import OutputSet, marker_for_file, write_parquet
from ..schema import BEHAVIOUR_COLUMNS, KEY_COLUMNS
from ..simulate import simulate_cohort
from .limits import check_cohort_size, check_session_log_size
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
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="SESSIONS",
                   help="sessions between checkpoints (default: half of --sessions, rounded up: one checkpoint "
                        "mid-run; each checkpoint rewrites the trial log so far)")
    p.add_argument("--log", choices=["trials", "sessions"], default="trials",
                   help="'trials': the per-trial table (default); 'sessions': per-session summaries only "
                        "(OUT holds one row per mouse and session; memory independent of --trials)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of the fused simulation (default: all; numba's setting). More than numba "
                        "allows (NUMBA_NUM_THREADS, usually the CPU count) is capped at that maximum with a "
                        "warning rather than refused: the threads only change the speed, never the result")
    p.add_argument("--restart", action="store_true",
                   help="discard an existing checkpoint (e.g. a corrupt one) and start from session 1")
    p.add_argument("--record-weights", choices=["session", "trial"], default="session",
                   help="also log the weights of every trial (default: per-session snapshots only)")
    add_device_option(p)
    add_model_options(p)
    add_task_options(p)
    p.set_defaults(func=run)


def default_checkpoint_every(n_sessions: int) -> int:
    """Sessions between checkpoints by default: half the run, rounded up (one checkpoint, mid-run).

    Each checkpoint rewrites the trial log so far, so checkpointing every quarter wrote 1.5 logs per run
    (more than the final table); one mid-run checkpoint writes half a log and still bounds the work a
    killed run loses to half.
    """
    return -(-int(n_sessions) // 2)


def check_threads(threads):
    """``--threads`` as the fused engine will use it: >= 1, capped (with a warning) at numba's maximum."""
    if threads is None:
        return None
    if threads < 1:
        raise ValueError(f"--threads: must be >= 1, got {threads}")
    import numba

    most = int(numba.config.NUMBA_NUM_THREADS)
    if threads > most:
        warnings.warn(f"--threads {threads}: numba allows at most {most} threads here (NUMBA_NUM_THREADS); "
                      f"using {most}", UserWarning, stacklevel=2)
        return most
    return threads


def run(args) -> int:
    if args.out.suffix != ".parquet":
        raise ValueError(f"--out: expected a .parquet file name, got {str(args.out)!r}")
    if args.out.name.endswith(".weights.parquet"):
        raise ValueError(f"--out: {str(args.out)!r} ends in .weights.parquet, the name of the weights table written "
                         "beside the trial table (and read by `mouse-rl dopamine`); give a name like cohort.parquet")
    params, task = model_params(args), task_config(args)
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every: must be >= 1, got {args.checkpoint_every}")
    args.threads = check_threads(args.threads)
    if args.log == "trials":
        check_cohort_size(args.mice, args.sessions, task.trials_per_session, record_weights=args.record_weights)
    else:
        check_session_log_size(args.mice, args.sessions, task.trials_per_session)
    checkpoint = args.checkpoint or args.out.with_suffix(".ckpt")
    if checkpoint.is_dir():
        raise ValueError(f"--checkpoint: {str(checkpoint)!r} is a folder, expected a file name")
    weights = args.out.with_suffix(".weights.parquet")
    if checkpoint.resolve() in (args.out.resolve(), weights.resolve()):
        raise ValueError(f"--checkpoint: {str(checkpoint)!r} is an output of the run (--out and its weights "
                         "file); give another file (default OUT.ckpt)")
    if args.restart:
        checkpoint.unlink(missing_ok=True)
    result = simulate_cohort(
        n_mice=args.mice, n_sessions=args.sessions, params=params, task=task,
        seed=args.seed, device=resolve_device(args.device), dtype=dtype_of(args), progress=not args.quiet,
        record_weights=args.record_weights, checkpoint=checkpoint,
        checkpoint_every=args.checkpoint_every or default_checkpoint_every(args.sessions), log=args.log, threads=args.threads,
    )
    table = result.trials if args.log == "trials" else result.sessions
    with OutputSet(args.out.parent, marker=marker_for_file(args.out), meta={"command": "simulate"}) as outputs:
        write_parquet(table, outputs.path(args.out.name), dictionary=KEY_COLUMNS + BEHAVIOUR_COLUMNS)
        result.weights.to_parquet(outputs.path(weights.name), index=False)
    checkpoint.unlink(missing_ok=True)
    what = "trials" if args.log == "trials" else "session summaries"
    print(f"wrote {len(table):,} {what} of {args.mice} mice to {args.out} (weights: {weights.name})")
    return 0
