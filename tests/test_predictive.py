"""Laplace posterior-predictive scoring: closed forms, quadrature, Hessians, and the CV models."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from mouse_rl.baselines import QLearningModel
from mouse_rl.fit.cv import NetworkModel, cross_validate, summarise, time_split
from mouse_rl.fit.fitting import NetworkObjective
from mouse_rl.fit.optim import batched_hessian
from mouse_rl.fit.predictive import laplace_covariance, laplace_samples, predictive_loglik
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort

D = torch.float64


@pytest.fixture(scope="module")
def sim():
    res = simulate_cohort(3, 4, 100, ModelParams(eta=0.02, b_R=0.1), seed=11, dtype=D, progress=False)
    return res.trials


def test_laplace_covariance_closed_form():
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=D)
    saddle = torch.tensor([[3.0, 0.0], [0.0, -4.0]], dtype=D)
    nan = torch.full((2, 2), float("nan"), dtype=D)
    cov = laplace_covariance(torch.stack([A, saddle, nan]), prior_sd=2.0)
    torch.testing.assert_close(cov[0], torch.linalg.inv(A + torch.eye(2, dtype=D) / 4))
    torch.testing.assert_close(cov[1], torch.diag(torch.tensor([1 / (3 + 0.25), 4.0], dtype=D)))  # -4 clipped to 0
    torch.testing.assert_close(cov[2], 4 * torch.eye(2, dtype=D))  # no usable curvature: the prior alone
    with pytest.raises(ValueError, match="prior_sd"):
        laplace_covariance(A[None], 0.0)


def test_laplace_covariance_is_the_population_posterior_precision_inverted():
    """Issue 14: one Laplace precision (mouse_rl.fit.population.posterior_precisions) behind both."""
    from mouse_rl.fit.population import posterior_precisions
    from mouse_rl.fit.prior import GaussianPrior

    H = np.random.default_rng(0).normal(size=(4, 3, 3))
    sd = np.array([0.5, 2.0, 3.0])
    prior = GaussianPrior(("a", "b", "c"), np.zeros(3), np.diag(sd ** 2))
    np.testing.assert_allclose(laplace_covariance(torch.as_tensor(H), torch.as_tensor(sd)).numpy(),
                               np.linalg.inv(posterior_precisions(H, prior)), rtol=1e-13)


def test_optimiser_thread_setting_is_a_parameter_restored_on_return():
    """Issue 14: the library changes torch's process-wide thread count only inside a call, restoring it."""
    from mouse_rl.fit.optim import minimize_batched, torch_threads

    obj = lambda u: ((u - 1.0) ** 2).sum(-1)  # noqa: E731
    before = torch.get_num_threads()
    seen = []
    with torch_threads(before + 1):
        seen.append(torch.get_num_threads())
    assert seen == [before + 1] and torch.get_num_threads() == before
    u0 = torch.zeros(2, 2, dtype=torch.float64)
    minimize_batched(obj, u0, torch.ones(2, dtype=torch.float64), max_iter=3, progress=False, threads=1)
    batched_hessian(obj, u0, threads=1)
    assert torch.get_num_threads() == before
    batched_hessian(lambda u: (seen.append(torch.get_num_threads()) or obj(u)), u0, threads=None)
    assert seen[-1] == before


def test_samples_have_the_requested_moments():
    u = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=D)
    cov = torch.stack([torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=D), 0.01 * torch.eye(2, dtype=D)])
    s = laplace_samples(u, cov, 40000, seed=3)
    assert torch.equal(s[0], u)
    torch.testing.assert_close(s.mean(0), u, atol=0.02, rtol=0)
    for m in range(2):
        torch.testing.assert_close(torch.cov(s[:, m].T), cov[m], atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="n_samples"):
        laplace_samples(u, cov, 0)


def test_predictive_matches_quadrature_for_a_logistic_choice():
    # one Bernoulli choice per mouse, P(choice) = sigmoid(u): E[sigmoid(u)], u ~ N(mu, s^2), by quadrature
    mu = torch.tensor([[1.5], [-0.5]], dtype=D)
    var = torch.tensor([0.8, 2.0], dtype=D)
    cov = var[:, None, None]

    def logp(draws):  # (K*M, 1) -> (1, K*M)
        return torch.nn.functional.logsigmoid(draws[:, 0])[None]

    pred, plug = predictive_loglik(logp, mu, cov, torch.ones(1, 2, dtype=torch.bool), n_samples=40000, seed=1)
    for m in range(2):
        s = math.sqrt(var[m])
        exact, _ = integrate.quad(lambda z: special.expit(float(mu[m, 0]) + s * z) * math.exp(-z * z / 2)
                                  / math.sqrt(2 * math.pi), -12, 12)
        assert abs(math.exp(pred[m]) - exact) < 0.01
        assert math.isclose(float(plug[m]), math.log(special.expit(float(mu[m, 0]))), rel_tol=1e-12)


