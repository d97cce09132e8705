"""Fits you can trust: batch independence, flagged failures, identifiability, posterior-predictive checks."""
import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl.fit import fit_mice, teacher_forced
from mouse_rl.fit.checks import check_fit, posterior_predictive_check
from mouse_rl.fit.labels import strategy_from_policy, strategy_labels
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort

#: A cohort with right-, left- and balanced learners: deep network, different start biases.
COHORT = ModelParams(eta=0.03, beta=8.0, w0=0.1, s0=0.25, b_L=np.array([0.02, 0.3, 0.02, 0.3, 0.05, 0.05]),
                     b_R=np.array([0.3, 0.02, 0.3, 0.02, 0.05, 0.05]), lapse=0.03)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(6, 10, 200, COHORT, seed=11, dtype=torch.float64)


@pytest.fixture(scope="module")
def fitted(cohort):
    return fit_mice(cohort.trials, n_restarts=4, seed=0)


def test_mouse_fitted_alone_equals_mouse_in_batch(cohort, fitted):
    for mouse in ("sim0001", "sim0004"):
        alone = fit_mice(cohort.trials[cohort.trials.mouse == mouse], n_restarts=4, seed=0, per_trial=False)
        a = alone.params.iloc[0]
        b = fitted.params.set_index("mouse").loc[mouse]
        for name in ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse", "loglik"):
            assert a[name] == pytest.approx(b[name], rel=1e-10, abs=1e-12), name
        assert a["stop_reason"] == b["stop_reason"] and a["n_iter"] == b["n_iter"]


def test_fit_reports_convergence_identifiability_and_finite_se(fitted):
    p = fitted.params
    assert p["converged"].all(), p[["mouse", "stop_reason"]]
    assert set(p["stop_reason"]) <= {"gradient", "crease"}
    assert (p["n_restarts_at_best"] >= 1).all() and (p["n_restarts_at_best"] <= 4).all()
    se = p[[f"se_{n}" for n in fitted.transform.free]].to_numpy()
    assert np.isfinite(se).all() and p["se_status"].str.match("ok|crease").all()
    assert p["n_identified"].between(0, len(fitted.transform.free)).all()
    assert fitted.u.shape == (6, 7) and fitted.hessian.shape == (6, 7, 7)
    assert np.all(np.linalg.eigvalsh(fitted.hessian) > 0)


def test_bad_fits_are_flagged_not_returned_as_converged(cohort):
    res = fit_mice(cohort.trials[cohort.trials.mouse == "sim0000"], n_restarts=1, max_iter=1, per_trial=False)
    assert not res.params["converged"].iloc[0] and res.params["stop_reason"].iloc[0] == "max_iter"


def test_map_prior_keeps_lapse_off_its_bound(cohort):
    """A mouse whose early choices are all one side: ML may push the lapse to its bound, MAP must not."""
    p = fit_mice(cohort.trials[cohort.trials.mouse.isin(["sim0000", "sim0001"])], n_restarts=2,
                 per_trial=False).params
    assert (p["lapse"] < 0.3).all()


