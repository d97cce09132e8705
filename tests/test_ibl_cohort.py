"""The batched IBL env: the single-mouse env is its one-mouse view; rules match the plain-Python reference."""
import gymnasium
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import envs  # noqa: F401
from envs import rng
from envs.ibl_cohort import IBLCohortEnv, truncated_exponential_length
from envs.ibl_task import IBLCurriculum, IBLTrainingEnv, block_length_pmf


def _policy(t, side, mouse):
    """Deterministic mixed policy: correct on most trials, a mouse-specific error pattern."""
    return np.where((t * 7 + mouse * 3) % 5 == 0, 1 - side, side)


def test_single_env_is_the_one_mouse_view_of_the_cohort():
    seeds = rng.mouse_seeds(11, 3)
    cohort = IBLCohortEnv(3, seeds=seeds, trials_per_session=120, dtype=torch.float64)
    obs, info = cohort.reset()
    singles = []
    for i in range(3):
        env = IBLTrainingEnv(trials_per_session=120)
        env._cohort = IBLCohortEnv(1, seeds=seeds[i:i + 1], **env._kwargs)  # same mouse seed
        singles.append((env, env.reset()[1]))
    for t in range(360):
        side = info["correct_side"].numpy()
        actions = _policy(t, side, np.arange(3))
        for i, (env, sinfo) in enumerate(singles):
            assert sinfo["signed_contrast"] == pytest.approx(float(info["signed_contrast"][i]))
            assert sinfo["correct_side"] == int(side[i])
            assert sinfo["training_phase"] == int(info["training_phase"][i])
            assert sinfo["debias_trial"] == bool(info["debias_trial"][i])
        obs, reward, term, _, info = cohort.step(torch.as_tensor(actions))
        for i, (env, _) in enumerate(singles):
            _, r, done, _, sinfo = env.step(int(actions[i]))
            assert r == float(reward[i]) and done == bool(term[i])
            if done:
                sinfo = env.reset()[1]
            singles[i] = (env, sinfo)


def test_seeded_reset_matches_make_vec_mouse_0():
    env = gymnasium.make("mouse_rl/IBLTraining-v0", trials_per_session=50).unwrapped
    _, info = env.reset(seed=4)
    vec = gymnasium.make_vec("mouse_rl/IBLTraining-v0", num_envs=2, vectorization_mode="vector_entry_point",
                             trials_per_session=50)
    _, vinfo = vec.reset(seed=4)
    one = IBLCohortEnv(1, trials_per_session=50)
    _, oinfo = one.reset(seed=4)
    assert info["signed_contrast"] == pytest.approx(float(oinfo["signed_contrast"][0]))
    assert isinstance(vec.unwrapped, IBLCohortEnv) and vec.unwrapped.num_envs == 2


def test_a_mouse_sees_the_same_trials_in_any_cohort():
    seeds = rng.mouse_seeds(5, 4)
    big, small = IBLCohortEnv(4, seeds=seeds, trials_per_session=80), IBLCohortEnv(1, seeds=seeds[2:3], trials_per_session=80)
    _, ib = big.reset()
    _, is_ = small.reset()
    for t in range(200):
        assert float(ib["signed_contrast"][2]) == float(is_["signed_contrast"][0])
        a = _policy(t, ib["correct_side"].numpy(), np.arange(4))
        _, _, _, _, ib = big.step(torch.as_tensor(a))
        _, _, _, _, is_ = small.step(torch.as_tensor(a[2:3]))


def test_batched_phases_match_the_reference_curriculum_trial_by_trial():
    env = IBLCohortEnv(3, seeds=rng.mouse_seeds(2, 3), trials_per_session=700, debias=True)
    _, info = env.reset()
    refs = [IBLCurriculum() for _ in range(3)]
    for session in range(2):
        for t in range(700):
            side = info["correct_side"].numpy()
            actions = np.where((np.arange(3) == 2) & (t % 3 == 0), 1 - side, side)  # mouse 2 makes errors
            c = info["signed_contrast"].numpy().astype(float)
            _, _, term, _, info = env.step(torch.as_tensor(actions))
            for i, ref in enumerate(refs):
                adv = ref.record(float(c[i]), bool(actions[i] == side[i]))
                assert adv == bool(info["phase_advanced"][i])
                assert ref.phase == int(env.phase[i])
        for ref in refs:
            ref.start_session()
    assert int(env.phase[0]) >= 2  # the always-correct mice moved on


