"""Overnight weight drift of free-running copies (mouse_rl.fit.drift) and its use in the free-running fit."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ks_2samp

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.checks import copy_seeds, free_run, posterior_predictive_check
from mouse_rl.fit.drift import GROUPS, free_run_drift, session_starts, sigma_matrix, simulate_drifting
from mouse_rl.fit.freerun import check_free_running, fit_free_running
from mouse_rl.fit.transforms import ParamTransform
from mouse_rl.simulate import simulate_on_stimuli


def _batch_and_params(p: ModelParams, n_mice=3, n_sessions=6, n_trials=100, copies=4, seed=2):
    trials = simulate_cohort(n_mice, n_sessions, n_trials, p, seed=seed, dtype=torch.float64).trials
    trials = trials[~((trials.mouse == "sim0001") & (trials.session == n_sessions))]  # unequal lengths
    batch = make_batch(trials, "expected", "cpu", torch.float64)
    big = batch.repeat(copies)
    tr = ParamTransform()
    params = tr.params(tr.to_u({n: getattr(p, n) for n in tr.free}, big.shape[1]).double())
    return trials, batch, big, params, copy_seeds(batch.mice, copies, 0).reshape(-1)


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_zero_drift_reproduces_the_copies_exactly(engine):
    """Same engine, no drift: the copies of :func:`free_run` exactly (free_run's own engine on the CPU is the
    fused one; the reference engine's P(R) may differ from it in the last bit of exp, as the next test allows)."""
    _, _, big, params, seeds = _batch_and_params(ModelParams(eta=0.02, beta=8.0))
    c0, p0 = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine=engine)
    c1, p1 = free_run_drift(big, params, seeds, np.zeros((big.shape[1], 9)), engine=engine)
    assert torch.equal(c0, c1) and torch.equal(p0, p1)
    cf, pf = free_run(big, params, seeds)
    assert torch.equal(cf, c0)
    torch.testing.assert_close(pf, p0, rtol=1e-12, atol=1e-12)


def test_fused_and_reference_engines_give_the_same_drifting_copies():
    _, _, big, params, seeds = _batch_and_params(ModelParams(eta=0.02, beta=8.0))
    sd = sigma_matrix({"bias": 0.4, "stim": 0.2}, big.shape[1])
    cf, pf = free_run_drift(big, params, seeds, sd, engine="fused")
    cr, pr = free_run_drift(big, params, seeds, sd, engine="reference")
    assert torch.equal(cf, cr)
    torch.testing.assert_close(pf, pr, rtol=1e-12, atol=1e-12)
    c0, _ = free_run(big, params, seeds)
    assert not torch.equal(cf, c0)  # the drift does change the copies


def test_session_starts_mark_each_columns_own_boundaries():
    trials, batch, *_ = _batch_and_params(ModelParams(), n_sessions=4, n_trials=10)
    st = session_starts(batch)
    n_sess = trials.groupby("mouse")["session"].nunique().sort_index().to_numpy()
    np.testing.assert_array_equal(st.sum(0), n_sess - 1)
    assert not st[0].any()


def test_without_learning_the_log_weights_are_a_gaussian_random_walk():
    """eta = 0: weights change only overnight. On zero-contrast trials of session s, beta = 1, no lapse,
    logit P(R) = a_b (U_Rb - U_Lb) with each log-weight ~ N(log w_init, (s - 1) sigma^2): compare the
    copies' logits with a direct NumPy Monte Carlo of that formula (independent draws)."""
    K, S, sig = 400, 5, 0.3
    p = ModelParams(eta=0.01, beta=1.0, lapse=0.0, k=1.0, b_L=0.5, b_R=1.0)
    trials = simulate_cohort(1, S, 40, p, seed=4, dtype=torch.float64).trials
    batch = make_batch(trials, "expected", "cpu", torch.float64)
    big = batch.repeat(K)
    tr = ParamTransform()
    params = tr.params(tr.to_u({n: getattr(p, n) for n in tr.free}, K).double())
    params = params._replace(eta=torch.zeros(K, dtype=torch.float64))  # no learning (below the registry's range)
    _, pr = free_run_drift(big, params, copy_seeds(batch.mice, K, 3).reshape(-1), sigma_matrix({"bias": sig}, K))
    sess = batch.session[:, 0].numpy()
    zero = (batch.contrast[:, 0] == 0).numpy() & batch.valid[:, 0].numpy()
    pr = pr.numpy()
    for s in range(1, S + 1):  # within a session P(R) is constant (no learning)
        rows = np.flatnonzero(zero & (sess == s))
        assert np.ptp(pr[rows], axis=0).max() < 1e-12
    logit = np.log(pr[rows[0]] / (1 - pr[rows[0]]))  # last session
    g = np.random.default_rng(0).normal(0, sig * np.sqrt(S - 1), size=(3, 20000))
    truth = np.exp(g[0]) * (1.0 * np.exp(g[2]) - 0.5 * np.exp(g[1]))
    assert ks_2samp(logit, truth).pvalue > 0.01
    assert np.std(logit) == pytest.approx(np.std(truth), rel=0.15)


