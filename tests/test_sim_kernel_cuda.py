"""The fused CUDA engine (mouse_rl.sim_kernel_cuda) against the reference rollout of network.trial_update.

Without a GPU (CI) the CUDA kernel runs under numba's CUDA simulator, in a subprocess (the simulator is chosen
when numba starts): the whole fused-engine test file then exercises the CUDA kernel instead of the CPU one.
With a GPU the same comparisons run on the device.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_sim_kernel import given_stimuli_case, random_params

from envs.task import TaskConfig
from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.network import (encode, flat_weights, forward, learning_reward, p_right, trial_update,
                              weights_from_flat)
from mouse_rl.schema import WEIGHT_COLUMNS
from mouse_rl.simulate import simulate_on_stimuli

ROOT = Path(__file__).resolve().parents[1]
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (CI has none)")


def test_cuda_kernel_under_numba_simulator_equals_reference():
    """Every fused-engine comparison of tests/test_sim_kernel.py, with the CUDA kernel (simulated) as the engine."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    probe = subprocess.run([sys.executable, "-c", "import mouse_rl.sim_kernel_cuda as k, sys; "
                            "sys.exit(0 if k.simulated() and k.available() else 1)"],
                           env=env, cwd=ROOT, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "tests/test_sim_kernel.py", "-k", "reference or log_modes or steps_are_trial_updates",
                          "tests/test_sim_kernel_cuda.py::test_fused_engine_steps_are_trial_updates"],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def assert_every_step_is_trial_update(result, params: ModelParams, dtype=torch.float64):
    """Each logged trial of a fused run, recomputed by the reference functions from the weights the kernel
    held before it: P(R), the action values and the three teaching signals of that trial, and the weights
    after it (the next trial's, or the final ones). One step at a time, so the check does not depend on how
    the learning dynamics amplify a last-bit difference of ``exp`` over many trials."""
    tr = result.trials
    n_mice = len(result.seeds)
    per_mouse = len(tr) // n_mice
    mouse = np.repeat(np.arange(n_mice), per_mouse)
    col = lambda name: torch.tensor(tr[name].to_numpy(), dtype=dtype)  # noqa: E731
    p = params.tensors(n_mice, dtype=dtype)
    w = weights_from_flat(torch.tensor(tr[WEIGHT_COLUMNS].to_numpy(), dtype=dtype))
    c, choice = col("signed_contrast"), col("choice").long()
    x = encode(c, params.encoding)
    fwd = forward(w, x)
    step = trial_update(w, x, choice, learning_reward(c, col("reward"), params.zero_reward), p.eta[mouse],
                        params.positive, fwd)
    tol = TOL[dtype]
    close = lambda got, want: torch.testing.assert_close(got, want, rtol=tol, atol=tol)  # noqa: E731
    close(col("p_right"), p_right(fwd.q_tot, p.beta[mouse], p.lapse[mouse]))
    for k, name in enumerate(("q_tot", "q_stim", "q_const")):
        close(col(f"{name}_L"), getattr(fwd, name)[:, 0])
        close(col(f"{name}_R"), getattr(fwd, name)[:, 1])
    close(col("delta_tot"), step.delta_tot)
    close(col("delta_stim"), step.delta_stim)
    after = flat_weights(step.weights).reshape(n_mice, per_mouse, 9)
    logged = flat_weights(w).reshape(n_mice, per_mouse, 9)
    close(after[:, :-1], logged[:, 1:])
    close(after[:, -1], flat_weights(result.final_weights).cpu().to(dtype))


OPTIONS = [dict(), dict(lapse=0.1, zero_reward="random"), dict(encoding="magnitude", positive=False)]


@pytest.mark.parametrize("device, n_mice", [("cpu", 40), pytest.param("cuda", 1000, marks=[GPU, pytest.mark.cuda])])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", OPTIONS)
def test_fused_engine_steps_are_trial_updates(options, dtype, device, n_mice):
    """The strict check of either fused engine: every step of mice with random parameters, weights and stimuli."""
    params = random_params(n_mice, 1, **options)
    res = simulate_cohort(n_mice, 3, 60, params=params, seed=11, dtype=dtype, record_weights="trial",
                          task=TaskConfig(contrasts=(-1, -0.125, 0, 0.0625, 0.3), probabilities=(0.2,) * 5),
                          device=device, engine="fused")
    assert_every_step_is_trial_update(res, params, dtype)


