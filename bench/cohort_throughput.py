"""Mouse-trials per second: the batched cohort path vs a per-mouse, per-trial autograd loop.

Usage: python bench/cohort_throughput.py [--mice 1000] [--trials 10000] [--loop-mice 3] [--loop-trials 1000]

(a) the batched path: ``simulate_cohort`` for MICE x TRIALS on CPU (no trial table);
(b) a straightforward per-mouse, per-trial loop of the same model: each trial
    runs a forward pass, the three losses and ``torch.autograd.grad`` per loss,
    then the SGD step (rate measured on LOOP_MICE x LOOP_TRIALS; it is constant
    per mouse-trial, so the rate extrapolates);
then prints the ratio. With CUDA available, also the batched path on the GPU
for --cuda-mice mice (default 100,000).
"""
from __future__ import annotations

import argparse
import time

import torch

from envs.task import TaskConfig
from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.network import encode


def batched_rate(n_mice: int, n_trials: int, device: str, dtype=torch.float32) -> float:
    sessions = max(1, n_trials // 200)
    simulate_cohort(n_mice, 1, 50, device=device, record_trials=False, progress=False)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    simulate_cohort(n_mice, sessions, n_trials // sessions, device=device, dtype=dtype, record_trials=False, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    return n_mice * sessions * (n_trials // sessions) / (time.perf_counter() - start)


def autograd_loop_rate(n_mice: int, n_trials: int) -> float:
    """The model written the obvious way: one mouse, one trial, three autograd calls at a time."""
    p = ModelParams()
    task = TaskConfig()
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor(task.probabilities)
    contrasts = torch.tensor(task.contrasts)
    start = time.perf_counter()
    for _ in range(n_mice):
        a = torch.tensor([p.w0, p.w0, p.k], requires_grad=True)
        U = torch.tensor([[p.s0, p.s0, p.b_L], [p.s0, p.s0, p.b_R]], requires_grad=True)
        for _ in range(n_trials):
            c = contrasts[torch.multinomial(probs, 1, generator=gen)][0]
            x = encode(c)
            h = a * x
            q_stim = U[:, :2] @ h[:2]
            q_const = U[:, 2] * h[2]
            q_tot = q_stim + q_const
            p_r = torch.sigmoid(p.beta * (q_tot[1] - q_tot[0]))
            ch = int(torch.rand((), generator=gen) < p_r)
            reward = 0.5 if c == 0 else float((c > 0) == (ch == 1))
            (g_a,) = torch.autograd.grad(0.5 * (reward - q_tot[ch]) ** 2, a, retain_graph=True)
            (g_stim,) = torch.autograd.grad(0.5 * (reward - q_stim[ch]) ** 2, U, retain_graph=True)
            (g_const,) = torch.autograd.grad(0.5 * (reward - q_const[ch]) ** 2, U)
            with torch.no_grad():
                a -= p.eta * g_a
                U[ch, :2] -= p.eta * g_stim[ch, :2]
                U[ch, 2] -= p.eta * g_const[ch, 2]
                a.abs_()
                U.abs_()
    return n_mice * n_trials / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mice", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=10000)
    ap.add_argument("--loop-mice", type=int, default=3)
    ap.add_argument("--loop-trials", type=int, default=1000)
    ap.add_argument("--cuda-mice", type=int, default=100_000)
    ap.add_argument("--cuda-trials", type=int, default=10000)
    ap.add_argument("--cuda-only", action="store_true", help="skip the CPU measurements")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if not args.cuda_only:
        cpu_comparison(args)
    if torch.cuda.is_available():
        cuda = batched_rate(args.cuda_mice, args.cuda_trials, "cuda")
        print(f"(c) batched cohort, CUDA {torch.cuda.get_device_name()}, {args.cuda_mice} mice x {args.cuda_trials} trials: "
              f"{cuda:,.0f} mouse-trials/s  (target >= 1e8 on an H100)")


def cpu_comparison(args) -> None:
    batched = batched_rate(args.mice, args.trials, "cpu")
    print(f"(a) batched cohort, CPU, {args.mice} mice x {args.trials} trials: {batched:,.0f} mouse-trials/s")
    loop = autograd_loop_rate(args.loop_mice, args.loop_trials)
    print(f"(b) per-mouse autograd loop, CPU ({args.loop_mice} mice x {args.loop_trials} trials): {loop:,.0f} mouse-trials/s")
    print(f"ratio (a)/(b): {batched / loop:,.0f}x  (target >= 1,000)")


if __name__ == "__main__":
    main()
