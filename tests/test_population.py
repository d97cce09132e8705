"""Hierarchical fit: recovery of a known population; the Q-learning and shallow learners share the interface."""
import numpy as np
import pytest
import torch

from mouse_rl.baselines import QLearningModel
from mouse_rl.fit.cv import NetworkModel
from mouse_rl.fit.population import MapFit, fit_population, laplace_log_evidence, m_step
from mouse_rl.fit.prior import GaussianPrior
from mouse_rl.fit.transforms import ParamTransform
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort

FREE = ("eta", "beta", "w0")


@pytest.fixture(scope="module")
def population_cohort():
    tr = ParamTransform(free=FREE)
    mu = tr.to_u({"eta": 0.004, "beta": 8.0, "w0": 0.05}, 1)[0].numpy()
    sd = np.array([0.4, 0.3, 0.6])
    cov = np.diag(sd**2)
    cov[0, 1] = cov[1, 0] = -0.5 * sd[0] * sd[1]
    u = np.random.default_rng(1).multivariate_normal(mu, cov, size=36)
    p = tr.params(torch.as_tensor(u))
    params = ModelParams(**{n: getattr(p, n).numpy() for n in FREE}, jitter=0.0)
    trials = simulate_cohort(36, 6, 150, params=params, seed=3, dtype=torch.float64).trials
    return trials, u


def test_population_mean_and_spread_are_recovered(population_cohort):
    trials, u = population_cohort
    model = NetworkModel(trials, free=FREE, fit_lapse=False, n_restarts=2)
    pf = fit_population(model, n_iter=5)
    emp_mu, emp_sd = u.mean(0), u.std(0)
    assert np.all(np.abs(pf.prior.mean - emp_mu) < 0.25)
    assert np.all(pf.prior.sd / emp_sd > 0.6) and np.all(pf.prior.sd / emp_sd < 1.6)
    corr = pf.prior.cov[0, 1] / (pf.prior.sd[0] * pf.prior.sd[1])
    assert corr < 0  # the population's negative eta-beta correlation (true -0.5) keeps its sign
    # the evidence never decreases by more than the Newton tolerance from one EM iteration to the next
    assert np.all(np.diff(pf.history["log_evidence"]) > -1.0)
    # each mouse's MAP is pulled towards the population: closer to the truth than the weak-prior fit
    ind = NetworkModel(trials, free=FREE, fit_lapse=False, n_restarts=2).fit(np.ones(len(trials), bool))
    err_pop = np.abs(pf.u - u).mean()
    err_ind = np.abs(ind.u.numpy() - u).mean()
    assert err_pop < err_ind
    table = pf.params
    assert list(table["mouse"]) == sorted(trials["mouse"].unique()) and np.all(table["se_eta"] > 0)


def test_m_step_and_evidence_by_hand():
    prior = GaussianPrior.diagonal(("a", "b"), [0.0, 0.0], [2.0, 2.0])
    fit = MapFit(np.array([[1.0, 0.0], [-1.0, 2.0]]), np.array([3.0, 4.0]), np.zeros((2, 2, 2)))
    post = np.stack([np.eye(2) * 4.0] * 2)  # no data information: posterior = prior covariance
    new = m_step(fit, post, prior, kappa=0.0)
    assert np.allclose(new.mean, [0.0, 1.0])
    assert np.allclose(new.cov, (np.array([[2.0, -2.0], [-2.0, 2.0]]) + 8 * np.eye(2)) / 2)
    # with a flat likelihood (H = 0) the MAP is the prior mean and the Laplace evidence is exact: -nll
    flat = MapFit(np.zeros((2, 2)), fit.nll, fit.hessian)
    assert np.allclose(laplace_log_evidence(flat, prior), -fit.nll)


@pytest.mark.parametrize("factory", [
    lambda d: QLearningModel(d, tabular=True, n_restarts=1, max_iter=30),
    lambda d: NetworkModel.shallow(d, n_restarts=1, max_iter=30),
])
def test_every_learner_fits_a_population(factory):
    trials = simulate_cohort(6, 3, 60, seed=4, dtype=torch.float64).trials
    model = factory(trials)
    pf = fit_population(model, n_iter=2)
    P = len(model.free)
    assert pf.prior.mean.shape == (P,) and pf.u.shape == (6, P) and np.all(np.isfinite(pf.nll))
    assert np.all(np.linalg.eigvalsh(pf.prior.cov) > 0)
    assert len(pf.population()) == P


def test_fit_mice_population_returns_population_and_finite_laplace():
    from mouse_rl.fit import fit_mice

    trials = simulate_cohort(5, 3, 60, seed=6, dtype=torch.float64).trials
    res = fit_mice(trials, free=("eta", "beta", "b_R"), fit_lapse=False, n_restarts=3, max_iter=30,
                   population=True, population_iter=2, per_trial=False)
    assert res.population is not None and res.options["population"]
    assert np.all(np.isfinite(res.hessian)) and np.all(np.linalg.eigvalsh(res.hessian) > 0)
    assert np.allclose(res.u, res.population.u)
    with pytest.raises(ValueError, match="population"):
        fit_mice(trials, population=True, map_prior=False)


def test_cli_fit_population_writes_population_tables(tmp_path, capsys):
    import pandas as pd

    from mouse_rl.cli import main

    trials = simulate_cohort(4, 3, 50, seed=7, dtype=torch.float64).trials
    data = tmp_path / "cohort.parquet"
    trials.to_parquet(data)
    out = tmp_path / "fits"
    assert main(["fit", str(data), "--out", str(out), "--population", "--population-iter", "1", "--restarts", "1",
                 "--max-iter", "20", "--no-plots", "--quiet"]) == 0
    pop = pd.read_csv(out / "population.csv")
    assert list(pop["parameter"]) == ["eta", "beta", "w0", "s0", "b_L", "b_R", "lapse"]
    assert (out / "population_history.csv").exists() and (out / "fit_laplace.npz").exists()
    assert main(["fit", str(data), "--out", str(tmp_path / "bad"), "--population", "--ml"]) == 2
    assert "--population: needs the default MAP Newton fit" in capsys.readouterr().err
