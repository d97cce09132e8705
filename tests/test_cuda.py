"""CUDA gives the same results as CPU (float64). Skipped where no CUDA GPU is present."""
import pandas as pd
import pytest
import torch

from mouse_rl import ModelParams, simulate_cohort

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (CI has none)"),
]


@pytest.mark.parametrize("side_pref", [0.0, 1.5])
def test_cohort_cuda_equals_cpu_float64(side_pref):
    """side_pref: the innate side preference (the fused engine on both devices)."""
    kw = dict(n_mice=64, n_sessions=3, trials_per_session=220, seed=1,
              params=ModelParams(b_R=0.05, side_pref=side_pref, side_pref_tau=200.0),
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


@pytest.mark.parametrize("crosstalk", [0.0, 0.3])
def test_theory_cuda_equals_cpu_float64(crosstalk):
    from mouse_rl.theory import mean_field_trajectory

    kw = dict(params=ModelParams(b_R=0.05, crosstalk=crosstalk), n_sessions=3, record_every=220, dtype=torch.float64)
    cpu = mean_field_trajectory(device="cpu", **kw)
    gpu = mean_field_trajectory(device="cuda", **kw)
    torch.testing.assert_close(cpu.session_p_right, gpu.session_p_right.cpu())
    torch.testing.assert_close(cpu.session_U, gpu.session_U.cpu())


@pytest.mark.parametrize("crosstalk, side_pref", [(0.0, 0.0), (0.3, 0.0), (0.3, -2.0)])
def test_fit_likelihood_and_gradient_cuda_equal_cpu_float64(crosstalk, side_pref):
    from mouse_rl.fit import log_likelihood

    trials = simulate_cohort(3, 2, 100, seed=5, progress=False).trials
    values = {}
    for device in ("cpu", "cuda"):
        eta = torch.tensor(0.01, dtype=torch.float64, device=device, requires_grad=True)
        params = ModelParams(eta=eta, crosstalk=crosstalk, side_pref=side_pref, side_pref_tau=60.0)
        ll = log_likelihood(trials, params, device=device).sum()
        (grad,) = torch.autograd.grad(ll, eta)
        values[device] = (ll.item(), grad.item())
    assert values["cuda"][0] == pytest.approx(values["cpu"][0], rel=1e-10)
    assert values["cuda"][1] == pytest.approx(values["cpu"][1], rel=1e-8)


def test_laplace_predictive_cuda_equals_cpu_float64():
    from mouse_rl.fit.predictive import laplace_covariance, predictive_loglik

    out = {}
    for device in ("cpu", "cuda"):
        u = torch.tensor([[0.4, -1.0], [1.5, 0.2]], dtype=torch.float64, device=device)
        H = torch.tensor([[[3.0, 0.5], [0.5, 1.0]], [[0.2, 0.0], [0.0, -1.0]]], dtype=torch.float64, device=device)
        mask = torch.ones(3, 2, dtype=torch.bool, device=device)
        logp = lambda d: torch.nn.functional.logsigmoid(d.sum(-1) * torch.arange(1, 4, device=device)[:, None])  # noqa: E731
        out[device] = predictive_loglik(logp, u, laplace_covariance(H, 2.0), mask, n_samples=16, seed=4)
    for cpu, gpu in zip(out["cpu"], out["cuda"]):
        torch.testing.assert_close(cpu, gpu.cpu())
