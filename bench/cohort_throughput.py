"""Mouse-trials per second of cohort simulation: fused CPU engine, reference batched loop, CLI, autograd loop.

Usage: python bench/cohort_throughput.py [--mice 10000] [--trials 2000] [--ref-trials 400] [--threads 1 2]
                                         [--cli-mice 1000] [--cli-sessions 10] [--cli-trials 200] [--repeats 3]
                                         [--json OUT]

All figures come from one run, so their ratios are comparable on a shared machine:

(a) reference batched loop: ``simulate_cohort(engine="reference", log="none")`` (torch, one step per trial
    for all mice), MICE x REF_TRIALS (its rate is constant per mouse-trial), with ``--torch-threads``
    intra-op threads (set here, explicitly);
(b) fused engine: ``simulate_cohort(engine="fused")``, MICE x TRIALS, with each numba thread count of
    ``--threads`` passed explicitly; ``log="none"`` and ``log="sessions"``;
(c) the CLI path ``mouse-rl simulate --mice CLI_MICE --sessions CLI_SESSIONS --trials CLI_TRIALS``
    (in-process, trial table built and written to parquet, checkpoints as by default) against both loops
    on the same cohort without the table, and against the fused loop that keeps the per-trial log and
    builds the table (``log="trials"``: everything the CLI does but checkpoints and writing);
(d) a per-mouse, per-trial autograd loop (the model written the obvious way), LOOP_MICE x LOOP_TRIALS.

Cases run interleaved, round by round (``--repeats`` rounds), and each rate is the best round's mouse-trials
per wall-clock second, so load changes hit all cases alike; "per CPU-s" divides by the process
CPU time instead, which on a loaded machine estimates the rate of the cores actually obtained. The load
average (``uptime``) is printed before and after. With CUDA available, also the reference path on the GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's envs and mouse_rl

import numba
import torch

from envs.task import TaskConfig
from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.network import encode


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cohort_case(n_mice: int, n_trials: int, engine: str, device: str = "cpu", threads=None, log: str = "none",
                session_trials: int = 200):
    """(run, mouse-trials) of one simulate_cohort call, warmed up (numba compile / cache load)."""
    sessions = max(1, n_trials // session_trials)
    per = n_trials // sessions
    kw = dict(device=device, log=log, engine=engine, threads=threads)
    simulate_cohort(min(n_mice, 64), 1, 20, **kw)

    def run():
        simulate_cohort(n_mice, sessions, per, **kw)
        if device == "cuda":
            torch.cuda.synchronize()

    return run, n_mice * sessions * per


def cli_case(n_mice: int, n_sessions: int, n_trials: int, folder: Path):
    from mouse_rl.cli import main

    args = ["simulate", "--mice", str(n_mice), "--sessions", str(n_sessions), "--trials", str(n_trials),
            "--out", str(folder / "cohort.parquet"), "--quiet"]
    return (lambda: main(args)), n_mice * n_sessions * n_trials


def measure(cases: dict, rounds: int) -> dict:
    """Best (wall-clock rate, its CPU-time rate) of each case; cases run interleaved, round by round, so a
    change of machine load hits all of them alike."""
    best = {name: (0.0, 0.0) for name in cases}
    for _ in range(rounds):
        for name, (fn, n) in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if n / wall > best[name][0]:
                best[name] = (n / wall, n / max(cpu, 1e-9))
    return best


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


def fmt(rate: tuple[float, float]) -> str:
    return f"{rate[0]:.3g} mouse-trials/s ({rate[1]:.3g} per CPU-s)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mice", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--ref-trials", type=int, default=400, help="trials of the reference loop (default %(default)s)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="numba thread counts of the fused engine")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all cases; best of each (default %(default)s)")
    ap.add_argument("--cli-mice", type=int, default=1000)
    ap.add_argument("--cli-sessions", type=int, default=10)
    ap.add_argument("--cli-trials", type=int, default=200)
    ap.add_argument("--loop-mice", type=int, default=2)
    ap.add_argument("--loop-trials", type=int, default=500)
    ap.add_argument("--cuda-mice", type=int, default=100_000)
    ap.add_argument("--cuda-trials", type=int, default=2000)
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA figure (e)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    out = {"cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": args.torch_threads,
           "load_before": load()}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {args.torch_threads}; "
          f"load average (1, 5, 15 min) before: {out['load_before']}")

    if not args.cuda_only:
        cpu_figures(args, out)
    if torch.cuda.is_available():
        cuda = measure({"cuda": cohort_case(args.cuda_mice, args.cuda_trials, "auto", device="cuda")}, 1)["cuda"]
        print(f"(e) reference path on CUDA {torch.cuda.get_device_name()}, {args.cuda_mice} mice x "
              f"{args.cuda_trials} trials: {cuda[0]:.3g} mouse-trials/s (no fused GPU kernel yet)")
        out["cuda_reference"] = cuda
    out["load_after"] = load()
    print(f"load average after: {out['load_after']}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))


def cpu_figures(args, out: dict) -> None:
    n, s, t = args.cli_mice, args.cli_sessions, args.cli_trials
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        cases = {"reference": cohort_case(args.mice, args.ref_trials, "reference")}
        for th in args.threads:
            cases[f"fused_{th}"] = cohort_case(args.mice, args.trials, "fused", threads=th)
            cases[f"fused_sessions_{th}"] = cohort_case(args.mice, args.trials, "fused", threads=th, log="sessions")
        cases["cli"] = cli_case(n, s, t, Path(tmp))
        cases["cli_reference_loop"] = cohort_case(n, s * t, "reference", session_trials=t)
        cases["cli_fused_loop"] = cohort_case(n, s * t, "fused", session_trials=t)
        cases["cli_fused_table"] = cohort_case(n, s * t, "fused", log="trials", session_trials=t)
        rates = measure(cases, args.repeats)
    out.update(rates)
    out["numba_threading_layer"] = numba.threading_layer()
    print(f"numba {numba.__version__}, threading layer {out['numba_threading_layer']}")
    ref = rates["reference"]
    print(f"(a) reference loop, {args.mice} mice x {args.ref_trials} trials: {fmt(ref)}")
    for th in args.threads:
        fused, sess = rates[f"fused_{th}"], rates[f"fused_sessions_{th}"]
        print(f"(b) fused engine, {th} numba thread(s), {args.mice} mice x {args.trials} trials: {fmt(fused)}; "
              f"with per-session summaries {fmt(sess)}; {fused[0] / ref[0]:.1f}x the reference loop")
    cli, cli_ref, cli_fused = rates["cli"], rates["cli_reference_loop"], rates["cli_fused_loop"]
    cli_table = rates["cli_fused_table"]
    print(f"(c) CLI `mouse-rl simulate --mice {n} --sessions {s} --trials {t}` (table + parquet): {fmt(cli)}; "
          f"loops without the table: reference {fmt(cli_ref)} (CLI at {cli[0] / cli_ref[0]:.2f}x), "
          f"fused {fmt(cli_fused)} (CLI at {cli[0] / cli_fused[0]:.2f}x); fused loop with the trial log and "
          f"table (log='trials', no file) {fmt(cli_table)} (CLI at {cli[0] / cli_table[0]:.2f}x)")
    if args.loop_mice > 0:
        loop = autograd_loop_rate(args.loop_mice, args.loop_trials)
        best = max(out[f"fused_{th}"][0] for th in args.threads)
        print(f"(d) per-mouse autograd loop ({args.loop_mice} mice x {args.loop_trials} trials): {loop:.3g} "
              f"mouse-trials/s; fused / loop: {best / loop:,.0f}x")
        out["autograd_loop"] = loop


if __name__ == "__main__":
    main()
