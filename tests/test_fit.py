"""Likelihood, gradients, fitting, recovery and CV of the network fit (mouse_rl.fit)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl.fit import (fit_mice, log_likelihood, make_batch, make_transform, teacher_forced)
from mouse_rl.fit.cv import NetworkModel, cross_validate, interleaved_split, time_split
from mouse_rl.fit.fitting import NetworkObjective
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort

TRUE = ModelParams(eta=0.02, beta=8.0, w0=0.1, s0=0.25, b_L=0.05, b_R=0.2, lapse=0.05)


@pytest.fixture(scope="module")
def sim():
    return simulate_cohort(6, 6, 150, TRUE, seed=3, dtype=torch.float64, progress=False)


def test_teacher_forced_reproduces_simulation(sim):
    tf = teacher_forced(sim.trials, TRUE)
    ref = sim.trials.sort_values(["mouse", "session", "trial"]).reset_index(drop=True)
    # only the 1e-5 initial jitter of the simulation differs
    np.testing.assert_allclose(tf["p_right"], ref["p_right"], atol=1e-3)
    np.testing.assert_allclose(tf["delta_stim"], ref["delta_stim"], atol=1e-3)
    assert {"a_L", "U_Rb", "q_const_R", "logp_choice"} <= set(tf.columns)


def test_teacher_forced_equals_simulation_without_jitter():
    """With no initial jitter, fitting's teacher-forced run is the simulation's run, to float64 round-off."""
    params = TRUE.replace(jitter=0.0)
    sim0 = simulate_cohort(3, 3, 120, params, seed=7, dtype=torch.float64)
    tf = teacher_forced(sim0.trials, params)
    ref = sim0.trials.sort_values(["mouse", "session", "trial"]).reset_index(drop=True)
    for col in ("p_right", "q_tot_L", "q_tot_R", "delta_tot", "delta_stim", "delta_const"):
        np.testing.assert_allclose(tf[col], ref[col], rtol=0, atol=1e-12)


def test_likelihood_peaks_at_true_parameters(sim):
    ll_true = log_likelihood(sim.trials, TRUE).sum()
    for name, factor in [("eta", 3.0), ("beta", 1.6), ("s0", 2.5), ("b_R", 2.5), ("b_L", 6.0), ("lapse", 3.0)]:
        v = getattr(TRUE, name)
        for f in (factor, 1 / factor):
            ll = log_likelihood(sim.trials, TRUE.replace(**{name: v * f})).sum()
            assert ll < ll_true, (name, f, float(ll), float(ll_true))


def test_padding_and_masks_do_not_change_other_mice(sim):
    trials = sim.trials
    short = trials[~((trials.mouse == "sim0000") & (trials.session > 3))]
    ll_all = log_likelihood(short, TRUE)
    ll_alone = log_likelihood(short[short.mouse == "sim0001"], TRUE)
    assert torch.allclose(ll_all[1], ll_alone[0])
    ll0 = log_likelihood(short[short.mouse == "sim0000"], TRUE)
    assert torch.allclose(ll_all[0], ll0[0])


def test_gradient_matches_finite_differences(sim):
    trials = sim.trials[sim.trials.session <= 3]
    batch = make_batch(trials)
    tr = make_transform(fixed=TRUE)
    obj = NetworkObjective(batch, tr, batch.valid, batch.valid)
    u = tr.to_u(TRUE.to_dict(), batch.shape[1]).requires_grad_(True)
    f = obj(u)
    (g,) = torch.autograd.grad(f.sum(), u)
    h = 1e-6
    for j in range(u.shape[1]):
        e = torch.zeros_like(u)
        e[:, j] = h
        with torch.no_grad():
            fd = (obj(u + e) - obj(u - e)) / (2 * h)
        np.testing.assert_allclose(g[:, j].numpy(), fd.numpy(), rtol=1e-5, atol=1e-6)


def test_fit_improves_likelihood_and_reports(sim):
    trials = sim.trials[sim.trials.mouse.isin(["sim0000", "sim0001"])]
    res = fit_mice(trials, n_restarts=2, max_iter=15, progress=False)
    p = res.params
    assert list(p.mouse) == ["sim0000", "sim0001"]
    ll_true = log_likelihood(trials, TRUE).numpy()
    assert np.all(p["loglik"].to_numpy() >= ll_true - 1.0)
    for col in ("BIC", "AIC", "bits_per_trial", "se_eta", "n_trials"):
        assert col in p
    assert np.allclose(p["BIC"], 7 * np.log(p["n_trials"]) - 2 * p["loglik"])
    assert len(res.trials) == len(trials) and res.trials["p_right"].between(0, 1).all()
    assert set(res.restarts["restart"]) == {0, 1}


def test_fit_validates_input(sim):
    bad = sim.trials.copy()
    bad.loc[0, "choice"] = 3
    with pytest.raises(ValueError):
        fit_mice(bad, n_restarts=1, max_iter=1, progress=False)


def test_cv_interleaved_excludes_held_out_choices_from_objective(sim):
    trials = sim.trials[sim.trials.mouse == "sim0002"].reset_index(drop=True)
    train, test = interleaved_split(trials, every=10)
    assert test.sum() == math.ceil(len(trials) / 10) and not (train & test).any()
    tr = make_transform(fixed=TRUE)
    u = tr.to_u(TRUE.to_dict(), 1)
    flip_row = int(np.flatnonzero(test)[3])
    flipped = trials.copy()
    flipped.loc[flip_row, "choice"] = 1 - flipped.loc[flip_row, "choice"]
    flipped[["reward", "feedbackType"]] = np.nan  # let the learning reward follow the (flipped) choice
    orig = trials.assign(reward=np.nan, feedbackType=np.nan)
    b0, b1 = make_batch(orig), make_batch(flipped)

    def objective(b, rows):
        return NetworkObjective(b, tr, b.mask_from_rows(rows), b.valid)(u)

    # the flipped held-out choice is not in the training objective of its own trial...
    only_row = np.zeros(len(trials), bool)
    only_row[flip_row] = True
    assert torch.allclose(objective(b0, only_row & train), objective(b1, only_row & train))
    # ...but the learner sees it: later training trials' probabilities change
    assert not torch.allclose(objective(b0, train), objective(b1, train))
    # and the held-out score changes
    assert not torch.allclose(objective(b0, test), objective(b1, test))


def test_time_split_is_per_mouse_prefix(sim):
    train, test = time_split(sim.trials, train_frac=0.5)
    df = sim.trials.sort_values(["mouse", "session", "trial"]).reset_index(drop=True)
    assert (df.loc[train, "session"] <= 3).all() and (df.loc[test, "session"] > 3).all()


def test_cross_validate_network(sim):
    trials = sim.trials[sim.trials.mouse.isin(["sim0000", "sim0001"])]
    models = {"network": lambda d: NetworkModel(d, n_restarts=1, max_iter=15),
              "shallow": lambda d: NetworkModel.shallow(d, n_restarts=1, max_iter=15)}
    cv = cross_validate(trials, models, "time", progress=False)
    assert set(cv.model) == {"network", "shallow"} and len(cv) == 4
    assert np.isfinite(cv.bits_per_trial).all() and (cv.bits_per_trial < 0).all()
    assert (cv.n_trials == 450).all()


@pytest.mark.slow
def test_parameter_recovery_30_mice():
    from mouse_rl.fit.recovery import parameter_recovery

    summary, table, _ = parameter_recovery(n_mice=30, n_sessions=8, trials_per_session=150, seed=1,
                                           n_restarts=1, max_iter=40)
    r = summary.set_index("parameter")["pearson_r"]
    print(summary)
    assert r["eta"] >= 0.8 and r["beta"] >= 0.8 and r["b_R-b_L"] >= 0.8, summary


def test_real_mouse_smoke(liebana_dir):
    from mouse_rl.data import load_liebana2025

    trials = load_liebana2025(liebana_dir, mice=["DAP039"])
    trials = trials[trials.session <= 3]
    res = fit_mice(trials, n_restarts=1, max_iter=5, progress=False, compute_se=False)
    assert np.isfinite(res.params["loglik"]).all()
    assert res.trials["p_right"].between(0, 1).all()


def test_adam_and_map_prior_run(sim):
    trials = sim.trials[(sim.trials.mouse == "sim0003") & (sim.trials.session <= 2)]
    res = fit_mice(trials, n_restarts=2, max_iter=5, method="adam", map_prior=True, fit_lapse=False,
                   compute_se=False, per_trial=False, progress=False)
    assert np.isfinite(res.params["loglik"]).all() and (res.params["lapse"] == 0).all()
    assert res.trials.empty


def test_strategy_labels_and_plot(sim):
    from mouse_rl.fit.labels import strategy_labels
    from mouse_rl.fit.plots import plot_mouse_fit

    tf = teacher_forced(sim.trials, TRUE)
    per_mouse, per_session = strategy_labels(tf)
    assert len(per_mouse) == 6 and set(per_mouse["learner_side_data"].dropna()) <= {"left", "balanced", "right"}
    assert len(per_session) == 36 and per_session["strategy_model"].notna().all()
    fig = plot_mouse_fit(tf, "sim0001")
    assert len(fig.axes) == 3


def test_cli_fit_and_recover(sim, tmp_path, capsys):
    from mouse_rl.cli import main

    path = tmp_path / "trials.csv"
    sim.trials[sim.trials.mouse.isin(["sim0000", "sim0001"]) & (sim.trials.session <= 2)][
        ["mouse", "session", "trial", "contrastLeft", "contrastRight", "signed_contrast", "choice", "reward",
         "feedbackType"]].to_csv(path, index=False)
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--out", str(out), "--restarts", "1", "--max-iter", "2", "--quiet"]) == 0
    table = pd.read_parquet(out / "fit_results.parquet")
    assert list(table["mouse"]) == ["sim0000", "sim0001"] and (out / "plots" / "sim0000.png").exists()
    assert (out / "fit_trials.parquet").exists()
    assert main(["fit", str(path), "--out", str(tmp_path / "cv"), "--restarts", "1", "--max-iter", "2", "--quiet",
                 "--no-plots", "--cv", "time", "--samples", "8"]) == 0
    table = pd.read_parquet(tmp_path / "cv" / "fit_results.parquet")
    assert np.isfinite(table[["cv_time_bits_per_trial", "cv_time_bits_per_trial_plugin"]].to_numpy()).all()
    assert main(["fit", str(path), "--out", str(tmp_path / "bad"), "--samples", "0", "--quiet"]) != 0
    assert "--samples: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["recover", "--mice", "4", "--sessions", "1", "--trials", "60", "--restarts", "1",
                 "--max-iter", "2", "--out", str(tmp_path / "rec")]) == 0
    assert (tmp_path / "rec" / "recovery_summary.csv").exists()


def test_distributed_fit_equals_per_chunk_fits():
    """Fitting mice in chunks on worker processes gives exactly the per-chunk batched fits, merged."""
    from mouse_rl.fit.distributed import fit_mice_distributed

    trials = simulate_cohort(4, 2, 60, params=ModelParams(eta=0.02), seed=9, progress=False).trials
    kw = dict(n_restarts=1, max_iter=10, fit_lapse=False, compute_se=False)
    split = fit_mice_distributed(trials, 2, backend="local", workers=2, **kw)
    mice = sorted(trials.mouse.unique())
    direct = pd.concat([fit_mice(trials[trials.mouse.isin(chunk)], progress=False, **kw).params
                        for chunk in (mice[:2], mice[2:])], ignore_index=True)
    assert split.options["chunks"] == 2
    np.testing.assert_allclose(split.params[["eta", "beta", "loglik"]], direct[["eta", "beta", "loglik"]], rtol=1e-9)
    assert len(split.trials) == len(trials)


def test_cli_fit_malformed_mouse_needs_single_block(liebana_dir, tmp_path, capsys):
    from mouse_rl.cli import main

    path = str(liebana_dir / "DAP044_data.npy")
    common = ["--out", str(tmp_path), "--max-iter", "2", "--restarts", "1", "--quiet", "--no-plots"]
    assert main(["fit", path, *common]) == 2
    assert "session_lengths" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="one unknown-session block"):
        assert main(["fit", path, "--single-block", *common]) == 0
    assert (tmp_path / "fit_results.parquet").exists()


def test_fit_warns_about_mice_with_too_few_trials():
    import warnings as w

    from mouse_rl import simulate_cohort
    from mouse_rl.fit.fitting import FewTrialsWarning

    trials = simulate_cohort(2, 1, 30, seed=2).trials
    trials = trials[(trials.mouse == "sim0001") | (trials.trial < 5)]  # sim0000: 5 trials, sim0001: 30
    with pytest.warns(FewTrialsWarning, match=r"fewer than 140 trials for 7 fitted parameters: sim0000 \(5\), "
                                               r"sim0001 \(30\)"):
        fit_mice(trials, n_restarts=1, max_iter=2, per_trial=False)
    with w.catch_warnings():
        w.simplefilter("error", FewTrialsWarning)
        fit_mice(simulate_cohort(1, 1, 150, seed=2).trials, n_restarts=1, max_iter=2, per_trial=False)
