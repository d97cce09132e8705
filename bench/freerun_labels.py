"""Learner-side labels of free-running fits: model-derived vs behavioural (issue 10, item 6).

For each results folder of ``bench/fit_free_running.py`` (its ``freerun_fit.csv``), the network is run
teacher-forced on every mouse's own trials at the fitted parameters and the mouse's learner side is read
from the model's P(Right) and from its choices with one definition (:func:`mouse_rl.fit.labels.strategy_labels`,
the definition of ``bench/fit_real_mice.py --trust``). Writes ``labels_per_mouse.csv`` into each folder and
prints the agreement.

Usage::

    python bench/freerun_labels.py bench/results/freerun bench/results/freerun_drift_bias_stim_summary1
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from mouse_rl.data import load_liebana2025
    from mouse_rl.fit.labels import strategy_labels
    from mouse_rl.fit.likelihood import teacher_forced

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_liebana2025(args.data)
    for folder in args.folders:
        p = pd.read_csv(folder / "freerun_fit.csv").sort_values("mouse")
        tf = teacher_forced(trials[trials["mouse"].isin(p["mouse"])],
                            p.drop(columns=[c for c in p.columns if c.startswith("sigma_day_")]))
        per_mouse, _ = strategy_labels(tf, p)
        per_mouse.to_csv(folder / "labels_per_mouse.csv", index=False)
        agree = per_mouse["learner_side_data"] == per_mouse["learner_side_model"]
        print(f"{folder}: model-derived = behavioural learner side for {int(agree.sum())} / {len(agree)} mice "
              f"({agree.mean():.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
