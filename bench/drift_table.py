"""Table of the overnight-drift variants of the posterior-predictive checks (from saved bench results).

Reads the ``freerun_summary.json`` files written by ``bench/fit_free_running.py`` (no fitting here) and
writes ``bench/results/freerun_drift_table.md`` (markdown) and prints it. Rows: the current fits (no drift;
``bench/results/freerun``) and every ``bench/results/freerun_summary*``, ``freerun_drift_*`` and
``freerun_default_drift_*`` run. Last columns: the median fitted sigma_day per group and, of the mice whose
real late slope difference is outside the copies' band, how many are more one-sided than the band.

Usage::

    python bench/drift_table.py
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "bench" / "results"
TARGETS = "targets: coverage >= 0.85, late slope inside >= 20/25, side match >= 20/25"


def _label(s: dict, case: str) -> str:
    if case == "default":
        return "teacher-forced (MODEL.md), no drift"
    if case == "refit_drift":
        src = Path(s["refit_drift_from"]).name
        return f"θ of {src} held + drift {'+'.join(s['drift'])} refitted on the session rates"
    if case == "default_drift":
        groups = [k.removeprefix("sigma_day_").removesuffix("_median") for k in s[case] if k.startswith("sigma_day_")]
        return f"teacher-forced + drift {'+'.join(groups)} (θ held, σ fitted)"
    drift = s.get("drift") or []
    label = "free-running" + (f" + drift {'+'.join(drift)}" if drift else ", no drift")
    w = s.get("summary_weight", 0.0)
    label += f", summary weight {w:g}" if w else ""
    return label + (f", fit seed {s['fit_seed']}" if s.get("fit_seed", 0) else "")


def rows():
    folders = [RES / "freerun", *sorted(RES.glob("freerun_summary*/")), *sorted(RES.glob("freerun_drift_*/")),
               *sorted(RES.glob("freerun_default_drift_*/"))]
    for folder in folders:
        f = folder / "freerun_summary.json"
        if not f.exists():
            continue
        s = json.loads(f.read_text())
        for case in ("default", "freerun", "default_drift", "refit_drift"):
            if not isinstance(s.get(case), dict):
                continue
            c = s[case]
            sig = ", ".join(f"{k.removeprefix('sigma_day_').removesuffix('_median')} {v:.2f}"
                            for k, v in c.items() if k.startswith("sigma_day_"))
            pm = folder / f"check_per_mouse_{case}.csv"
            extreme = "-"
            if pm.exists():  # late-slope misses where the mouse is more one-sided than the copies' band
                d = pd.read_csv(pm)
                miss = ~d["late_slope_diff_inside"]
                beyond = ((d["late_slope_diff"] > d["late_slope_diff_hi"]) & (d["late_slope_diff"] > 0)) | \
                         ((d["late_slope_diff"] < d["late_slope_diff_lo"]) & (d["late_slope_diff"] < 0))
                extreme = f"{int((miss & beyond).sum())}/{int(miss.sum())}"
            yield (_label(s, case), f"{c['session_coverage']:.3f}", f"{c['late_slope_inside']}/{c['n_mice']}",
                   f"{c['side_match']}/{c['n_mice']}", f"{c['early_bias_inside']}/{c['n_mice']}",
                   f"{c['mean_side_share']:.2f} ({c['expected_side_share']:.2f})",
                   f"{c['teacher_forced_bits_per_trial']:.4f}", sig or "-", extreme, f"bench/results/{folder.name}")


def main() -> str:
    head = ("variant", "session coverage", "late slope inside", "side match", "early bias inside",
            "side share (calibrated)", "TF log-lik, bits/trial (in-sample)", "median σ_day", "slope misses: mouse more one-sided", "results")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows()]
    text = "\n".join(lines) + f"\n\n{TARGETS}; 50 copies per mouse, check seed 1, point estimates.\n"
    (RES / "freerun_drift_table.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
