"""The graded contrast encoding on the Liebana et al. (2025) mice: its constant, and the psychometric shape it buys.

``--constants``: the mice's late-session (last 5 sessions) logit sensitivity
at each contrast, d(c) = logit P(R|+c) - logit P(R|-c) (P clipped to
[0.01, 0.99]), pooled over mice as sum d(0.25) / sum d(0.5); then the
semi-saturation c50 of the Naka-Rushton g(c) = c^2 / (c^2 + c50^2) (n = 2) for
which g(0.25) / g(0.5) equals that ratio (``mouse_rl.network.GRADED_C50``).

``--shape``: the default fit (``mouse_rl.fit.fit_mice``) of every valid mouse
with the "side" and the "graded" encoding; on each mouse's last 5 sessions,
the mean P(correct) at |c| = 0.25 and 0.5 of the data and of each fitted model
(teacher-forced P(R) on the mouse's own trials), the pooled logit-sensitivity
ratio d(0.25) / d(0.5), and the in-sample bits/trial. Writes
``OUT/graded_shape.csv`` and ``OUT/graded_summary.json``.

Usage::

    python bench/graded_contrast.py --constants
    python bench/graded_contrast.py --shape --out out/bench_graded
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _logit(p):
    p = np.clip(p, 0.01, 0.99)
    return np.log(p / (1 - p))


def late_table(trials: pd.DataFrame, column: str, n_late: int = 5) -> pd.DataFrame:
    """Per mouse: P(R) at each signed contrast over its last ``n_late`` sessions (``column``: choice or p_right)."""
    last = trials.groupby("mouse")["session"].transform("max")
    late = trials[trials["session"] > last - n_late]
    return late.groupby(["mouse", "signed_contrast"])[column].mean().unstack()


def sensitivity_ratio(p: pd.DataFrame) -> tuple[float, int]:
    """Pooled sum_mice d(0.25) / sum_mice d(0.5) over mice that have all four contrasts, and their count."""
    p = p.dropna(subset=[-0.5, -0.25, 0.25, 0.5])
    d25 = _logit(p[0.25]) - _logit(p[-0.25])
    d50 = _logit(p[0.5]) - _logit(p[-0.5])
    return float(d25.sum() / d50.sum()), int(len(p))


def c50_for_ratio(ratio: float, exponent: float = 2.0) -> float:
    """c50 with g(0.25)/g(0.5) = ratio for g(c) = c^n / (c^n + c50^n) (closed form in s = c50^n)."""
    a, b = 0.25 ** exponent, 0.5 ** exponent  # ratio = a (b + s) / (b (a + s))  ->  s = a b (1 - r) / (r b - a)
    s = a * b * (1 - ratio) / (ratio * b - a)
    return float(s ** (1 / exponent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "liebana2025")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_graded")
    p.add_argument("--constants", action="store_true")
    p.add_argument("--shape", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from mouse_rl.data import load_liebana2025

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DAP044 (malformed) is skipped
        trials = load_liebana2025(args.data)
    if args.constants or not args.shape:
        ratio, n = sensitivity_ratio(late_table(trials, "choice"))
        print(f"late-session logit sensitivity d(0.25)/d(0.5), pooled over {n} mice: {ratio:.3f}; "
              f"Naka-Rushton (n = 2) c50 = {c50_for_ratio(ratio):.4f}")
    if not args.shape:
        return 0
    import numba
    import torch

    from mouse_rl.fit import fit_mice
    from mouse_rl.network import encode
    from mouse_rl.params import ModelParams

    numba.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = late_table(trials, "choice")
    rows, summary = [], {"n_mice": int(trials["mouse"].nunique())}
    for encoding in ("side", "graded"):
        t0 = time.perf_counter()
        res = fit_mice(trials, fixed=ModelParams(encoding=encoding))
        seconds = time.perf_counter() - t0
        model = late_table(res.trials, "p_right")
        ratio, n = sensitivity_ratio(model)
        bits = float(res.params["loglik"].sum() / res.params["n_trials"].sum() / math.log(2))
        summary[encoding] = {"fit_seconds": seconds, "in_sample_bits_per_trial": bits,
                             "late_sensitivity_ratio_25_50": ratio, "n_mice_ratio": n}
        for mouse in model.index:
            for c in (0.25, 0.5):
                pc_model = (model.at[mouse, c] + 1 - model.at[mouse, -c]) / 2 if c in model else np.nan
                rows.append({"mouse": mouse, "contrast": c, "encoding": encoding, "p_correct_model": pc_model})
    ratio, n = sensitivity_ratio(data)
    summary["data"] = {"late_sensitivity_ratio_25_50": ratio, "n_mice_ratio": n}
    shape = pd.DataFrame(rows).pivot_table(index=["mouse", "contrast"], columns="encoding",
                                           values="p_correct_model").add_prefix("p_correct_").reset_index()
    shape["p_correct_data"] = [(data.at[m, c] + 1 - data.at[m, -c]) / 2 for m, c in zip(shape["mouse"], shape["contrast"])]
    shape.to_csv(args.out / "graded_shape.csv", index=False)
    means = shape.groupby("contrast")[[c for c in shape if c.startswith("p_correct")]].mean()
    summary["late_p_correct_mean_over_mice"] = {f"{c:g}": means.loc[c].round(4).to_dict() for c in means.index}
    summary["graded_inputs"] = {f"{c:g}": float(encode(torch.tensor(c, dtype=torch.float64), "graded")[1])
                                for c in (0.25, 0.5)}
    (args.out / "graded_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
