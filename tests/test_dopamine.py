"""Tests of mouse_rl.dopamine: read-outs, recordings, regression recovery, optogenetics, joint fit, CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mouse_rl
from mouse_rl.dopamine import (
    OptoProtocol, align_recordings, compare_opto, contralateral_view, delta_regression, joint_fit,
    load_recordings, normalise_per_session, opto_step, peak_response, plot_delta_over_sessions,
    plot_delta_vs_contrast, readout_table, regress_recordings, simulate_opto, summarise_readouts,
    synthetic_recordings, tidy_readouts,
)
from mouse_rl.network import Weights, encode, trial_update

#: amplitude SNR std(gain * delta) / std(noise) within session, i.e. the carried delta explains
#: SNR^2 / (1 + SNR^2) = 69 % of the within-session variance at 1.5.
RECOVERY_SNR = 1.5


@pytest.fixture(scope="module")
def cohort40():
    return mouse_rl.simulate_cohort(n_mice=40, n_sessions=25, seed=3, progress=False)


@pytest.fixture(scope="module")
def one_sided():
    """Mice with a small right bias: they pass through an R-only stage (left stimulus unassociated)."""
    return simulate_opto(None, n_mice=4, n_sessions=16, seed=0, params=mouse_rl.ModelParams(b_R=0.05),
                         record_weights=True)


# --- recovery -----------------------------------------------------------------------------------

def test_recovery_dls_stim_nac_tot(cohort40):
    truth = {"da_DLS_left": "delta_stim", "da_NAc": "delta_tot"}
    syn = synthetic_recordings(cohort40.trials, truth, snr=RECOVERY_SNR, gain_sd=0.1, offset_sd=0.2, seed=1)
    rep = regress_recordings(cohort40.trials, syn.recordings, n_null=19, null="sessions", seed=0)
    best = rep.best
    assert len(best) == 80
    hit = (best["best_delta"] == best["region"].map(truth)).groupby(best["region"]).mean()
    print("recovery fraction per region:", hit.to_dict())
    assert (hit >= 0.95).all(), hit
    assert best["significant"].all()
    joint = rep.scores[rep.scores.model == "joint"]
    assert len(joint) == 80 and np.isfinite(joint["r2_cv"]).all()


def test_null_is_not_significant_for_pure_noise(cohort40):
    trials = cohort40.trials[cohort40.trials.mouse.isin(["sim0000", "sim0001"])]
    rec = trials[["mouse", "session", "trial"]].copy()
    rec["da_X"] = np.random.default_rng(0).standard_normal(len(rec))
    rep = regress_recordings(trials, rec, n_null=49, null="circular")
    assert (rep.scores["r2_cv"] < 0.01).all()
    assert (rep.best["p_value"] > 0.01).all()


def test_cv_r2_hand_example():
    # two sessions, y = 2 x + session offset exactly -> r2_cv = 1; in-sample gains 2
    x = np.array([0.0, 1, 2, 0, 1, 3])
    df = pd.DataFrame({"mouse": "m", "session": [1, 1, 1, 2, 2, 2], "trial": [0, 1, 2, 0, 1, 2],
                       "delta_stim": x, "da_A": 2 * x + np.array([1, 1, 1, -3, -3, -3])})
    rep = delta_regression(df, candidates=["delta_stim"], n_null=0)
    assert rep.scores["r2_cv"].iloc[0] == pytest.approx(1.0)
    assert np.allclose(rep.gains["gain"], 2.0) and np.allclose(rep.gains["offset"], [1, -3])


# --- read-outs ----------------------------------------------------------------------------------

def test_stimulus_response_unassociated_zero_associated_grows(one_sided):
    t = readout_table(one_sided.trials)
    assert (t["weights_source"] == "per-trial").all()
    assert np.allclose(t["stim_q_stim"], t["stim_q_tot_minus_const"], atol=1e-6)  # linear network
    # pick a mouse in the R-only stage at the end: right associated, left not
    last = one_sided.trials.groupby("mouse").tail(1).set_index("mouse")
    mouse = last[(last.a_R > 0.2) & (last.a_L < 0.02)].index[0]
    m = t[t.mouse == mouse]
    late = m[m.session >= 12]
    left = late[late.stimulus_side == "L"]
    assert (left["association"] == "unassociated").all()
    assert left["stim_q_stim"].abs().max() < 0.02  # ~0 for the unassociated stimulus
    right = m[m.stimulus_side == "R"].groupby("session")["stim_q_stim"].mean()
    assert right.iloc[-1] > 0.2 and right.iloc[-1] > 5 * right.iloc[0]
    assert np.corrcoef(right.index, right.to_numpy())[0, 1] > 0.9  # grows with learning
    assert set(late.loc[late.stimulus_side == "R", "association"]) == {"associated"}
    assert late["strategy_name"].iloc[-1] == "R-only"


def test_readouts_session_snapshots_and_plots(one_sided):
    r = mouse_rl.simulate_cohort(n_mice=3, n_sessions=6, trials_per_session=80, seed=0, progress=False)
    t = readout_table(r.trials, r.weights, bins=3)
    assert (t["weights_source"] == "previous-session-end").all()
    s1 = t[t.session == 1]
    assert np.allclose(s1.loc[s1.stimulus_side == "L", "presented_gain"], 0.05, atol=1e-4)
    assert list(t["session_bin"].cat.categories) == ["1-3", "4-6"]
    # experienced delta = reward - Q[choice]; model delta at c = 0 uses 0.5
    zero = t.signed_contrast == 0
    assert np.allclose(t.loc[~zero, "delta_stim"], r.trials.loc[~zero, "delta_stim"])
    assert np.allclose(readout_table(r.trials, reward_mode="model")["delta_tot"], r.trials["delta_tot"])
    long = tidy_readouts(t)
    assert len(long) == 5 * len(t) and set(long.epoch) == {"stimulus", "outcome"}
    summ = summarise_readouts(t)
    assert {"mean", "sem", "n", "signal"} <= set(summ.columns)
    f1 = plot_delta_vs_contrast(readout_table(one_sided.trials))
    f2 = plot_delta_over_sessions(readout_table(one_sided.trials))
    assert len(f1.axes) >= 4 and len(f2.axes) >= 2


# --- recordings ---------------------------------------------------------------------------------

def _rec():
    return pd.DataFrame({"mouse": ["m"] * 4, "session": [1, 1, 2, 2], "trial": [0, 1, 0, 1],
                         "da_DLS_left": [1.0, 2.0, 3.0, 4.0], "da_NAc": [0.5, 0.1, 0.2, 0.3]})


def test_loader_validation_errors(tmp_path):
    from mouse_rl.data import DataFormatError

    ok = load_recordings(_rec())
    assert ok["session"].dtype == np.int64
    with pytest.raises(DataFormatError, match="missing key column 'trial'"):
        load_recordings(_rec().drop(columns="trial"))
    bad = _rec()
    bad.loc[2, "da_NAc"] = np.nan
    with pytest.raises(DataFormatError, match=r"'da_NAc' has NaN.*row 2 \(mouse 'm', session 2, trial 0\)"):
        load_recordings(bad)
    dup = _rec()
    dup.loc[1, "trial"] = 0
    with pytest.raises(DataFormatError, match=r"duplicate trials.*row 0.*row 1"):
        load_recordings(dup)
    with pytest.raises(DataFormatError, match="no dopamine columns"):
        load_recordings(_rec().drop(columns=["da_DLS_left", "da_NAc"]))
    with pytest.raises(FileNotFoundError):
        load_recordings(tmp_path / "nope.parquet")
    path = tmp_path / "rec.csv"
    _rec().to_csv(path, index=False)
    assert len(load_recordings(path)) == 4
    trials = pd.DataFrame({"mouse": ["m"] * 3, "session": [1, 1, 2], "trial": [0, 1, 0]})
    with pytest.raises(DataFormatError, match=r"not in the trial table.*session 2, trial 1"):
        load_recordings(_rec(), trials=trials)


def test_normalisation_hand_computed():
    df = pd.DataFrame({
        "mouse": ["m"] * 6, "session": [1, 1, 1, 2, 2, 2], "trial": [0, 1, 2, 0, 1, 2],
        "signed_contrast": [0.0, 0.0, 0.5, 0.0, -0.25, 0.0], "reward": [1, 1, 1, 1, 1, 0],
        "da_DMS": [2.0, 4.0, 6.0, 0.5, 1.0, 9.0]})
    out = normalise_per_session(df)
    # session 1 reference = mean(2, 4) = 3; session 2 = 0.5 (trial 2 unrewarded, trial 1 non-zero contrast)
    assert np.allclose(out["da_DMS"], [2 / 3, 4 / 3, 2.0, 1.0, 2.0, 18.0])
    from mouse_rl.data import DataFormatError

    bad = df.copy()
    bad.loc[3, "reward"] = 0
    with pytest.raises(DataFormatError, match=r"'da_DMS'.*no rewarded zero-contrast.*\(mouse 'm', session 2\)"):
        normalise_per_session(bad)
    with pytest.raises(DataFormatError, match="align_recordings"):
        normalise_per_session(df.drop(columns="reward"))


def test_peak_response_and_contralateral_view():
    times = np.round(np.arange(-0.1, 0.5, 0.05), 3)
    traces = np.zeros((2, len(times)))
    traces[0, times == 0.25] = 3.0
    traces[0, times == 0.45] = 9.0  # outside the window
    traces[1, times == 0.35] = 1.5
    assert np.allclose(peak_response(traces, times), [3.0, 1.5])
    with pytest.raises(ValueError, match="no samples"):
        peak_response(traces, times, window=(0.6, 0.7))
    df = pd.DataFrame({"mouse": "m", "session": 1, "trial": [0, 1, 2], "signed_contrast": [0.5, -0.25, 0.0],
                       "da_DLS_left": [1.0, 2.0, 3.0], "da_DLS_right": [10.0, 20.0, 30.0]})
    v = contralateral_view(df)
    # right stimulus -> left hemisphere is contralateral
    assert v["da_DLS_contra"].tolist()[:2] == [1.0, 20.0] and np.isnan(v["da_DLS_contra"].iloc[2])
    assert v["contra_hemisphere"].tolist() == ["left", "right", "none"]
    assert v["da_DLS_ipsi"].tolist()[:2] == [10.0, 2.0]


def test_align_and_synthetic_truth(one_sided):
    syn = synthetic_recordings(one_sided.trials, seed=2)
    merged = align_recordings(one_sided.trials, syn.recordings)
    assert len(merged) == len(one_sided.trials)
    assert set(syn.truth["region"]) == {"da_DLS_left", "da_DLS_right", "da_DMS", "da_NAc"}
    assert (syn.truth.loc[syn.truth.region == "da_DLS_left", "delta"] == "delta_stim").all()


# --- optogenetics -------------------------------------------------------------------------------

def test_delta_stim_stimulation_changes_only_stimulated_column():
    torch.manual_seed(0)
    w = Weights(torch.rand(4, 3, dtype=torch.float64) + 0.1, torch.rand(4, 2, 3, dtype=torch.float64) + 0.5)
    c = torch.tensor([-0.5, 0.25, -0.25, 0.5], dtype=torch.float64)
    x = encode(c)
    choice = torch.tensor([0, 1, 1, 0])
    reward = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    eta = torch.full((4,), 0.01, dtype=torch.float64)
    kappa = 0.7
    base = trial_update(w, x, choice, reward, eta)
    stim = opto_step(w, x, choice, reward, eta, "delta_stim", kappa)
    assert torch.equal(stim.weights.a, base.weights.a)
    dU = stim.weights.U - base.weights.U
    h = w.a * x
    expected = torch.zeros_like(dU)
    for i in range(4):
        j = 0 if c[i] < 0 else 1  # column of the presented stimulus
        expected[i, choice[i], j] = eta[i] * kappa * h[i, j]
    assert torch.allclose(dU, expected, atol=1e-14, rtol=0)
    assert torch.allclose(stim.delta_stim - base.delta_stim, torch.full((4,), kappa, dtype=torch.float64))
    # reward instead changes all three blocks
    rew = opto_step(w, x, choice, reward, eta, "reward", kappa)
    assert not torch.equal(rew.weights.a, base.weights.a)
    assert not torch.equal(rew.weights.U[..., 2], base.weights.U[..., 2])
    # delta_offset=None leaves trial_update unchanged
    same = trial_update(w, x, choice, reward, eta, delta_offset=torch.zeros(4, 3, dtype=torch.float64))
    assert torch.equal(same.weights.U, base.weights.U) and torch.equal(same.weights.a, base.weights.a)


def test_opto_control_matches_simulate_cohort_and_arms():
    kw = dict(n_mice=3, n_sessions=3, trials_per_session=60, seed=5)
    ref = mouse_rl.simulate_cohort(progress=False, **kw)
    ctl = simulate_opto(None, **kw)
    cols = [c for c in ref.trials.columns if c != "mouse"]
    assert np.array_equal(ref.trials[cols].to_numpy(float), ctl.trials[cols].to_numpy(float))
    assert not ctl.trials["stimulated"].any()
    cmp = compare_opto(OptoProtocol("delta_stim", kappa=0.5, contingency="stimulus", side=1), **kw)
    t = cmp.trials
    opto = t[t.arm == "opto"]
    assert opto["stimulated"].equals(opto["signed_contrast"] > 0)
    w = cmp.weights.set_index(["arm", "mouse", "session"])
    end = w.xs(3, level="session")
    # delta_stim stimulation of right-stimulus trials never touches the cortex gains of the left stimulus
    # more than control does, but raises the right-stimulus striatal weights; reward raises a_R too
    assert (end.loc["opto", "U_RR"] > end.loc["control", "U_RR"]).all()
    assert (end.loc["reward", "a_R"] > end.loc["opto", "a_R"]).all()
    assert len(cmp.summary) == 3 * 3 * 3
    with pytest.raises(ValueError, match="stimulus-timed"):
        OptoProtocol(timing="stimulus", contingency="choice")


# --- joint fit and CLI ----------------------------------------------------------------------------

def test_joint_fit_runs_and_reports_best():
    r = mouse_rl.simulate_cohort(n_mice=1, n_sessions=3, trials_per_session=60, seed=0, progress=False)
    syn = synthetic_recordings(r.trials, {"da_NAc": "delta_tot"}, snr=3, seed=0)
    res = joint_fit(r.trials, syn.recordings, n_iter=3)
    assert len(res.table) == 3 and set(res.table.delta) == {"delta_tot", "delta_stim", "delta_const"}
    assert np.isfinite(res.table["objective"]).all()
    assert np.allclose(res.table["objective"], res.table["choice_ll"] + res.table["dopamine_ll"])
    assert len(res.best) == 1


def test_cli_dopamine(tmp_path):
    from mouse_rl.cli import main

    r = mouse_rl.simulate_cohort(n_mice=2, n_sessions=4, trials_per_session=60, seed=0, progress=False)
    trials = tmp_path / "trials.parquet"
    r.to_parquet(trials)
    syn = synthetic_recordings(r.trials, seed=0)
    rec = tmp_path / "rec.parquet"
    syn.recordings.to_parquet(rec)
    out = tmp_path / "out"
    assert main(["dopamine", str(trials), "--recordings", str(rec), "--out", str(out), "--n-null", "5"]) == 0
    for name in ("readouts.parquet", "readout_summary.csv", "delta_vs_contrast.png", "delta_over_sessions.png",
                 "regression_scores.csv", "regression_best.csv"):
        assert (out / name).exists(), name
    assert main(["dopamine", str(tmp_path / "missing.parquet"), "--out", str(out)]) == 2


def test_joint_fit_uses_the_registry_transforms():
    from mouse_rl.params import PARAMS

    r = mouse_rl.simulate_cohort(n_mice=1, n_sessions=2, trials_per_session=40, seed=1, progress=False)
    syn = synthetic_recordings(r.trials, {"da_NAc": "delta_tot"}, snr=3, seed=0)
    with pytest.raises(ValueError, match=r"fit: unknown parameter\(s\) \['omega'\]"):
        joint_fit(r.trials, syn.recordings, fit=("eta", "omega"))
    res = joint_fit(r.trials, syn.recordings, fit=("beta", "lapse", "b_R"), candidates=("delta_tot",), n_iter=2)
    row = res.table.iloc[0]
    assert set(PARAMS) <= set(res.table.columns)
    for name in ("beta", "lapse", "b_R"):  # inside the fit box; the 0-default lapse and b_R start off the boundary
        lo, hi = PARAMS[name].fit_bounds
        assert lo <= row[name] <= hi and row[name] > 1e-3
    assert row["eta"] == PARAMS["eta"].default


def test_stimulus_side_labels_shared_by_readouts_and_hemisphere_view():
    from mouse_rl.dopamine._common import stimulus_side

    assert list(stimulus_side([-0.5, 0.0, 0.25])) == ["L", "none", "R"]
    df = pd.DataFrame({"signed_contrast": [-0.5, 0.0, 0.25], "da_DLS_left": [1.0, 2.0, 3.0],
                       "da_DLS_right": [4.0, 5.0, 6.0]})
    view = contralateral_view(df)
    assert list(view["stimulus_side"]) == ["L", "none", "R"]
    assert list(view["da_DLS_contra"].fillna(-1)) == [4.0, -1, 3.0]