def test_bad_inputs_are_named():
    _, _, big, params, seeds = _batch_and_params(ModelParams(), n_sessions=2, n_trials=10)
    B = big.shape[1]
    with pytest.raises(ValueError, match="sigma_day: expected shape"):
        free_run_drift(big, params, seeds, np.zeros((B, 3)))
    with pytest.raises(ValueError, match="sigma_day: must be finite"):
        free_run_drift(big, params, seeds, -np.ones((B, 9)))
    with pytest.raises(ValueError, match="positive"):
        free_run_drift(big, params, seeds, np.zeros((B, 9)), positive=False)
    with pytest.raises(ValueError, match="drift: unknown group 'lapse'"):
        sigma_matrix({"lapse": 0.1}, B)
    with pytest.raises(ValueError, match="drift: unknown group"):
        fit_free_running(pd.DataFrame(), drift=("day",))
    assert set(GROUPS["bias"]) | set(GROUPS["stim"]) == set(range(9))


def _drifting_mice(sigmas, p: ModelParams, n_sessions=16, n_trials=150, seed=11):
    """Trial tables of mice simulated free-running with the given overnight bias drift (one per mouse)."""
    base = simulate_cohort(len(sigmas), n_sessions, n_trials, p, seed=seed, dtype=torch.float64).trials
    return simulate_drifting(base, p, sigma_matrix({"bias": np.asarray(sigmas, float)}, len(sigmas)), 1000 + seed)


def test_simulated_drifting_mice_without_drift_are_the_networks_copies():
    p = ModelParams(eta=0.02, beta=10.0, w0=0.3, s0=0.3, lapse=0.05, stim_skew=np.array([1.0, -1.0]))
    base = simulate_cohort(2, 3, 40, p, seed=4, dtype=torch.float64).trials
    sim = simulate_drifting(base, p, np.zeros((2, 9)), seed=9)
    batch = make_batch(sim, "expected", "cpu", torch.float64)
    tr = ParamTransform(free=(), fixed=p)
    choice, p_right = free_run(batch, tr.params(torch.zeros(2, 0, dtype=torch.float64)),
                               copy_seeds(batch.mice, 1, 9)[0])
    v = batch.valid.numpy()
    np.testing.assert_array_equal(batch.choice.numpy()[v], choice.numpy()[v])
    np.testing.assert_allclose(sim["p_right"].to_numpy(), batch.to_rows(p_right), rtol=0, atol=1e-12)
    right = sim["signed_contrast"] > 0
    assert (sim.loc[right, "reward"] == (sim.loc[right, "choice"] == 1)).all()
    assert set(sim["feedbackType"]) <= {-1.0, 1.0} and "q_tot_L" not in sim
    with pytest.raises(ValueError, match="params.zero_reward"):
        simulate_drifting(base, p.replace(zero_reward="random"), np.zeros((2, 9)))


P_TRUE = ModelParams(eta=0.02, beta=10.0, w0=0.3, s0=0.3, lapse=0.05)


def test_checks_are_calibrated_on_drifting_mice_only_with_their_drift():
    """Mice simulated with a strong bias drift: copies with the true drift cover their session accuracies
    at about the nominal 90%; copies without drift (the true parameters otherwise) do not."""
    sig = np.full(6, 0.8)
    trials = _drifting_mice(sig, P_TRUE)
    tr = ParamTransform()
    u = tr.to_u({n: getattr(P_TRUE, n) for n in tr.free}, len(sig)).numpy()
    H = np.broadcast_to(np.eye(tr.n_free), (len(sig), tr.n_free, tr.n_free))
    kw = dict(n_copies=60, seed=5, parameter_uncertainty=False)
    with_drift = posterior_predictive_check(trials, u, H, tr, sigma_day=sigma_matrix({"bias": sig}, len(sig)), **kw)
    without = posterior_predictive_check(trials, u, H, tr, **kw)
    assert with_drift.summary["session_coverage"] >= 0.8, with_drift.summary
    assert without.summary["session_coverage"] < with_drift.summary["session_coverage"] - 0.1, without.summary