def test_checks_are_calibrated_on_mice_simulated_from_the_model():
    """Fit 16 simulated mice, check them: coverage near the nominal 90%, sides calibrated."""
    r = np.random.default_rng(0)
    truth = ModelParams(eta=0.03, beta=8.0, w0=0.1, s0=0.25, b_L=r.uniform(0.01, 0.3, 16),
                        b_R=r.uniform(0.01, 0.3, 16), lapse=0.03)
    sim = simulate_cohort(16, 10, 200, truth, seed=5, dtype=torch.float64)
    fit = fit_mice(sim.trials, n_restarts=2, per_trial=False)
    check = check_fit(fit, sim.trials, n_copies=60, seed=1)
    s = check.summary
    assert s["n_mice"] == 16 and s["n_copies"] == 60 and len(check.copies) == 16 * 60
    assert s["session_coverage"] >= 0.85, check.per_mouse
    assert s["late_slope_inside"] >= 13 and s["early_bias_inside"] >= 13 and s["late_bias_inside"] >= 13, s
    pm = check.per_mouse
    assert ((pm["late_bias"] >= pm["late_bias_lo"]) & (pm["late_bias"] <= pm["late_bias_hi"])
            == pm["late_bias_inside"]).all()
    # the real late bias is the mean of P(R | 0) - 0.5 over each mouse's last 5 sessions
    t = sim.trials[sim.trials["signed_contrast"] == 0]
    by_session = t.groupby(["mouse", "session"])["choice"].mean() - 0.5
    late = by_session.groupby("mouse").apply(lambda v: v.iloc[-5:].mean())
    np.testing.assert_allclose(pm.set_index("mouse")["late_bias"], late.loc[pm["mouse"]].to_numpy(), atol=1e-12)
    assert abs(s["mean_side_share"] - s["expected_side_share"]) < 0.15, s
    # the modal-side matches are as many as a calibrated model expects (sum of the copies' modal shares)
    assert np.isclose(s["expected_side_match"], pm["side_modal_share"].sum())
    assert (pm["side_modal_share"] >= 1 / 3).all() and (pm["side_modal_share"] <= 1).all()
    assert abs(s["side_match"] - s["expected_side_match"]) <= 4, s
    assert set(check.per_session.columns) >= {"accuracy", "accuracy_lo", "accuracy_hi", "accuracy_inside"}
    # the fitted model learning from each mouse's choices is one of its own paths: inside the copies' bands
    assert s["teacher_forced_coverage"] >= 0.85, s
    # the cohort's relations of the simulated mice lie inside the band of the copies' cohorts
    assert s["r_early_bias_late_slope_diff_inside"] and s["r_early_bias_late_bias_inside"], s


def test_check_copies_do_not_depend_on_the_batch(cohort, fitted):
    one = cohort.trials[cohort.trials.mouse == "sim0002"]
    m = 2
    a = posterior_predictive_check(one, fitted.u[m:m + 1], fitted.hessian[m:m + 1], fitted.transform, 8, seed=4)
    b = check_fit(fitted, cohort.trials, n_copies=8, seed=4)
    np.testing.assert_array_equal(a.copies["late_slope_diff"].to_numpy(),
                                  b.copies[b.copies.mouse == "sim0002"]["late_slope_diff"].to_numpy())


def test_teacher_forced_accuracy_of_the_check_is_the_fitted_models_on_the_mouses_choices(cohort, fitted):
    """The check's accuracy_teacher_forced = the session mean of teacher_forced's P(correct) at the fit."""
    check = check_fit(fitted, cohort.trials, n_copies=8, seed=2)
    tf = teacher_forced(cohort.trials, fitted.params)
    t = tf[tf["signed_contrast"] != 0]
    p_correct = np.where(t["signed_contrast"] > 0, t["p_right"], 1 - t["p_right"])
    expected = pd.Series(p_correct, index=t.index).groupby([t["mouse"], t["session"]]).mean()
    ps = check.per_session.set_index(["mouse", "session"])
    np.testing.assert_allclose(ps["accuracy_teacher_forced"], expected.loc[ps.index].to_numpy(), rtol=0, atol=1e-12)
    inside = (ps["accuracy_teacher_forced"] >= ps["accuracy_lo"]) & (ps["accuracy_teacher_forced"] <= ps["accuracy_hi"])
    assert (inside == ps["teacher_forced_inside"]).all()
    assert check.summary["teacher_forced_coverage"] == pytest.approx(inside.mean())
    by_mouse = inside.groupby(level="mouse").mean()
    pm = check.per_mouse.set_index("mouse")
    np.testing.assert_allclose(pm["teacher_forced_coverage"], by_mouse.loc[pm.index].to_numpy())


def test_check_rejects_bad_input(cohort, fitted):
    with pytest.raises(ValueError, match="n_copies"):
        check_fit(fitted, cohort.trials, n_copies=1)
    with pytest.raises(ValueError, match="u: expected shape"):
        posterior_predictive_check(cohort.trials, fitted.u[:2], fitted.hessian[:2], fitted.transform)


def test_policy_labels_match_true_weights(cohort, fitted):
    """Labels from the fitted end-of-session weights (beta-aware) agree with the true network's labels."""
    true_tf = teacher_forced(cohort.trials, COHORT)
    _, true_sessions = strategy_labels(true_tf, pd.DataFrame({"mouse": sorted(cohort.trials.mouse.unique()),
                                                              "beta": 8.0, "lapse": 0.03}))
    _, fit_sessions = strategy_labels(fitted.trials, fitted.params)
    agree = (true_sessions["strategy_model"].to_numpy() == fit_sessions["strategy_model"].to_numpy()).mean()
    assert agree >= 0.8, agree


