"""Session effects (mouse_rl.fit.session_effects): a N(0, sd^2) logit offset and a log-normal gain on beta per
session of the free-running copies, their marginal likelihood under teacher forcing, and their fit."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.integrate import dblquad, quad
from scipy.special import expit

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit.batch import make_batch, prepare_trials
from mouse_rl.fit.checks import copy_seeds, free_run, posterior_predictive_check
from mouse_rl.fit.drift import free_run_drift, sigma_matrix
from mouse_rl.fit.session_effects import (fit_session_effects, heldout_loglik, marginal_loglik, session_gains,
                                         session_offsets)
from mouse_rl.fit.transforms import ParamTransform
from mouse_rl.network import stimulus_reward
from mouse_rl.simulate import simulate_on_stimuli
from test_drift import _batch_and_params


@pytest.mark.parametrize("sd", [0.05, 0.4, 1.5, 4.0])
def test_marginal_likelihood_equals_numerical_integration(sd):
    """Bias only: each session's integral over its offset, by adaptive quadrature, against scipy's quad."""
    g = np.random.default_rng(0)
    n, lapse = 240, 0.08
    logit = g.normal(0, 2, n)
    session = np.repeat([3, 7, 9], [30, 90, 120])  # any labels, sessions of unequal length
    right = g.random(n) < expit(logit + np.repeat([1.0, -0.6, 0.2], [30, 90, 120]))
    total = 0.0
    for s in np.unique(session):
        k = session == s

        def integrand(o, k=k):
            p = 0.5 * lapse + (1 - lapse) * expit(logit[k] + o)
            ll = np.where(right[k], np.log(p), np.log1p(-p)).sum()
            return np.exp(ll + 80) * np.exp(-0.5 * (o / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

        v, _ = quad(integrand, -14 * sd, 14 * sd, points=[0.0], limit=500, epsabs=0, epsrel=1e-12)
        total += np.log(v) - 80
    assert marginal_loglik(logit, np.zeros(n), right, session, lapse, sd) == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize("bias_sd, gain_sd", [(0.5, 0.3), (1.2, 0.5), (0.0, 0.6), (0.8, 0.0)])
def test_two_dimensional_marginal_equals_numerical_integration(bias_sd, gain_sd):
    """Bias and gain: each session's double integral, by adaptive quadrature, against scipy (independent)."""
    g = np.random.default_rng(0)
    n, lapse = 160, 0.08
    value, offset = g.normal(0, 2, n), g.normal(0, 0.3, n)
    session = np.repeat([3, 7], [40, 120])
    right = g.random(n) < expit(np.repeat([1.5, 0.7], [40, 120]) * value + offset + np.repeat([1.0, -0.6], [40, 120]))
    total = 0.0
    for s in np.unique(session):
        k = session == s

        def integrand(y, x, k=k):  # x: the standard offset, y: the standard log gain
            p = 0.5 * lapse + (1 - lapse) * expit(np.exp(gain_sd * y) * value[k] + offset[k] + bias_sd * x)
            ll = np.where(right[k], np.log(p), np.log1p(-p)).sum()
            return np.exp(ll + 60) * np.exp(-(x * x + y * y) / 2) / (2 * np.pi)

        if gain_sd == 0:
            v = quad(lambda x: integrand(0.0, x) * np.sqrt(2 * np.pi), -9, 9, limit=400, epsabs=0, epsrel=1e-11)[0]
        elif bias_sd == 0:
            v = quad(lambda y: integrand(y, 0.0) * np.sqrt(2 * np.pi), -9, 9, limit=400, epsabs=0, epsrel=1e-11)[0]
        else:
            v = dblquad(integrand, -9, 9, -9, 9, epsabs=0, epsrel=1e-10)[0]
        total += np.log(v) - 60
    assert marginal_loglik(value, offset, right, session, lapse, bias_sd, gain_sd) == pytest.approx(total, abs=2e-4)


def test_marginal_likelihood_at_zero_sd_is_the_plain_likelihood():
    g = np.random.default_rng(1)
    logit, right, session = g.normal(0, 1, 50), g.random(50) < 0.5, np.repeat([0, 1], 25)
    p = 0.5 * 0.1 + 0.9 * expit(logit)
    plain = np.where(right, np.log(p), np.log1p(-p)).sum()
    half = logit / 2  # value and offset are summed
    assert marginal_loglik(half, half, right, session, 0.1, 0.0, 0.0) == pytest.approx(plain, abs=1e-12)
    assert marginal_loglik(half, half, right, session, 0.1, 1e-7, 1e-7) == pytest.approx(plain, abs=1e-6)


