"""``mouse-rl check FITS_DIR``: posterior-predictive check of a fit -- free-running copies of every mouse."""
from __future__ import annotations

import sys
from pathlib import Path

#: Files of a ``mouse-rl fit`` output folder that the check reads.
FIT_FILES = ("fit_trials.parquet", "fit_laplace.npz", "fit_options.json")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("check", help="posterior-predictive check of a fit (free-running copies per mouse)",
                              description=__doc__)
    p.add_argument("fits", type=Path, help="output folder of `mouse-rl fit`")
    p.add_argument("--out", type=Path, default=None, help="output folder (default FITS/check)")
    p.add_argument("--copies", type=int, default=50, help="free-running copies per mouse (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of parameter draws and copies (default %(default)s)")
    p.add_argument("--no-uncertainty", dest="uncertainty", action="store_false",
                   help="run every copy at the fitted parameters (no Laplace posterior draws)")
    p.add_argument("--no-session-effects", dest="session_effects", action="store_false",
                   help="a fit with session effects (`mouse-rl fit --session-effects`): check its copies without them")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip per-mouse PNGs")
    p.set_defaults(func=run)


def load_fit(folder: Path):
    """Trial table, u, Hessian, :class:`ParamTransform`, fitting criterion, the copies' overnight drift
    ``(M, 9)`` and their session effects ``{"session_bias_sd": (M,), "session_gain_sd": (M,)}`` (None / empty
    without) of a ``mouse-rl fit`` folder (no pickle)."""
    import json
    import zipfile

    import numpy as np
    import pandas as pd

    from ..fit.transforms import ParamTransform
    from ..params import ModelParams

    if not folder.is_dir():
        raise FileNotFoundError(f"fits: {str(folder)!r} is not a folder written by `mouse-rl fit`")
    missing = [f for f in FIT_FILES if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"fits: {str(folder)!r} lacks {missing} (rerun `mouse-rl fit` with this version)")
    try:
        opts = json.loads((folder / "fit_options.json").read_text())
        with np.load(folder / "fit_laplace.npz", allow_pickle=False) as z:
            mice, u, hessian, free = (z[k] for k in ("mice", "u", "hessian", "free"))
            sigma_day = z["sigma_day"] if "sigma_day" in z.files else None
            session = {k: z[k] for k in ("session_bias_sd", "session_gain_sd") if k in z.files}
        fixed = ModelParams(**opts["fixed"], encoding=opts["encoding"], positive=opts["positive"],
                            zero_reward=opts["zero_reward"])
        transform = ParamTransform(free=tuple(str(f) for f in free), fixed=fixed)
    except (KeyError, TypeError, ValueError, EOFError, json.JSONDecodeError, OSError, zipfile.BadZipFile) as err:
        detail = ("not a numeric .npz" if "pickle" in str(err)  # never suggest unpickling a received file
                  else f"missing key {err}" if isinstance(err, KeyError) else err)
        raise ValueError(f"fits: {str(folder)!r} has an unreadable fit_laplace.npz / fit_options.json "
                         f"(rerun `mouse-rl fit`): {detail}") from None
    if u.ndim != 2 or u.shape != (len(mice), transform.n_free) or hessian.shape != (*u.shape, u.shape[1]):
        raise ValueError(f"fits: fit_laplace.npz shapes do not match: mice {len(mice)}, u {u.shape}, "
                         f"hessian {hessian.shape}")
    bad_u = [str(m) for m, row in zip(mice, u) if not np.isfinite(row).all()]
    if bad_u:
        raise ValueError(f"fits: fit_laplace.npz has non-finite fitted parameters (u) for mice {bad_u} "
                         "(rerun `mouse-rl fit`)")
    sds = {"sigma_day": (sigma_day, (len(mice), 9), "the copies' overnight drift"),
           **{k: (v, (len(mice),), "the copies' session effects") for k, v in session.items()}}
    for key, (v, shape, what) in sds.items():
        if v is None:
            continue
        problem = (f"shape {v.shape}, need {shape}" if v.shape != shape
                   else "non-finite values" if not np.all(np.isfinite(v))
                   else f"negative values (min {v.min():.3g})" if np.any(v < 0) else None)
        if problem:
            raise ValueError(f"fits: fit_laplace.npz {key} ({what}) has {problem} (rerun `mouse-rl fit`)")
    try:
        trials = pd.read_parquet(folder / "fit_trials.parquet")
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"fits: {str(folder)!r} has an unreadable fit_trials.parquet (rerun `mouse-rl fit`): "
                         f"{err}") from None
    keep = [c for c in ("mouse", "session", "trial", "signed_contrast", "contrastLeft", "contrastRight", "choice",
                        "reward", "feedbackType", "response_times") if c in trials]
    trials = trials[keep]
    order = np.argsort(mice.astype(str), kind="stable")
    fitted = sorted(trials["mouse"].astype(str).unique())
    if sorted(mice.astype(str).tolist()) != fitted:
        raise ValueError(f"fits: fit_laplace.npz mice {sorted(mice.tolist())} differ from fit_trials.parquet's {fitted}")
    return (trials, u[order], hessian[order], transform, opts.get("criterion", "teacher-forced"),
            None if sigma_day is None else sigma_day[order], {k: v[order] for k, v in session.items()})


