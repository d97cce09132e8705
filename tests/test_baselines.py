"""Baselines (Q-learning, tabular Q-learning, PsyTrack, shallow network) on the shared CV interface."""
import numpy as np
import pytest
import torch

from mouse_rl.baselines import PsyTrackModel, QLearningModel, default_models, simulate_qlearning
from mouse_rl.fit.cv import cross_validate, interleaved_split, summarise, time_split
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort


@pytest.fixture(scope="module")
def sim():
    res = simulate_cohort(2, 4, 120, ModelParams(eta=0.02, b_R=0.1), seed=5, dtype=torch.float64, progress=False)
    return res.trials


@pytest.mark.parametrize("scheme", ["time", "interleaved"])
def test_all_models_finite_bits(sim, scheme):
    models = default_models(q_kw=dict(n_restarts=1, max_iter=10), n_restarts=1, max_iter=8)
    cv = cross_validate(sim, models, scheme, progress=False)
    assert set(cv.model) == {"network", "shallow", "psytrack", "qlearning", "qlearning_tabular"}
    assert np.isfinite(cv.bits_per_trial).all() and (cv.bits_per_trial <= 0).all()
    assert np.isfinite(cv.fit_seconds).all()
    n = cv.groupby("model")["n_trials"].sum()
    assert n.nunique() == 1  # same folds for every model
    s = summarise(cv)
    assert set(s.columns) >= {"bits_per_trial_total", "fit_seconds_total"}


def test_psytrack_predicts_held_out_from_preceding_weights(sim):
    train, test = interleaved_split(sim, every=10)
    m = PsyTrackModel(sim).fit(train)
    gw = m.logit_right()
    assert np.isfinite(gw).all()
    held = m.score(test)
    assert (held["n_trials"] == [48, 48]).all()
    assert (held["bits_per_trial"] > -1.2).all()


@pytest.mark.slow
def test_qlearning_recovers_its_parameters():
    rng = np.random.default_rng(0)
    n_mice, T = 12, 1000
    c = rng.choice([-0.5, -0.25, 0.0, 0.25, 0.5], size=(n_mice, T), p=[0.3, 0.15, 0.1, 0.15, 0.3])
    beta = rng.uniform(3, 12, n_mice)
    a_pos = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n_mice))
    q_l, q_r = rng.uniform(0.2, 0.8, n_mice), rng.uniform(0.2, 0.8, n_mice)
    trials = simulate_qlearning(c, beta, a_pos, 0.2, q_l, q_r, tabular=False, seed=1)
    m = QLearningModel(trials, n_restarts=1, max_iter=40).fit(np.ones(len(trials), bool))
    fit = m.fitted_params()
    print(np.corrcoef(fit["beta"], beta)[0, 1], np.corrcoef(np.log(fit["alpha_pos"]), np.log(a_pos))[0, 1])
    assert np.corrcoef(fit["beta"], beta)[0, 1] > 0.6
    assert np.corrcoef(np.log(fit["alpha_pos"]), np.log(a_pos))[0, 1] > 0.6
    bits = m.score(np.ones(len(trials), bool))["bits_per_trial"]
    assert np.isfinite(bits).all()


def test_time_split_on_baseline(sim):
    train, test = time_split(sim)
    q = QLearningModel(sim, n_restarts=1, max_iter=10).fit(train)
    s = q.score(test)
    assert np.isfinite(s["bits_per_trial"]).all() and (s["n_trials"] == 240).all()
