"""Free-running copies of a fitted model on the mice's own stimuli: the fused engine against the reference rollout.

Times :func:`mouse_rl.simulate.simulate_on_stimuli` for ``--copies`` copies of each of the 25 valid Liebana et al.
mice at the parameters of a saved teacher-forced fit (``default_fit.csv`` of ``bench/fit_free_running.py
--default-options ...``, e.g. with the cross-talk and the side preference), fused, reference, fused again (one
run, so the ratio is comparable on a shared machine), and checks that both engines make the same choices.

Usage::

    python bench/copies_engines.py bench/results/freerun_crosstalk_side_pref_drift_bias_stim
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mouse_rl.data import load_trials  # noqa: E402
from mouse_rl.fit.batch import make_batch, prepare_trials  # noqa: E402
from mouse_rl.simulate import simulate_on_stimuli  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_free_running import DEFAULT_OPTIONS, saved_default_fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fit_dir", help="folder of bench/fit_free_running.py (default_fit.csv, freerun_summary.json)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liebana2025"))
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="torch and numba threads (default 2)")
    args = ap.parse_args(argv)
    fit_dir = Path(args.fit_dir)
    if not (fit_dir / "default_fit.csv").is_file():
        ap.error(f"fit_dir: {args.fit_dir!r} holds no default_fit.csv (a folder of bench/fit_free_running.py)")
    import numba

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the data folder's malformed file is skipped with a warning
        df = prepare_trials(load_trials(args.data))
    _, tr, u = saved_default_fit(fit_dir)
    batch = make_batch(df, "expected", "cpu", torch.float64, prepared=True).repeat(args.copies)
    params = tr.params(torch.as_tensor(np.tile(u, (args.copies, 1))))
    seeds = np.arange(batch.shape[1]) + 1
    load_before, seconds, choices = os.getloadavg(), {}, {}
    for engine in ("fused", "reference", "fused"):
        t0 = time.perf_counter()
        with torch.no_grad():
            choices[engine], _ = simulate_on_stimuli(batch.contrast, batch.valid, params, seeds, engine=engine)
        seconds.setdefault(engine, []).append(round(time.perf_counter() - t0, 2))
    summary = {"columns": list(batch.shape), "options": [o for o in DEFAULT_OPTIONS if o in tr.free], "threads": args.threads, "seconds": seconds,
               "same_choices": bool((choices["fused"] == choices["reference"]).all()),
               "load_before": load_before, "load_after": os.getloadavg()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