def test_session_offsets_are_constant_within_a_session_and_own_to_each_column():
    trials, batch, big, params, seeds = _batch_and_params(ModelParams())
    sd = np.linspace(0.5, 2.0, big.shape[1])
    off = session_offsets(big, seeds, sd).numpy()
    sess, valid = big.session.numpy(), big.valid.numpy()
    assert np.all(off[~valid] == 0)
    for b in range(big.shape[1]):
        values = pd.Series(off[valid[:, b], b]).groupby(sess[valid[:, b], b]).nunique()
        assert (values == 1).all()  # one offset per session
        assert len(np.unique(off[valid[:, b], b])) == len(values)  # and a new one every session
    # a column's offsets depend on its seed only: alone, or with other partners, the same numbers
    alone = session_offsets(big.repeat(1), seeds, sd).numpy()
    np.testing.assert_array_equal(alone, off)
    M = batch.shape[1]  # the first M columns of ``big`` are copy 0 of each mouse
    np.testing.assert_array_equal(session_offsets(batch, seeds[:M], sd[:M]).numpy(), off[:, :M])
    # linear in sd; zero sd: no offset
    np.testing.assert_allclose(session_offsets(big, seeds, 2 * sd).numpy(), 2 * off, rtol=1e-15)
    assert not session_offsets(big, seeds, 0.0).numpy().any()


def test_session_offsets_are_standard_normal():
    trials = simulate_cohort(200, 10, 5, ModelParams(), seed=0, dtype=torch.float64).trials
    batch = make_batch(trials, "expected", "cpu", torch.float64)
    seeds = copy_seeds(batch.mice, 1, 3)[0]
    off = session_offsets(batch, seeds, 1.0).numpy()
    opens = batch.valid.numpy() & np.r_[[np.ones(batch.shape[1], bool)],
                                        batch.session.numpy()[1:] != batch.session.numpy()[:-1]]
    eps = off[opens]
    assert len(eps) == 2000
    assert abs(eps.mean()) < 0.1 and abs(eps.std() - 1) < 0.06


def test_session_gains_are_log_normal_once_a_session_and_one_on_padding():
    trials, batch, big, params, seeds = _batch_and_params(ModelParams())
    gain = session_gains(big, seeds, 0.7).numpy()
    sess, valid = big.session.numpy(), big.valid.numpy()
    assert np.all(gain[~valid] == 1) and np.all(gain > 0)
    for b in range(big.shape[1]):
        assert (pd.Series(gain[valid[:, b], b]).groupby(sess[valid[:, b], b]).nunique() == 1).all()
    # its own stream: not the offsets' normals
    eps = np.log(gain[valid]) / 0.7
    assert not np.allclose(eps, session_offsets(big, seeds, 1.0).numpy()[valid])
    assert np.all(session_gains(big, seeds, 0.0).numpy() == 1)


@pytest.mark.parametrize("pref", [0.0, 1.5])
def test_fused_and_reference_engines_take_the_same_session_effects(pref):
    """Offsets beside the side preference and gains on beta: the fused engine equals the reference rollout
    (choices exactly, P(R) to 1e-12), also in segments with overnight drift; zero effects change nothing."""
    _, _, big, params, seeds = _batch_and_params(ModelParams(eta=0.02, beta=8.0))
    params = params._replace(side_pref=torch.full_like(params.eta, pref), side_pref_tau=torch.full_like(params.eta, 90.))
    off, gain = session_offsets(big, seeds, 1.2), session_gains(big, seeds, 0.6)
    for kw in (dict(offset=off), dict(gain=gain), dict(offset=off, gain=gain)):
        cf, pf = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="fused", **kw)
        cr, pr = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="reference", **kw)
        assert torch.equal(cf, cr)
        torch.testing.assert_close(pf, pr, rtol=1e-12, atol=1e-12)
        c0, p0 = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="fused")
        assert not torch.equal(cf, c0)  # the effects do change the copies
    cz, pz = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="fused", offset=torch.zeros_like(off),
                                 gain=torch.ones_like(gain))
    assert torch.equal(cz, c0) and torch.equal(pz, p0)
    sd = sigma_matrix({"bias": 0.3, "stim": 0.2}, big.shape[1])
    df, qf = free_run_drift(big, params, seeds, sd, engine="fused", offset=off, gain=gain)
    dr, qr = free_run_drift(big, params, seeds, sd, engine="reference", offset=off, gain=gain)
    assert torch.equal(df, dr)
    torch.testing.assert_close(qf, qr, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="gain"):
        simulate_on_stimuli(big.contrast, big.valid, params, seeds, gain=-gain)
    with pytest.raises(ValueError, match="offset"):
        simulate_on_stimuli(big.contrast, big.valid, params, seeds, offset=off[:, :2])


