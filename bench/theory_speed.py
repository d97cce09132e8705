"""Speed of the mean-field theory: 1,000 initial conditions x 25 sessions (5,500 map steps), on CPU.

Run: ``python bench/theory_speed.py [--n 1000] [--sessions 25] [--device cpu] [--threads N] [--trials-per-step 20]``.
Prints seconds per run for the ODE integration (Heun, ``--trials-per-step`` trials per step; the
target "under 1 s" refers to this) and for the exact per-trial map, in float64 and float32.
"""
from __future__ import annotations

import argparse
import time

import torch

from mouse_rl.params import ModelParams
from mouse_rl.theory import mean_field_trajectory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="initial conditions (batch)")
    ap.add_argument("--sessions", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--trials-per-step", type=int, default=20, help="ODE step in trials (default %(default)s)")
    ap.add_argument("--skip-exact", action="store_true", help="skip the per-trial map timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    # 1,000 initial conditions: random initial biases and stimulus gains around the deep default
    b_R = (0.1 * torch.rand(args.n, generator=g)).tolist()
    w0 = (0.02 + 0.08 * torch.rand(args.n, generator=g)).tolist()
    params = ModelParams(b_R=b_R, w0=w0)
    steps = args.sessions * 220
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.n} steps={steps}")
    modes = [args.trials_per_step] + ([] if args.skip_exact or args.trials_per_step == 1 else [1])
    for h in modes:
        for dtype in (torch.float64, torch.float32):
            kw = dict(device=args.device, dtype=dtype, record_every=220, trials_per_step=h, closure="none")
            mean_field_trajectory(params, n_sessions=1, **kw)  # warm-up
            t0 = time.perf_counter()
            res = mean_field_trajectory(params, n_sessions=args.sessions, **kw)
            if args.device != "cpu":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            label = "per-trial map" if h == 1 else f"ODE, Heun, {h} trials/step"
            print(f"{label:26s} {str(dtype):14s} {dt:7.2f} s  ({dt / (steps / h) * 1e6:6.0f} us/step)  "
                  f"final mean P(R|left)={res.session_p_right_side()[:, -1, 0].mean():.3f}")


if __name__ == "__main__":
    main()
