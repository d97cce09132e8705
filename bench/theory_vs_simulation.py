"""Full-size theory vs simulation: 2000 mice x 25 sessions, deep (w0=0.05) and shallow (w0=1), b_R=0.05.

Run: ``python bench/theory_vs_simulation.py [--mice 2000] [--sessions 25] [--b-right 0.05]``.
Prints, for the unscented closure (cohort mean and covariance, the default of
``compare_with_simulation``) and the plain map (one noise-free mouse), the max
|simulated - theory| session-averaged P(R | left/zero/right), overall and per
session range, and the session-end weight error (closure). Both theories are
compared with the same simulated cohort.
"""
from __future__ import annotations

import argparse
import time


from mouse_rl.params import ModelParams
from mouse_rl.theory import compare_deep_shallow, mean_field_trajectory


def _report(name: str, label: str, err) -> None:
    worst = int(err.idxmax())
    print(f"{name:8s} {label:10s} max|dP(R|stim)| = {err.max():.4f} (session {worst}); "
          f"sessions 1-15: {err.loc[:15].max():.4f}; 16-: {err.loc[16:].max():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mice", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=25)
    ap.add_argument("--b-right", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = compare_deep_shallow(ModelParams(b_R=args.b_right), n_mice=args.mice, n_sessions=args.sessions,
                               seed=args.seed, device=args.device, closure="unscented")
    print(f"{args.mice} mice x {args.sessions} sessions, b_R={args.b_right}, device={args.device}, "
          f"{time.perf_counter() - t0:.0f} s")
    for name, cmp in out.items():
        err = cmp.p_right.pivot(index="session", columns="side", values="error").abs().max(axis=1)
        _report(name, "unscented", err)
        print(f"{'':8s} {'':10s} max|d weights| = {cmp.max_error_weights:.4f}")
        plain = mean_field_trajectory(cmp.theory.params, cmp.theory.task, args.sessions,
                                      record_every=cmp.theory.task.trials_per_session,
                                      closure="none").session_p_right_side()[0]
        sim = cmp.p_right.pivot(index="session", columns="side", values="simulated")[["left", "zero", "right"]]
        _report(name, "plain map", (sim - plain).abs().max(axis=1))


if __name__ == "__main__":
    main()