def test_reference_policy_adds_the_offset_and_scales_beta():
    """By hand: with eta = 0 the weights stay at their start, so P(R) on each trial is the start policy with
    its logit scaled by the trial's gain and shifted by its offset."""
    p = ModelParams(beta=3.0, lapse=0.1, b_R=0.4)
    _, _, big, params, seeds = _batch_and_params(p, n_mice=1, n_sessions=3, n_trials=20, copies=2)
    params = params._replace(eta=torch.zeros_like(params.eta))
    off, gain = session_offsets(big, seeds, 0.8), session_gains(big, seeds, 0.5)
    _, p_ref = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="reference", offset=off, gain=gain)
    _, p_plain = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="reference")
    logit = torch.logit((p_plain - 0.05) / 0.9)
    expect = 0.05 + 0.9 * torch.sigmoid(gain * logit + off)
    v = big.valid
    torch.testing.assert_close(p_ref[v], expect[v], rtol=1e-10, atol=1e-12)


def _simulated_with_session_effects(bias_sd, gain_sd=None, n_sessions=25, n_trials=150, seed=5):
    """Mice simulated free-running from MODEL.md-like parameters, each with its own session-effect sds."""
    p = ModelParams(eta=0.02, beta=8.0)
    M = len(bias_sd)
    gain_sd = np.zeros(M) if gain_sd is None else np.asarray(gain_sd, float)
    trials = simulate_cohort(M, n_sessions, n_trials, p, seed=seed, dtype=torch.float64).trials
    df = prepare_trials(trials)
    batch = make_batch(df, "expected", "cpu", torch.float64, prepared=True)
    params = ModelParams(eta=0.02, beta=8.0).tensors(M, dtype=torch.float64)
    seeds = copy_seeds(batch.mice, 1, 11)[0]
    choice, _ = free_run(batch, params, seeds, offset=session_offsets(batch, seeds, np.asarray(bias_sd, float)),
                         gain=session_gains(batch, seeds, gain_sd))
    out = df.copy()
    out["choice"] = batch.to_rows(choice).astype(int)
    reward = stimulus_reward(out["signed_contrast"].to_numpy(), out["choice"].to_numpy()).astype(float)
    zero = out["signed_contrast"].to_numpy() == 0  # learned as 0.5 (zero_reward "expected"): any coin will do
    reward[zero] = np.random.default_rng(seed).random(int(zero.sum())) < 0.5
    out["reward"], out["feedbackType"] = reward, 2 * reward - 1
    return out, p, batch, seeds


def _drawn_sd(batch, seeds, draw, sd):
    """Root mean square of each column's drawn per-session effects (log gains for ``session_gains``)."""
    v = draw(batch, seeds, sd).numpy()
    v = np.log(v) if draw is session_gains else v
    return np.array([np.sqrt(np.mean(np.unique(v[batch.valid[:, b].numpy(), b]) ** 2)) for b in range(v.shape[1])])


def test_session_bias_sd_is_recovered_on_simulated_mice():
    """Mice simulated with known bias sds (0 to 1.5, 40 sessions) and no gain: the bias-only fit at the true
    parameters recovers the sd of each mouse's drawn offsets within 0.2; the sd-0 mouse gains little."""
    true = np.array([0.0, 0.5, 1.0, 1.5])
    trials, p, batch, seeds = _simulated_with_session_effects(true, n_sessions=40)
    drawn = _drawn_sd(batch, seeds, session_offsets, true)
    fit = fit_session_effects(trials, p, gain=False)
    assert list(fit["mouse"]) == sorted(trials["mouse"].unique())
    est = fit["session_bias_sd"].to_numpy()
    np.testing.assert_allclose(est, drawn, atol=0.2)
    assert np.all(fit["session_gain_sd"] == 0)
    assert fit["loglik_gain"].iloc[0] < 3 and fit["loglik_gain"].iloc[-1] > 20
    assert est[0] < est[1] < est[2]