def test_policy_psychometric_closed_form():
    a = np.array([[0.5, 0.2, 1.0]])
    U = np.array([[[1.0, 0.1, 0.2], [0.3, 0.9, 0.4]]])
    lab = strategy_from_policy(pd.DataFrame(np.c_[a, U.reshape(1, 6)], columns=[
        "a_L", "a_R", "a_b", "U_LL", "U_LR", "U_Lb", "U_RL", "U_RR", "U_Rb"]), beta=5.0, lapse=0.1)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    pz = 0.05 + 0.9 * sig(5 * (0.4 - 0.2))
    pl = 0.05 + 0.9 * sig(5 * ((0.3 * 0.5 + 0.4) - (1.0 * 0.5 + 0.2)))
    pr = 0.05 + 0.9 * sig(5 * ((0.9 * 0.2 + 0.4) - (0.1 * 0.2 + 0.2)))
    np.testing.assert_allclose(lab[["p_right_left", "p_right_zero", "p_right_right"]].to_numpy()[0], [pl, pz, pr])


def test_cli_fit_then_check(cohort, tmp_path, capsys):
    from mouse_rl.cli import main

    path = tmp_path / "trials.parquet"
    cohort.trials[cohort.trials.mouse.isin(["sim0000", "sim0001"])][
        ["mouse", "session", "trial", "signed_contrast", "choice", "reward"]].to_parquet(path)
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--out", str(out), "--restarts", "2", "--quiet", "--no-plots"]) == 0
    assert (out / "fit_laplace.npz").exists() and (out / "fit_options.json").exists()
    assert (out / "mouse_rl_run.json").exists()  # written as one set, marker last
    table = pd.read_parquet(out / "fit_results.parquet")
    assert {"converged", "stop_reason", "n_restarts_at_best", "n_identified", "se_status"} <= set(table.columns)
    capsys.readouterr()
    assert main(["check", str(out), "--copies", "10"]) == 0
    printed = capsys.readouterr().out
    assert "sessions inside the copies' 5-95% band" in printed and "a calibrated model expects" in printed
    assert "learning from the mouse's own choices is inside the band" in printed
    assert "accuracy_teacher_forced" in pd.read_csv(out / "check" / "check_per_session.csv").columns
    per_mouse = pd.read_csv(out / "check" / "check_per_mouse.csv")
    assert list(per_mouse["mouse"]) == ["sim0000", "sim0001"]
    assert (out / "check" / "plots" / "sim0000.png").exists() and (out / "check" / "mouse_rl_run.json").exists()
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder written by `mouse-rl fit`" in capsys.readouterr().err


def test_restart_design_spans_the_start_box_beyond_init_range():
    """The Sobol starts cover the registry's start_range (where real mice's optima lie), not just init_range."""
    from mouse_rl.fit.fitting import make_transform
    from mouse_rl.fit.transforms import START_RANGES
    from mouse_rl.params import PARAMS, NetParams

    tr = make_transform()
    starts = tr.starts(32, seed=3)
    theta, _, _ = tr.natural(starts[1:])
    cols = {n: NetParams._fields.index(n) for n in tr.free}
    for name in tr.free:
        v = theta[:, cols[name]]
        lo, hi = START_RANGES[name]
        assert np.all(v >= lo * (1 - 1e-9)) and np.all(v <= hi * (1 + 1e-9)), name
        if PARAMS[name].start_range:  # a wider box: some starts lie beyond init_range's top
            assert v.max() > PARAMS[name].init_range[1], name


def test_basin_hopping_rounds_do_not_depend_on_batch_partners(liebana_dir):
    """Real mice: DAP051's second hop round finds an optimum 2.4 nats better (seed 0). Whether a mouse hops a
    round must depend on its own gains only: alone it reaches the same optimum as beside DAP022 (whose first
    round gains; the fit used to stop every mouse's hopping when no mouse gained)."""
    from mouse_rl.data import load_liebana2025
    trials = load_liebana2025(liebana_dir)
    pair = fit_mice(trials[trials.mouse.isin(["DAP051", "DAP022"])], seed=0, per_trial=False)
    alone = fit_mice(trials[trials.mouse == "DAP051"], seed=0, per_trial=False)
    p = pair.params.set_index("mouse").loc["DAP051"]
    a = alone.params.iloc[0]
    assert a["log_posterior"] == pytest.approx(p["log_posterior"], rel=1e-10, abs=1e-9)
    for name in ("eta", "beta", "w0", "s0", "b_L", "b_R", "lapse"):
        assert a[name] == pytest.approx(p[name], rel=1e-8, abs=1e-12), name