def test_tiny_covariance_gives_the_plugin_score():
    u = torch.tensor([[0.3], [2.0]], dtype=D)
    cov = 1e-14 * torch.ones(2, 1, 1, dtype=D)
    mask = torch.tensor([[True, False], [True, True]])
    logp = lambda d: torch.stack([torch.nn.functional.logsigmoid(d[:, 0]), torch.nn.functional.logsigmoid(-d[:, 0])])  # noqa: E731
    pred, plug = predictive_loglik(logp, u, cov, mask, n_samples=8)
    torch.testing.assert_close(pred, plug, atol=1e-6, rtol=0)
    expected = torch.tensor([math.log(special.expit(0.3)) + math.log(special.expit(-0.3)),
                             math.log(special.expit(-2.0))], dtype=D)
    torch.testing.assert_close(plug, expected)


def test_fd_hessian_matches_autograd_on_the_network(sim):
    model = NetworkModel(sim)
    b, tr = model.batch, model.transform
    obj = NetworkObjective(b, tr, b.valid, b.valid)
    from mouse_rl.fit.transforms import INIT_DEFAULT

    u = tr.to_u(INIT_DEFAULT, b.shape[1], dtype=D) + 0.1
    H = batched_hessian(obj, u, "autograd")
    H_fd = batched_hessian(obj, u, "fd", step=1e-4)
    torch.testing.assert_close(H_fd, H, atol=1e-3 * float(H.abs().max()), rtol=1e-3)
    with pytest.raises(ValueError, match="method"):
        batched_hessian(obj, u, "exact")


@pytest.mark.parametrize("factory", [
    lambda df, **kw: NetworkModel(df, n_restarts=1, max_iter=10, **kw),
    lambda df, **kw: QLearningModel(df, n_restarts=1, max_iter=10, tabular=True, **kw),
], ids=["network", "tabular_q"])
def test_cv_models_report_predictive_and_plugin(sim, factory):
    cv_lap = cross_validate(sim, {"m": lambda df: factory(df, predictive="laplace", n_samples=16)}, "time",
                            progress=False)
    cv_plug = cross_validate(sim, {"m": lambda df: factory(df)}, "time", progress=False)
    assert np.isfinite(cv_lap[["loglik", "loglik_plugin"]].to_numpy()).all()
    assert (cv_lap["loglik"] < 0).all()
    # draw 0 is the point estimate: the plug-in column equals plug-in scoring of the same fit
    np.testing.assert_allclose(cv_lap["loglik_plugin"], cv_plug["loglik"], rtol=1e-9)
    s = summarise(cv_lap)
    assert "bits_per_trial_plugin_total" in s


def test_posterior_sd_is_positive_and_within_the_prior(sim):
    # fit on session 1 only, score the later sessions
    train, test = time_split(sim, n_train_sessions=1)
    m = NetworkModel(sim, n_restarts=1, max_iter=15, predictive="laplace", n_samples=64).fit(train)
    sd = torch.sqrt(torch.diagonal(m.cov, dim1=-2, dim2=-1))
    assert (sd > 0).all() and (sd <= 2.0 + 1e-9).all()  # never wider than the weak prior
    held = m.score(test)
    assert np.isfinite(held["bits_per_trial"]).all()


def test_bad_predictive_names_the_field(sim):
    with pytest.raises(ValueError, match="predictive"):
        NetworkModel(sim, predictive="bayes")
    with pytest.raises(ValueError, match="predictive"):
        QLearningModel(sim, predictive="bayes")


def test_predictive_score_is_additive_over_masks_and_refit_resets_it(sim):
    train, test = time_split(sim)
    m = QLearningModel(sim, n_restarts=1, max_iter=5, predictive="laplace", n_samples=8).fit(train)
    a, b, both = m.score(test), m.score(train), m.score(np.ones(len(train), bool))
    np.testing.assert_allclose(a["loglik"] + b["loglik"], both["loglik"], rtol=1e-12)
    np.testing.assert_allclose(a["loglik_plugin"] + b["loglik_plugin"], both["loglik_plugin"], rtol=1e-12)
    m.fit(test)  # another fit: new parameters, new posterior, new scores
    assert not np.allclose(m.score(test)["loglik"], a["loglik"])