def test_session_gain_sd_is_recovered_beside_the_bias():
    """Mice simulated with a bias (sd 0.6) and gains of sd 0, 0.4 and 0.8, both sds fitted together: the bias
    comes back near the drawn one (within 0.2), the gain sds in order, the mouse without gains near 0, the middle
    one within 0.2 of its drawn sd (the largest tends high: 1.07 against 0.69 drawn here)."""
    bias, gain = np.full(3, 0.6), np.array([0.0, 0.4, 0.8])
    trials, p, batch, seeds = _simulated_with_session_effects(bias, gain, n_sessions=40)
    fit = fit_session_effects(trials, p)
    np.testing.assert_allclose(fit["session_bias_sd"], _drawn_sd(batch, seeds, session_offsets, bias), atol=0.2)
    g = fit["session_gain_sd"].to_numpy()
    drawn = _drawn_sd(batch, seeds, session_gains, gain)
    assert g[0] < 0.2 and abs(g[1] - drawn[1]) < 0.2 and g[2] > 0.5
    assert g[0] < g[1] < g[2]


def test_check_with_session_effects_widens_the_bands_and_zero_changes_nothing():
    trials, p, *_ = _simulated_with_session_effects(np.array([0.8, 0.8]), n_sessions=8, n_trials=100)
    tr = ParamTransform(fixed=p)
    u = tr.to_u({n: getattr(p, n) for n in tr.free}, 2).numpy()
    H = np.broadcast_to(np.eye(tr.n_free), (2, tr.n_free, tr.n_free))
    kw = dict(n_copies=20, seed=1, parameter_uncertainty=False)
    plain = posterior_predictive_check(trials, u, H, tr, **kw)
    zero = posterior_predictive_check(trials, u, H, tr, session_bias_sd=[0.0, 0.0], session_gain_sd=[0, 0], **kw)
    pd.testing.assert_frame_equal(plain.per_session, zero.per_session)
    wide = posterior_predictive_check(trials, u, H, tr, session_bias_sd=[0.8, 0.8], session_gain_sd=[0.5, 0.5], **kw)
    width = lambda c: (c.per_session["accuracy_hi"] - c.per_session["accuracy_lo"]).mean()  # noqa: E731
    assert width(wide) > width(plain)
    for bad in (dict(session_bias_sd=[0.8, -1.0]), dict(session_gain_sd=[0.8, 0.8, 0.8])):
        with pytest.raises(ValueError, match=next(iter(bad))):
            posterior_predictive_check(trials, u, H, tr, **bad, **kw)


def test_check_of_mice_with_session_effects_is_calibrated_with_them_and_too_narrow_without():
    """Mice simulated with session effects (bias sd 1.2, gain sd 0.4) checked at the true parameters: with the
    effects the sessions' accuracies fall inside the copies' 5-95% bands near the nominal 90%; without, the
    bands miss more."""
    M = 8
    trials, p, *_ = _simulated_with_session_effects(np.full(M, 1.2), np.full(M, 0.4), n_sessions=12, n_trials=120,
                                                    seed=8)
    tr = ParamTransform(fixed=p)
    u = tr.to_u({n: getattr(p, n) for n in tr.free}, M).numpy()
    H = np.broadcast_to(np.eye(tr.n_free), (M, tr.n_free, tr.n_free))
    kw = dict(n_copies=100, seed=2, parameter_uncertainty=False)
    with_effects = posterior_predictive_check(trials, u, H, tr, session_bias_sd=np.full(M, 1.2),
                                              session_gain_sd=np.full(M, 0.4), **kw)
    without = posterior_predictive_check(trials, u, H, tr, **kw)
    assert with_effects.summary["session_coverage"] >= 0.85  # 88.5% (96 sessions)
    assert without.summary["session_coverage"] < with_effects.summary["session_coverage"] - 0.1  # 66.7%


