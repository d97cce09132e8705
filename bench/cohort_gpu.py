"""Mouse-trials per second of cohort simulation on a CUDA GPU: the fused kernel, the reference path, a sweep point.

Usage: python bench/cohort_gpu.py [--mice 1000000] [--sessions 10] [--trials 200] [--ref-mice 100000]
                                  [--ref-trials 200] [--repeats 3] [--json OUT]

All figures come from one run on one GPU (their ratios are comparable):

(a) the fused CUDA kernel alone (:func:`mouse_rl.sim_kernel_cuda.run_fused_cuda`), MICE x SESSIONS x TRIALS,
    with per-session summaries (float32 and float64) and with no logging (float32); best of ``--repeats``,
    timed between ``torch.cuda.synchronize()`` calls, after a warm-up call that compiles the kernel;
(b) ``simulate_cohort(device="cuda", log="sessions")`` end to end (initial weights, kernel, the per-session
    table on the host), same cohort, float32;
(c) one sweep point, ``mouse_rl.sweep.runner.run_point`` (simulation with per-session logging plus the
    summary row: learning curves, early/late metrics, learner sides, strategies), same cohort, float32;
(d) the reference path on CUDA (one batched torch step per trial), REF_MICE x REF_TRIALS, float32.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs.cohort_env import CohortEnv  # noqa: E402
from envs.task import TaskConfig  # noqa: E402
from mouse_rl import ModelParams, simulate_cohort  # noqa: E402
from mouse_rl import sim_kernel_cuda  # noqa: E402
from mouse_rl.network import encode, init_weights  # noqa: E402
from mouse_rl.sim_kernel import LOG_NONE  # noqa: E402


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def kernel_case(n: int, sessions: int, T: int, dtype: torch.dtype, summaries: bool, device: str = "cuda"):
    """A closure running the bare kernel over the whole cohort (fresh weights each call)."""
    task, params = TaskConfig(trials_per_session=T), ModelParams()
    p = params.tensors(n, device=device, dtype=dtype)
    seeds = torch.arange(n, device=device, dtype=torch.int64)
    contrasts = torch.tensor(task.contrasts, dtype=dtype)
    x = encode(contrasts, "side")[:, :2]
    w = init_weights(p)
    start = torch.cat([w.a, w.U.flatten(-2)], -1).contiguous()
    summary = torch.zeros((n, sessions if summaries else 0, 8), dtype=torch.int64, device=device)
    first = CohortEnv(n, seeds=seeds.cpu().numpy(), task=task, device=device, dtype=dtype).stimulus_index(0)

    def run():
        weights, index = start.clone(), first.clone()
        summary.zero_()
        sim_kernel_cuda.run_fused_cuda(weights, index, p.eta, p.beta, p.lapse, seeds, 0, sessions * T, T,
                                       contrasts=contrasts.numpy(), stimulus_x=x, cumulative=task.cumulative,
                                       use_lapse=False, log_mode=LOG_NONE, summary=summary)
        return summary

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mice", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--trials", type=int, default=200, help="trials per session")
    ap.add_argument("--ref-mice", type=int, default=100_000)
    ap.add_argument("--ref-trials", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to measure", file=sys.stderr)
        return 2
    n, S, T = args.mice, args.sessions, args.trials
    total = n * S * T
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "mice": n, "sessions": S, "trials": T}
    import numba

    out["numba"] = numba.__version__
    print(f"{out['gpu']}, torch {torch.__version__}, numba {numba.__version__}; {n:,} mice x {S} sessions x {T} "
          f"trials = {total:.3g} mouse-trials")
    for name, dtype, summaries in (("kernel_sessions_float32", torch.float32, True),
                                   ("kernel_sessions_float64", torch.float64, True),
                                   ("kernel_none_float32", torch.float32, False)):
        run = kernel_case(n, S, T, dtype, summaries)
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        t = best_time(run, args.repeats)
        out[name] = {"seconds": t, "rate": total / t, "first_call_seconds": compile_s}
        print(f"(a) fused kernel, {name}: {t:.3f} s, {total / t:.3g} mouse-trials/s (first call incl. compile "
              f"{compile_s:.1f} s)", flush=True)

    kw = dict(n_mice=n, n_sessions=S, trials_per_session=T, device="cuda", dtype=torch.float32, log="sessions")
    simulate_cohort(**{**kw, "n_mice": 1000})
    t = best_time(lambda: simulate_cohort(**kw), 1)
    out["simulate_cohort_sessions"] = {"seconds": t, "rate": total / t}
    print(f"(b) simulate_cohort(device='cuda', log='sessions'): {t:.2f} s, {total / t:.3g} mouse-trials/s", flush=True)

    from mouse_rl.sweep.points import Point
    from mouse_rl.sweep.runner import run_point

    point = Point(0, {}, {"trials_per_session": T}, 0, n, S, "float32")
    t0 = time.perf_counter()
    row = run_point(point, device="cuda")
    t = time.perf_counter() - t0
    out["sweep_point"] = {"seconds": t, "rate": total / t,
                          "last5_accuracy": float(row["last5_accuracy"].iloc[0]),
                          "sides": {s: int(row[f"n_{s}"].iloc[0]) for s in ("left", "balanced", "right")}}
    print(f"(c) one sweep point (run_point) of {n:,} mice: {t:.2f} s; last-5 accuracy "
          f"{out['sweep_point']['last5_accuracy']:.3f}, learner sides {out['sweep_point']['sides']}", flush=True)

    rkw = dict(n_mice=args.ref_mice, n_sessions=1, trials_per_session=args.ref_trials, device="cuda",
               dtype=torch.float32, log="none", engine="reference")
    simulate_cohort(**{**rkw, "trials_per_session": 5})
    t = best_time(lambda: simulate_cohort(**rkw), 1)
    ref_rate = args.ref_mice * args.ref_trials / t
    out["reference_cuda"] = {"seconds": t, "rate": ref_rate}
    best = max(out[k]["rate"] for k in ("kernel_sessions_float32", "kernel_none_float32"))
    print(f"(d) reference path on CUDA, {args.ref_mice:,} mice x {args.ref_trials} trials: {ref_rate:.3g} "
          f"mouse-trials/s; fused kernel / reference: {best / ref_rate:,.0f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
