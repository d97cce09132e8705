"""CUDA gives the same results as CPU (float64). Skipped where no CUDA GPU is present."""
import pandas as pd
import pytest
import torch

from mouse_rl import ModelParams, simulate_cohort

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (CI has none)"),
]


def test_cohort_cuda_equals_cpu_float64():
    kw = dict(n_mice=64, n_sessions=3, trials_per_session=220, params=ModelParams(b_R=0.05), seed=1,
              dtype=torch.float64, progress=False)
    cpu = simulate_cohort(device="cpu", **kw)
    gpu = simulate_cohort(device="cuda", **kw)
    pd.testing.assert_frame_equal(cpu.trials, gpu.trials, check_exact=False, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(cpu.final_weights.U, gpu.final_weights.U.cpu())


def test_cohort_cuda_float32_close_to_cpu():
    kw = dict(n_mice=64, n_sessions=2, trials_per_session=100, seed=2, progress=False)
    cpu = simulate_cohort(device="cpu", **kw).trials
    gpu = simulate_cohort(device="cuda", **kw).trials
    assert (cpu.choice.values == gpu.choice.values).mean() > 0.999