def test_heldout_score_is_the_plugin_score_at_zero_sd_and_gains_on_mice_with_session_effects():
    """sd = 0: the teacher-forced log P(choice) summed over the test rows (independent: the library's read-out).
    Mice simulated with session effects: with the sds fitted on the first sessions, the later sessions are
    predicted better than at sd = 0 (time-aware split), and so are interleaved held-out trials."""
    from mouse_rl.fit.cv import interleaved_split, time_split
    from mouse_rl.fit.likelihood import teacher_forced

    trials, p, *_ = _simulated_with_session_effects(np.array([0.9, 1.2]), np.array([0.3, 0.3]), n_sessions=20,
                                                    n_trials=100)
    df = prepare_trials(trials)
    tf = teacher_forced(df, p)
    for train, test in (time_split(df), interleaved_split(df)):
        plug = heldout_loglik(df, p, 0.0, 0.0, train, test)
        expect = tf["logp_choice"][test].groupby(tf["mouse"][test]).sum().sort_index().to_numpy()
        np.testing.assert_allclose(plug["loglik"], expect, rtol=1e-10)
        assert list(plug["n_trials"]) == list(tf["mouse"][test].value_counts().sort_index())
        fit = fit_session_effects(df, p, rows=train)
        assert np.all(fit["session_bias_sd"] > 0.4)
        with_sd = heldout_loglik(df, p, fit["session_bias_sd"], fit["session_gain_sd"], train, test)
        assert np.all(with_sd["loglik"] > plug["loglik"] + 5)
    with pytest.raises(ValueError, match="train, test"):
        heldout_loglik(df, p, 0.5, 0.0, train, train)


def test_cli_fit_writes_the_session_effects_and_check_simulates_them(tmp_path, capsys):
    """``mouse-rl fit --session-effects`` adds the per-mouse sds (as ``fit_session_effects`` at the fitted
    parameters) to the table and fit_laplace.npz; ``mouse-rl check`` uses them (a note says so),
    ``--no-session-effects`` drops them; the flags are refused where they cannot apply, in one line."""
    import json

    from mouse_rl.cli import main

    trials, *_ = _simulated_with_session_effects(np.array([0.0, 1.0]), n_sessions=8, n_trials=80)
    path = tmp_path / "trials.parquet"
    trials[["mouse", "session", "trial", "signed_contrast", "choice", "reward"]].to_parquet(path)
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--out", str(out), "--restarts", "1", "--max-iter", "20", "--session-effects",
                 "--quiet", "--no-plots"]) == 0
    table = pd.read_parquet(out / "fit_results.parquet")
    expect = fit_session_effects(pd.read_parquet(out / "fit_trials.parquet"), table)
    for key in ("session_bias_sd", "session_gain_sd"):
        np.testing.assert_allclose(table[key], expect[key], rtol=1e-9)
        assert key in capsys.readouterr().out.splitlines()[0].split() if key == "session_bias_sd" else True
        with np.load(out / "fit_laplace.npz") as z:
            np.testing.assert_allclose(z[key], table[key])
    assert main(["check", str(out), "--copies", "6", "--no-plots", "--out", str(tmp_path / "c1")]) == 0
    assert "session_bias_sd" in capsys.readouterr().err
    assert main(["check", str(out), "--copies", "6", "--no-plots", "--no-session-effects",
                 "--out", str(tmp_path / "c2")]) == 0
    capsys.readouterr()
    with_effects = json.loads((tmp_path / "c1" / "check_summary.json").read_text())
    without = json.loads((tmp_path / "c2" / "check_summary.json").read_text())
    assert with_effects != without
    plain = tmp_path / "plain"
    assert main(["fit", str(path), "--out", str(plain), "--restarts", "1", "--max-iter", "5", "--quiet",
                 "--no-plots"]) == 0
    capsys.readouterr()
    for argv, needle in ((["check", str(plain), "--no-session-effects"], "--no-session-effects"),
                         (["fit", str(path), "--out", str(tmp_path / "x"), "--session-effects", "--criterion",
                           "free-running"], "--session-effects"),
                         (["fit", str(path), "--out", str(tmp_path / "y"), "--session-effects", "--model",
                           "noisy-network"], "--session-effects")):
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


