"""``mouse-rl fetch-ibl SUBJECT --out DIR``: download an IBL subject's trials through ONE (optional one-api)."""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from ..data.one_fetch import DEFAULT_BASE_URL

    p = subparsers.add_parser(
        "fetch-ibl", help="download an IBL subject's trials through ONE (needs the optional one-api package)",
        description=__doc__ + " The ALF files are cached in DIR (a ONE cache that `mouse-rl fit DIR` reads) and "
                              "the trial table is written to DIR/SUBJECT_trials.parquet.")
    p.add_argument("subject", help="IBL subject nickname")
    p.add_argument("--out", type=Path, required=True, help="output folder (the ONE cache)")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="ONE server (default %(default)s)")
    p.add_argument("--mode", choices=["auto", "local", "remote"], default="auto",
                   help="ONE mode; 'local' reads only what is already cached in --out (default %(default)s)")
    p.add_argument("--collection", default="alf", help="ALF collection of the trials object (default %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.one_fetch import fetch_subject
    trials, path = fetch_subject(args.subject, args.out, collection=args.collection, base_url=args.base_url,
                                 mode=args.mode)
    print(f"wrote {path} ({trials['session'].nunique()} sessions, {len(trials)} trials of {args.subject})")
    return 0
