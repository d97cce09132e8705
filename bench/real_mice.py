"""Shared by the benches on the real mice: their command-line arguments and their loading."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(ap: argparse.ArgumentParser, out: str) -> None:
    """``--data`` (the Liebana folder beside the project), ``--mice``, ``--threads`` and ``--out`` (default ``out``)."""
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    ap.add_argument("--mice", nargs="*", default=None, help="only these mice (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="torch and numba threads (default 2)")
    ap.add_argument("--out", type=Path, default=Path(out))


def check_arguments(ap: argparse.ArgumentParser, args) -> None:
    """One-line errors (exit 2) for a missing data folder or a thread count below 1."""
    if not args.data.exists():
        ap.error(f"--data: no such file or folder: {str(args.data)!r}")
    if args.threads < 1:
        ap.error(f"--threads: must be >= 1, got {args.threads}")


def load(args):
    """Set the torch and numba threads, load the mice (DAP044, malformed, is skipped) and prepare the table."""
    import numba
    import torch

    from mouse_rl.data import load_trials
    from mouse_rl.fit.batch import prepare_trials

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the malformed DAP044 is skipped with a warning
        trials = load_trials(args.data)
    if args.mice:
        missing = sorted(set(args.mice) - set(trials["mouse"].astype(str)))
        if missing:
            print(f"--mice: not in {str(args.data)!r}: {', '.join(missing)}", file=sys.stderr)
            raise SystemExit(2)
        trials = trials[trials["mouse"].isin(args.mice)]
    return prepare_trials(trials)


def prior_sd_item(text: str) -> tuple[str, float]:
    """``NAME=SD`` of ``--prior-sd``: a parameter of mouse_rl.params.PARAMS and a positive finite sd."""
    import math

    from mouse_rl.params import PARAMS

    name, sep, value = text.partition("=")
    if not sep or name not in PARAMS:
        raise argparse.ArgumentTypeError(f"expected NAME=SD with NAME one of {sorted(PARAMS)}, got {text!r}")
    try:
        sd = float(value)
    except ValueError:
        sd = math.nan
    if not (math.isfinite(sd) and sd > 0):
        raise argparse.ArgumentTypeError(f"{name}: the sd must be a positive number, got {value!r}")
    return name, sd


def apply_prior_sds(items) -> None:
    """Set the prior sds of ``--prior-sd`` in this process's :data:`mouse_rl.params.PARAMS` (a bench's own run)."""
    import dataclasses

    from mouse_rl.params import PARAMS

    for name, sd in items:
        PARAMS[name] = dataclasses.replace(PARAMS[name], prior_sd=sd)
