"""The graded (saturating) contrast encoding: values, and fit kernel == autograd through trial_update."""
import numpy as np
import pytest
import torch

from envs import TaskConfig
from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.kernel import nll_derivatives
from mouse_rl.fit.likelihood import choice_logprob
from mouse_rl.network import GRADED_C50, encode, graded_contrast
from mouse_rl.params import ENCODINGS, NetParams


def test_graded_values_and_shape():
    c = torch.tensor([-1.0, -0.5, -0.25, -0.0625, 0.0, 0.0625, 0.25, 0.5, 1.0], dtype=torch.float64)
    x = encode(c, "graded")
    assert x.shape == (9, 3) and torch.all(x[:, 2] == 1)
    assert torch.allclose(x[0], torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))  # full contrast = side input
    assert torch.all(x[4, :2] == 0)
    g = x[5:, 1]
    assert torch.all(g[1:] > g[:-1]) and torch.all(x[:4, 1] == 0) and torch.all(x[5:, 0] == 0)
    # saturating: g(0.25) / g(0.5) is the documented 0.93
    r = float(graded_contrast(torch.tensor(0.25)) / graded_contrast(torch.tensor(0.5)))
    assert r == pytest.approx(0.93, abs=0.005)
    assert float(graded_contrast(torch.tensor(GRADED_C50, dtype=torch.float64))) == pytest.approx((1 + GRADED_C50 ** 2) / 2)
    assert "graded" in ENCODINGS and ModelParams(encoding="graded").encoding == "graded"
    with pytest.raises(ValueError, match="encoding"):
        encode(c, "bogus")


def test_graded_gradient_finite_at_zero():
    c = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    encode(c, "graded").sum().backward()
    assert torch.isfinite(c.grad).all()


@pytest.mark.parametrize("use_lapse", [True, False])
def test_fit_kernel_matches_autograd_graded(use_lapse):
    res = simulate_cohort(n_mice=2, n_sessions=2, params=ModelParams(eta=0.05, lapse=0.1, b_R=0.1, encoding="graded"),
                          seed=5, task=TaskConfig((-1.0, -0.25, -0.0625, 0.0, 0.0625, 0.25, 1.0),
                                                  (0.2, 0.15, 0.1, 0.1, 0.1, 0.15, 0.2)))
    batch = make_batch(res.trials).crop(150)
    T, B = batch.shape
    r = np.random.default_rng(0)
    theta = np.column_stack([r.uniform(0.01, 0.15, B), r.uniform(2, 12, B), r.uniform(0.02, 0.6, B),
                             r.uniform(0.5, 2, B), r.uniform(0.05, 0.6, B), r.uniform(0.0, 0.3, B),
                             r.uniform(0.0, 0.3, B), r.uniform(0.01, 0.2, B)])
    valid = batch.valid
    x = encode(batch.contrast, "graded").permute(1, 0, 2).numpy()
    assert len(np.unique(x[..., :2].round(6))) > 3  # graded inputs really are graded
    nll, g, H = nll_derivatives(x, batch.choice.T.numpy(), batch.reward.T.numpy(), valid.T.numpy(), valid.T.numpy(),
                                batch.n_trials.numpy(), theta, True, use_lapse)
    for m in range(B):
        s = slice(m, m + 1)
        col = type(batch)(batch.mice[s], batch.contrast[:, s], batch.choice[:, s], batch.reward[:, s],
                          batch.valid[:, s], batch.session[:, s], batch.row[:, s], batch.n_trials[s])

        def f(th):
            p = NetParams(*[th[i:i + 1] for i in range(8)])
            return -(choice_logprob(col, p, "graded", True, valid[:, s], use_lapse) * valid[:, s]).sum()

        th = torch.tensor(theta[m], dtype=torch.float64)
        assert abs(float(f(th)) - nll[m]) <= 1e-12 * abs(nll[m])
        gt = torch.autograd.functional.jacobian(f, th).numpy()
        Ht = torch.autograd.functional.hessian(f, th).numpy()
        assert np.abs(gt - g[m]).max() <= 1e-11 * max(1.0, np.abs(gt).max())
        assert np.abs(Ht - H[m]).max() <= 1e-11 * max(1.0, np.abs(Ht).max())


def test_graded_in_simulation_and_theory():
    """Simulation (batched cohort) and the mean-field step use the same graded inputs as the fit."""
    from mouse_rl.network import Weights
    from mouse_rl.theory import mean_field_step

    task = TaskConfig((-1.0, -0.25, 0.0, 0.25, 1.0), (0.3, 0.15, 0.1, 0.15, 0.3))
    params = ModelParams(eta=1e-4, encoding="graded", positive=False)
    res = simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=30, params=params, task=task, seed=1)
    assert len(res.trials) == 60
    rng = np.random.default_rng(1)
    a, U = rng.uniform(0.1, 1.0, 3), rng.uniform(0.0, 1.0, (2, 3))
    out = mean_field_step(Weights(torch.tensor(a), torch.tensor(U)), params, task)
    exp_a = np.zeros(3)
    for c, p_c in zip(task.contrasts, task.probabilities):  # brute-force expectation of one update of a
        x = encode(torch.tensor(c, dtype=torch.float64), "graded").numpy()
        h = a * x
        q = U @ h
        p_r = 1 / (1 + np.exp(-9.0 * (q[1] - q[0])))
        for o, p_o in ((0, 1 - p_r), (1, p_r)):
            r = 0.5 if c == 0 else float(o == (c > 0))
            exp_a += p_c * p_o * (a + 1e-4 * (r - q[o]) * U[o] * x)
    np.testing.assert_allclose(out.weights.a[0].numpy(), exp_a, rtol=0, atol=1e-13)