def test_check_fit_takes_the_session_effects_table():
    """``check_fit(result, trials, session_effects=table)``: the copies get each mouse's sds (the same check as
    :func:`posterior_predictive_check` with them); a table lacking a mouse is refused by name."""
    from mouse_rl.fit import check_fit, fit_mice

    trials, *_ = _simulated_with_session_effects(np.array([0.0, 1.0]), n_sessions=6, n_trials=80)
    fit = fit_mice(trials, n_restarts=1, max_iter=10)
    table = fit_session_effects(trials, fit.params)
    a = check_fit(fit, trials, n_copies=6, seed=1, session_effects=table)
    order = np.argsort(fit.params["mouse"].astype(str).to_numpy(), kind="stable")
    b = posterior_predictive_check(trials, fit.u[order], fit.hessian[order], fit.transform, 6, 1,
                                   session_bias_sd=table["session_bias_sd"], session_gain_sd=table["session_gain_sd"])
    pd.testing.assert_frame_equal(a.per_session, b.per_session)
    with pytest.raises(ValueError, match="session_effects: no row for mice"):
        check_fit(fit, trials, n_copies=6, session_effects=table.iloc[:1])


@pytest.mark.parametrize("bias_sd, gain_sd", [(0.0, 0.0), (0.7, 0.0), (0.5, 0.4)])
def test_marginal_terms_are_the_marginal_derivatives(bias_sd, gain_sd):
    """marginal_terms' derivatives in each trial's value and offset and in the lapse against central finite
    differences of marginal_loglik (independent: the adaptive quadrature re-centred at every point)."""
    from mouse_rl.fit.session_effects import marginal_terms

    g = np.random.default_rng(3)
    n, lapse = 90, 0.06
    value, offset = g.normal(0, 1.5, n), g.normal(0, 0.3, n)
    session = np.repeat([0, 1, 2], 30)
    right = g.random(n) < expit(value + offset)
    ll, dv, do, dl = marginal_terms(value, offset, right, session, lapse, bias_sd, gain_sd)
    assert ll == pytest.approx(marginal_loglik(value, offset, right, session, lapse, bias_sd, gain_sd), abs=1e-12)
    h = 1e-5
    d = g.normal(0, 1, n)  # a random direction over the trials
    f = lambda v, o, lp: marginal_loglik(v, o, right, session, lp, bias_sd, gain_sd)  # noqa: E731
    assert dv @ d == pytest.approx((f(value + h * d, offset, lapse) - f(value - h * d, offset, lapse)) / (2 * h),
                                   rel=1e-4, abs=1e-6)
    assert do @ d == pytest.approx((f(value, offset + h * d, lapse) - f(value, offset - h * d, lapse)) / (2 * h),
                                   rel=1e-4, abs=1e-6)
    assert dl == pytest.approx((f(value, offset, lapse + h) - f(value, offset, lapse - h)) / (2 * h), rel=1e-4)


def test_teacher_forced_values_are_the_policy_terms():
    """teacher_forced_values (batch arrays) and policy_terms (the per-trial table built on it) against the
    teacher-forced read-outs of :func:`teacher_forced` (beta (Q_R - Q_L); the side preference by trial index)."""
    from mouse_rl.fit.likelihood import teacher_forced, teacher_forced_values
    from mouse_rl.fit.session_effects import policy_terms
    from mouse_rl.network import side_preference

    p = ModelParams(eta=0.02, beta=8.0, lapse=0.05, side_pref=0.8, side_pref_tau=300.0)
    trials = simulate_cohort(3, 4, 60, p, seed=1, dtype=torch.float64).trials
    tf = teacher_forced(trials, p)
    want_value = 8.0 * (tf["q_tot_R"] - tf["q_tot_L"]).to_numpy()
    t = torch.tensor(tf.groupby("mouse", sort=False).cumcount().to_numpy(float))
    want_offset = side_preference(t, torch.tensor(0.8, dtype=torch.float64),
                                  torch.tensor(300.0, dtype=torch.float64)).numpy()
    batch = make_batch(trials, "expected", "cpu", torch.float64)
    value, offset, lapse = teacher_forced_values(batch, p.tensors(3, dtype=torch.float64))
    np.testing.assert_allclose(batch.to_rows(torch.as_tensor(value)), want_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batch.to_rows(torch.as_tensor(offset)), want_offset, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lapse, 0.05)
    table = policy_terms(trials, p)
    np.testing.assert_allclose(table["value"], want_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(table["offset"], want_offset, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(table["right"], tf["choice"].to_numpy() == 1)
    np.testing.assert_allclose(table["lapse"], 0.05)
    with pytest.raises(ValueError, match="float64"):
        teacher_forced_values(make_batch(trials, "expected", "cpu", torch.float32), p.tensors(3))