def run(args) -> int:
    import json

    import numpy as np

    import matplotlib

    matplotlib.use("Agg")
    from ..fit.checks import COHORT_RELATIONS, posterior_predictive_check
    from ..fit.plots import plot_check
    from ..outputs import OutputSet
    from ..safe_names import unique_filenames
    from .limits import check_copies_size

    if args.copies < 2:
        raise ValueError(f"--copies: must be >= 2, got {args.copies}")
    trials, u, hessian, transform, criterion, sigma_day, session = load_fit(args.fits)
    out = args.out or args.fits / "check"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {str(out)!r} exists and is not a folder")
    if out.resolve() == args.fits.resolve():
        raise ValueError(f"--out: {str(out)!r} is the fit folder; the check's files would replace the fit's "
                         "record (default: FITS/check)")
    check_copies_size(len(trials), args.copies)
    uncertainty = args.uncertainty
    if criterion == "free-running" and uncertainty and not hessian.any():
        uncertainty = False  # written before free-running fits saved their precision
        print("note: this free-running fit saved no precision; its copies use the fitted point estimate",
              file=sys.stderr)
    if uncertainty:
        mice = sorted(trials["mouse"].astype(str).unique())
        finite = np.isfinite(hessian).all(axis=(1, 2))
        if not finite.all():
            print(f"note: no finite Hessian for {[m for m, f in zip(mice, finite) if not f]}; their copies use "
                  "the fitted point estimate", file=sys.stderr)
        if criterion == "free-running":  # its saved precision is information + prior: positive definite
            bad = [m for m, f, h in zip(mice, finite, hessian) if f and np.linalg.eigvalsh(h).min() <= 0]
            if bad:
                raise ValueError(f"fits: fit_laplace.npz precision of the free-running fit is not positive "
                                 f"definite for {bad} (rerun `mouse-rl fit`, or check with --no-uncertainty)")
    if sigma_day is not None:
        print("note: the copies drift overnight as fitted (sigma_day in fit_laplace.npz)", file=sys.stderr)
    if session and args.session_effects:
        print("note: every session of a copy gets its own session effects, sds as fitted ("
              + ", ".join(f"{k} median {np.median(v):.2f}" for k, v in session.items())
              + " in fit_laplace.npz; --no-session-effects: without)", file=sys.stderr)
    elif not session and not args.session_effects:
        raise ValueError(f"--no-session-effects: {str(args.fits)!r} has no session effects (fit with `mouse-rl fit "
                         "--session-effects`), so the flag would change nothing")
    check = posterior_predictive_check(trials, u, hessian, transform, args.copies, args.seed, uncertainty,
                                       sigma_day=sigma_day,
                                       **(session if args.session_effects else {}))
    with OutputSet(out, meta={"command": "check"}) as outputs:  # renamed together, then the run marker
        check.per_mouse.to_csv(outputs.path("check_per_mouse.csv"), index=False)
        check.per_session.to_csv(outputs.path("check_per_session.csv"), index=False)
        check.copies.to_csv(outputs.path("check_copies.csv"), index=False)
        outputs.path("check_summary.json").write_text(json.dumps(check.summary, indent=1))
        if args.plots:
            names = unique_filenames(check.per_mouse["mouse"])  # mouse ids from data: sanitised, kept in --out
            for mouse in check.per_mouse["mouse"]:
                plot_check(check, mouse).savefig(outputs.path(f"plots/{names[str(mouse)]}.png"), dpi=100,
                                                 format="png")
    cols = ["mouse", "session_coverage", "teacher_forced_coverage", "early_bias", "early_bias_inside",
            "late_slope_diff", "late_slope_diff_inside", "late_bias", "late_bias_inside", "side", "side_modal_sim",
            "side_share"]
    print(check.per_mouse[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    s = check.summary
    print(f"sessions inside the copies' 5-95% band: {s['session_coverage']:.1%}; late slope difference inside: "
          f"{s['late_slope_inside']}/{s['n_mice']}; early bias inside: {s['early_bias_inside']}/{s['n_mice']}; "
          f"late bias inside: {s['late_bias_inside']}/{s['n_mice']}; "
          f"modal learner side = real: {s['side_match']}/{s['n_mice']} (a calibrated model expects "
          f"{s['expected_side_match']:.1f})  ({s['n_copies']} copies per mouse)")
    print(f"sessions whose accuracy of the fit learning from the mouse's own choices is inside the band: "
          f"{s['teacher_forced_coverage']:.1%}")
    for name, (x, y) in COHORT_RELATIONS.items():
        if name in s:  # cohorts of 3 or more mice
            print(f"cohort r({x}, {y}): mice {s[name]:.2f}, simulated cohorts {s[name + '_median']:.2f} "
                  f"[{s[name + '_lo']:.2f}, {s[name + '_hi']:.2f}]" + ("" if s[name + "_inside"] else "  (outside)"))
    print(f"wrote {out}")
    return 0