@GPU
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options, task", [
    (dict(), TaskConfig()),
    (dict(lapse=0.1, zero_reward="random"), TaskConfig(repeat_after_error=True, zero_reward_p_right=0.3)),
    (dict(encoding="magnitude", positive=False), TaskConfig(contrasts=(-1, -0.125, 0, 0.0625, 0.3),
                                                            probabilities=(0.2, 0.2, 0.2, 0.2, 0.2))),
])
def test_fused_cuda_cohort_follows_cpu_reference(dtype, options, task):
    """Whole trajectories: the GPU's exp differs from the CPU's in the last bit, and learning with large eta
    amplifies such a difference over trials (by up to ~1e7 over 180 trials here), so trajectories agree to
    1e-6 in float64 (every single step to 1e-12: the test above), and choices are the same except where P(R)
    falls within that difference of the choice's uniform draw (none in float64; <= 0.2% in float32)."""
    kw = dict(n_mice=300, n_sessions=3, trials_per_session=60, task=task, seed=11, dtype=dtype,
              params=random_params(300, 1, **options), record_weights="trial")
    ref = simulate_cohort(engine="reference", device="cpu", **kw)
    gpu = simulate_cohort(engine="fused", device="cuda", **kw)
    assert gpu.engine == "fused"
    same = ref.trials["choice"].to_numpy() == gpu.trials["choice"].to_numpy()
    if dtype == torch.float64:
        assert same.all()
        numeric = [c for c in ref.trials.columns if c != "mouse"]
        assert np.abs(ref.trials[numeric].to_numpy(float) - gpu.trials[numeric].to_numpy(float)).max() <= 1e-6
        pd.testing.assert_frame_equal(ref.sessions, gpu.sessions)
    else:
        assert same.mean() >= 0.998


@GPU
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("option", [None, "crosstalk", "side_pref"])
def test_fused_cuda_free_run_on_given_stimuli_equals_reference(dtype, option):
    """Per-mouse inputs on the GPU; each mouse with its own cross-talk g in [0, 0.8] or side preference
    (rho in [-5, 5], tau 40 trials)."""
    c, valid, p, init, seeds = given_stimuli_case(200, dtype)
    if option == "crosstalk":
        p = p._replace(crosstalk=torch.linspace(0, 0.8, len(seeds), dtype=dtype))
    elif option == "side_pref":
        p = p._replace(side_pref=torch.linspace(-5, 5, len(seeds), dtype=dtype),
                       side_pref_tau=torch.full((len(seeds),), 40.0, dtype=dtype))
    ref = simulate_on_stimuli(c, valid, p, seeds, init, engine="reference")
    on_gpu = lambda v: type(v)(*(x.cuda() for x in v))  # noqa: E731
    gpu = simulate_on_stimuli(c.cuda(), valid.cuda(), on_gpu(p), seeds, on_gpu(init), engine="fused")
    torch.testing.assert_close(ref[0], gpu[0].cpu(), rtol=0, atol=0)
    torch.testing.assert_close(ref[1], gpu[1].cpu(), rtol=0, atol=TOL[dtype])


@GPU
@pytest.mark.cuda
def test_fused_cuda_session_log_equals_trial_log_and_resumes(tmp_path):
    kw = dict(n_mice=500, n_sessions=3, trials_per_session=50, seed=2, params=ModelParams(eta=0.05, b_R=0.1),
              device="cuda")
    full = simulate_cohort(**kw)
    sessions = simulate_cohort(log="sessions", **kw)
    assert full.engine == "fused" and sessions.trials.empty
    pd.testing.assert_frame_equal(sessions.sessions, full.sessions)
    ckpt = tmp_path / "run.ckpt"
    simulate_cohort(**kw, checkpoint=ckpt, checkpoint_every=2)
    pd.testing.assert_frame_equal(simulate_cohort(**kw, checkpoint=ckpt).trials, full.trials)


def test_a_broken_numba_cuda_is_a_visible_fallback(monkeypatch):
    """A numba-cuda that cannot load its target (e.g. one built for an older numpy) makes the fused engine
    fall back with the reason, instead of failing inside a simulation."""
    import importlib

    from numba import config, cuda

    from mouse_rl import sim_kernel_cuda
    from mouse_rl.simulate import fused_unsupported

    real_import = importlib.import_module

    def broken(name, *a, **k):
        if name == "numba.cuda.cudaimpl":
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(importlib, "import_module", broken)
    assert "row_stack" in sim_kernel_cuda.unavailable_reason() and not sim_kernel_cuda.available()
    assert "pip install 'numpy<2.5'" in sim_kernel_cuda.unavailable_reason()
    why = fused_unsupported(torch.device("cuda"), torch.float32)
    assert why.startswith("device 'cuda': numba.cuda does not work here (AttributeError")