def test_labels_from_weights_read_back_from_parquet_raise_no_warning(tmp_path):
    import warnings

    from mouse_rl.schema import WEIGHT_COLUMNS

    w = pd.DataFrame(np.abs(np.random.default_rng(0).normal(size=(4, 9))), columns=WEIGHT_COLUMNS)
    w["mouse"] = "m"
    w.to_parquet(tmp_path / "w.parquet")
    back = pd.read_parquet(tmp_path / "w.parquet")  # arrays may come back read-only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = strategy_from_policy(back, beta=5.0, lapse=0.0)
    pd.testing.assert_frame_equal(got, strategy_from_policy(w, beta=5.0, lapse=0.0))


def test_a_mouse_without_a_finite_hessian_keeps_its_point_estimate_in_the_draws():
    from mouse_rl.fit.checks import posterior_samples

    u = np.array([[0.1, 0.2], [0.3, 0.4]])
    H = np.stack([np.eye(2) * 4.0, np.full((2, 2), np.nan)])
    d = posterior_samples(u, H, 1e3, 500, seed=3, mice=["a", "b"])
    assert np.all(d[:, 1] == u[1])
    np.testing.assert_allclose(d[:, 0].std(0), 0.5, rtol=0.1)  # sd = 1 / sqrt(4)


def test_cohort_relations_pair_copy_k_of_every_mouse():
    """Copy k of mouse m = the mouse's own metrics plus small noise: every simulated cohort then has about the
    real r (a band around it); pairing copies across mice wrongly would scramble it towards 0."""
    from mouse_rl.fit.checks import cohort_relations

    r = np.random.default_rng(4)
    M, K = 12, 40
    eb = r.normal(0, 0.2, M)
    real = {"early_bias": eb, "late_slope_diff": 2 * eb + r.normal(0, 0.1, M), "late_bias": -eb + r.normal(0, 0.2, M)}
    sim = {k: (np.tile(v, K) + r.normal(0, 0.01, K * M)) for k, v in real.items()}  # column k * M + m
    out = cohort_relations(real, sim, K)
    want = np.corrcoef(real["early_bias"], real["late_slope_diff"])[0, 1]
    assert out["r_early_bias_late_slope_diff"] == pytest.approx(want, abs=1e-12)
    assert out["r_early_bias_late_slope_diff_inside"] and out["r_early_bias_late_bias_inside"]
    assert out["r_early_bias_late_slope_diff_hi"] - out["r_early_bias_late_slope_diff_lo"] < 0.05
    few = {k: v[:2] for k, v in real.items()}
    assert cohort_relations(few, {k: np.tile(v, K) for k, v in few.items()}, K) == {}


def test_to_u_accepts_read_only_arrays_without_warning():
    import warnings

    from mouse_rl.fit.transforms import ParamTransform

    v = np.array([0.01, 0.02])
    v.flags.writeable = False  # as pandas hands out columns read from parquet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        u = ParamTransform(free=("eta",)).to_u({"eta": v}, 2)
    np.testing.assert_allclose(u[:, 0].numpy(), np.log(v))


def test_in_the_papers_regime_the_fitted_copies_keep_the_cohort_relations():
    """Mice simulated with MODEL.md's parameters (biases emerge and reverse, as in the paper): the default
    per-mouse fit's copies reproduce the signs of both cohort relations and cover the sessions."""
    sim = simulate_cohort(12, 25, 220, ModelParams(), seed=5, dtype=torch.float64)
    fit = fit_mice(sim.trials, n_restarts=2, per_trial=False)
    s = check_fit(fit, sim.trials, n_copies=40, seed=1).summary
    assert s["r_early_bias_late_slope_diff"] > 0.5 and s["r_early_bias_late_bias"] < 0, s  # the paper's signs
    assert s["r_early_bias_late_slope_diff_median"] > 0.5 and s["r_early_bias_late_bias_median"] < 0, s
    assert s["session_coverage"] >= 0.85, s