def test_free_running_fit_recovers_which_mice_drift():
    """Fitted sigma_day_bias: large for mice simulated with a strong bias drift, small for mice without."""
    sig = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    trials = _drifting_mice(sig, P_TRUE, seed=12)
    fixed = P_TRUE
    res = fit_free_running(trials, free=("beta",), fixed=fixed, drift=("bias",), n_copies=8, n_starts=32, popsize=10,
                           n_elite=4, n_gen=4)
    got = res.params.set_index("mouse")["sigma_day_bias"].sort_index().to_numpy()
    assert res.sigma_day["bias"].shape == (len(sig),)
    np.testing.assert_allclose(res.sigma_day["bias"], got)
    assert np.median(got[3:]) > 0.4 and np.median(got[:3]) < 0.3, got
    assert np.median(got[3:]) > 3 * np.median(got[:3]), got
    # the check of a drift fit simulates its fitted drift (a fit without drift has none to pass on)
    assert res.sigma_day_matrix().shape == (len(sig), 9) and res.options["drift"] == ("bias",)
    chk = check_free_running(res, trials, n_copies=10, seed=3)
    assert chk.summary["n_mice"] == len(sig) and 0 <= chk.summary["session_coverage"] <= 1


def test_default_fit_has_no_drift():
    trials = _drifting_mice([0.0], P_TRUE, n_sessions=3, n_trials=40)
    res = fit_free_running(trials, free=("beta",), fixed=P_TRUE, n_copies=2, n_starts=4, popsize=2, n_elite=2,
                           n_gen=0)
    assert res.sigma_day == {} and res.sigma_day_matrix() is None and res.options["drift"] == ()
    assert not any(c.startswith("sigma_day") for c in res.params.columns)


def test_drift_on_top_of_fixed_parameters_keeps_them_and_finds_the_drift():
    """``theta``: the parameters are held (e.g. a teacher-forced fit); only sigma_day is searched."""
    sig = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    trials = _drifting_mice(sig, P_TRUE, seed=13)
    tr = ParamTransform(free=("beta", "eta"), fixed=P_TRUE)
    theta = tr.to_u({n: getattr(P_TRUE, n) for n in tr.free}, len(sig)).numpy()
    res = fit_free_running(trials, free=tr.free, fixed=P_TRUE, drift=("bias",), theta=theta, n_copies=8,
                           n_starts=16, popsize=8, n_elite=3, n_gen=3)
    np.testing.assert_array_equal(res.u, theta)
    got = res.sigma_day["bias"]
    # one trajectory per mouse identifies its drift only roughly: compare the groups' medians
    assert np.median(got[3:]) > 0.5 and np.median(got[:3]) < 0.3, got
    with pytest.raises(ValueError, match="theta: expected"):
        fit_free_running(trials, free=tr.free, fixed=P_TRUE, drift=("bias",), theta=theta[:2])
    with pytest.raises(ValueError, match="theta: fixed parameters"):
        fit_free_running(trials, free=tr.free, fixed=P_TRUE, theta=theta)


def test_drifting_check_of_a_mouse_does_not_depend_on_the_batch():
    trials = _drifting_mice([0.5, 0.5, 0.5], P_TRUE, n_sessions=5, n_trials=60, seed=14)
    trials = trials[~((trials.mouse == "sim0000") & (trials.session == 5))]  # boundaries differ between mice
    tr = ParamTransform()
    u = tr.to_u({n: getattr(P_TRUE, n) for n in tr.free}, 3).numpy()
    H = np.broadcast_to(np.eye(tr.n_free), (3, tr.n_free, tr.n_free))
    sd = sigma_matrix({"bias": [0.2, 0.5, 0.9], "stim": 0.3}, 3)
    kw = dict(n_copies=6, seed=2, parameter_uncertainty=False)
    both = posterior_predictive_check(trials, u, H, tr, sigma_day=sd, **kw).copies
    one = posterior_predictive_check(trials[trials.mouse == "sim0001"], u[1:2], H[1:2], tr, sigma_day=sd[1:2],
                                     **kw).copies
    pd.testing.assert_frame_equal(both[both.mouse == "sim0001"].reset_index(drop=True), one)
    with pytest.raises(ValueError, match="sigma_day: expected shape"):
        posterior_predictive_check(trials, u, H, tr, sigma_day=sd[:2], **kw)


def test_score_vector_adds_the_checks_summaries_scaled():
    from mouse_rl.fit.checks import _mouse_metrics, _session_table
    from mouse_rl.fit.freerun import score_vector, session_rates

    trials = _drifting_mice([0.3, 0.3], P_TRUE, n_sessions=9, n_trials=60, seed=15)
    batch = make_batch(trials, "expected", "cpu", torch.float64)
    ch = batch.choice.numpy()
    np.testing.assert_array_equal(score_vector(batch, ch), session_rates(batch, ch))
    v = score_vector(batch, ch, 0.5)
    mm = _mouse_metrics(_session_table(batch, ch.astype(float)))
    np.testing.assert_array_equal(v[:-2], session_rates(batch, ch))
    np.testing.assert_allclose(v[-2:], 0.5 * 3.0 * np.stack([mm["early_bias"], mm["late_slope_diff"]]))
    with pytest.raises(ValueError, match="summary_weight"):
        fit_free_running(trials, summary_weight=-1.0)