def test_stage_advances_on_the_mouses_own_performance():
    env = IBLCohortEnv(2, trials_per_session=450, start_phase=5)
    _, info = env.reset(seed=1)
    statuses = []
    for t in range(4 * 450):
        side = info["correct_side"].numpy()
        actions = np.array([side[0], 0])  # mouse 0 always correct, mouse 1 always Left
        _, _, term, _, info = env.step(torch.as_tensor(actions))
        if bool(term[0]):
            statuses.append(info["status"])
    assert statuses[1] == ["in training", "in training"]  # fewer than 3 sessions
    assert statuses[2][0] == "trained 1b" and statuses[2][1] == "in training"
    assert statuses[3][0] == "biased"
    assert env.biased.tolist() == [True, False]
    table = env.trial_table()
    s4 = table[table["session"] == 4]
    assert (s4.loc[s4["mouse"] == "m000", "stage"] == "biased").all()
    assert (s4.loc[s4["mouse"] == "m001", "stage"] == "training").all()
    assert (s4.loc[s4["mouse"] == "m000", "probabilityLeft"].iloc[:90] == 0.5).all()
    assert set(s4.loc[s4["mouse"] == "m000", "probabilityLeft"].iloc[90:]) <= {0.2, 0.8}


def test_block_lengths_inverse_cdf_matches_the_protocol_pmf():
    u = rng.uniform(rng.as_seed_tensor([7]), 104, torch.arange(40_000)[:, None])[:, 0]
    lengths = truncated_exponential_length(u).numpy()
    assert lengths.min() >= 20 and lengths.max() <= 99
    pmf = block_length_pmf()
    observed = pd.Series(lengths).value_counts().reindex(pmf.index, fill_value=0)
    assert stats.chisquare(observed, pmf * lengths.size).pvalue > 0.001


def test_biased_blocks_alternate_and_sides_follow_probability_left():
    env = IBLCohortEnv(4, trials_per_session=2000, start_biased=True)
    _, info = env.reset(seed=3)
    rows = []
    for t in range(2000):
        rows.append(np.column_stack([np.arange(4), info["probabilityLeft"].numpy(), info["correct_side"].numpy(),
                                     info["block"].numpy()]))
        _, _, _, _, info = env.step(torch.zeros(4, dtype=torch.long))
    df = pd.DataFrame(np.concatenate(rows), columns=["mouse", "p", "side", "block"])
    for m, g in df.groupby("mouse"):
        assert (g["p"].iloc[:90] == 0.5).all() and g["p"].iloc[90] in (0.2, 0.8)
        changes = np.flatnonzero(np.diff(g["p"].to_numpy())) + 1
        assert changes[0] == 90 and (np.diff(g["p"].to_numpy()[changes]) != 0).all()
        lengths = np.diff(changes)
        assert lengths.min() >= 20 and lengths.max() <= 100
    left = (df["side"] == 0).groupby(df["p"]).mean()
    assert abs(left[0.2] - 0.2) < 0.03 and abs(left[0.8] - 0.8) < 0.03


def test_invalid_arguments_and_actions():
    with pytest.raises(ValueError, match="num_envs"):
        IBLCohortEnv(0)
    with pytest.raises(ValueError, match="biased_after"):
        IBLCohortEnv(2, biased_after="expert")
    env = IBLCohortEnv(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        env.step(torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="actions"):
        env.step(torch.tensor([0]))
    with pytest.raises(ValueError, match="trial_table"):
        env.trial_table()
