"""Cohort simulation: determinism, batch invariance, table schema, reference numbers."""
import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.analysis import session_metrics
from mouse_rl.schema import BEHAVIOUR_COLUMNS, KEY_COLUMNS, MODEL_COLUMNS, WEIGHT_COLUMNS


def test_same_seed_same_output_and_schema(tmp_path):
    r1 = simulate_cohort(4, 2, 30, seed=5, progress=False)
    r2 = simulate_cohort(4, 2, 30, seed=5, progress=False)
    pd.testing.assert_frame_equal(r1.trials, r2.trials)
    assert set(KEY_COLUMNS + BEHAVIOUR_COLUMNS + MODEL_COLUMNS) <= set(r1.trials.columns)
    assert len(r1.trials) == 4 * 2 * 30
    assert set(r1.weights.columns) == {"mouse", "session", *WEIGHT_COLUMNS}
    assert sorted(r1.weights.session.unique()) == [0, 1, 2]
    r3 = simulate_cohort(4, 2, 30, seed=6, progress=False)
    assert not r1.trials.choice.equals(r3.trials.choice)
    path = tmp_path / "cohort.parquet"
    r1.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), r1.trials)
    assert (tmp_path / "cohort.weights.parquet").exists()


def test_sign_convention_and_reward_consistency():
    df = simulate_cohort(3, 1, 200, seed=0, progress=False).trials
    nz = df[df.signed_contrast != 0]
    correct = np.where(nz.signed_contrast > 0, 1, 0)
    assert np.array_equal(nz.reward.to_numpy(), (nz.choice.to_numpy() == correct).astype(float))
    assert np.allclose(df.signed_contrast, df.contrastRight - df.contrastLeft)
    assert np.array_equal(df.feedbackType, 2 * df.reward - 1)
    # delta_tot = reward used for learning - Q_tot[choice]; at c = 0 the learner uses the expected reward 0.5
    learn_r = np.where(df.signed_contrast == 0, 0.5, df.reward)
    q_ch = np.where(df.choice == 1, df.q_tot_R, df.q_tot_L)
    assert np.allclose(df.delta_tot, learn_r - q_ch, atol=1e-6)
    assert np.allclose(df.q_tot_R, df.q_stim_R + df.q_const_R, atol=1e-6)


def test_batched_cohort_equals_single_mouse_runs():
    params = ModelParams(eta=0.02, b_R=0.05)
    seeds = np.array([7, 123456, 42, 99])
    big = simulate_cohort(4, 3, 40, params=params, seeds=seeds, dtype=torch.float64, progress=False)
    for i, s in enumerate(seeds):
        one = simulate_cohort(1, 3, 40, params=params, seeds=[s], dtype=torch.float64, progress=False)
        mine = big.trials[big.trials.mouse == big.trials.mouse.unique()[i]].reset_index(drop=True)
        theirs = one.trials.drop(columns="mouse")
        pd.testing.assert_frame_equal(mine.drop(columns="mouse"), theirs, check_exact=False, rtol=1e-12)
        torch.testing.assert_close(big.final_weights.U[i], one.final_weights.U[0])


def test_per_mouse_parameters():
    params = ModelParams(eta=[0.0001, 0.05], w0=1.0)
    trials = simulate_cohort(2, 3, 220, params=params, seed=0, progress=False).trials
    sm = session_metrics(trials)
    last = sm[sm.session == 3].set_index("mouse").accuracy
    assert last.iloc[1] > last.iloc[0] + 0.2
    with pytest.raises(ValueError, match="n_mice"):
        simulate_cohort(3, 1, 10, params=params, progress=False)
    # per-mouse values as torch tensors (MODEL.md: per-mouse hyperparameters are tensors too), as lists
    as_tensor = ModelParams(eta=torch.tensor([0.0001, 0.05]), w0=1.0)
    same = simulate_cohort(2, 3, 220, params=as_tensor, seed=0, progress=False).trials
    pd.testing.assert_frame_equal(same, trials)
    with pytest.raises(ValueError, match=r"inconsistent lengths \[2, 3\]"):
        ModelParams(eta=torch.tensor([0.01, 0.02]), beta=torch.tensor([5.0, 9.0, 12.0])).n_mice_hint()


@pytest.mark.slow
def test_default_cohort_matches_reference_numbers():
    """mouse_rl/MODEL.md section 7: 30 mice x 25 sessions x 220 trials at the defaults."""
    sm = session_metrics(simulate_cohort(30, 25, 220, seed=0, progress=False).trials)
    first = sm[sm.session == 1].accuracy.mean()
    last5 = sm[sm.session > 20].accuracy.mean()
    assert 0.45 <= first <= 0.56
    assert 0.72 <= last5 <= 0.86


def test_shallow_network_learns_within_two_sessions():
    sm = session_metrics(simulate_cohort(30, 2, 220, params=ModelParams(w0=1.0), seed=1, progress=False).trials)
    assert sm[sm.session == 2].accuracy.mean() > 0.75


def test_cpu_runs_fused_and_float64_matches_reference():
    kw = dict(n_mice=5, n_sessions=2, trials_per_session=40, params=ModelParams(eta=0.03, b_L=0.05), seed=8,
              dtype=torch.float64)
    fused = simulate_cohort(**kw)
    assert fused.engine == "fused" and fused.meta["fallback"] is None
    ref = simulate_cohort(engine="reference", **kw)
    pd.testing.assert_frame_equal(fused.trials, ref.trials, check_exact=False, rtol=0, atol=1e-12)


def test_cli_session_log(tmp_path):
    from mouse_rl.cli import main

    out = tmp_path / "sessions.parquet"
    assert main(["simulate", "--mice", "3", "--sessions", "2", "--trials", "30", "--log", "sessions",
                 "--threads", "1", "--out", str(out), "--quiet"]) == 0
    table = pd.read_parquet(out)
    expected = simulate_cohort(3, 2, 30, log="sessions").sessions
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert main(["simulate", "--mice", "3", "--sessions", "2", "--trials", "30", "--threads", "0",
                 "--out", str(out), "--quiet"]) != 0
