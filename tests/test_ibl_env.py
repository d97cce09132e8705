"""The IBL training-protocol environment: curriculum rules on hand-built sequences, blocks, debiasing, env_checker."""
import gymnasium
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.ibl_task import (
    BlockSchedule,
    IBLCurriculum,
    IBLTrainingEnv,
    block_length_pmf,
    draw_block_length,
    training_contrast_set,
)
from mouse_rl.analysis.psychometric_fit import erf_psychometric

EASY = (-1.0, -0.5, 0.5, 1.0)


def test_env_checker_and_registered_id():
    check_env(IBLTrainingEnv(trials_per_session=30), skip_render_check=True)
    check_env(IBLTrainingEnv(trials_per_session=30, no_go=True, start_biased=True), skip_render_check=True)
    env = gymnasium.make("mouse_rl/IBLTraining-v0", trials_per_session=5)
    obs, info = env.reset(seed=0)
    assert obs.shape == (2,) and info["training_phase"] == 0 and info["stage"] == "training"


def test_contrast_sets_by_phase():
    assert training_contrast_set(0) == EASY
    assert training_contrast_set(1) == (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0)
    assert 0.0625 in training_contrast_set(3) and 0.0 not in training_contrast_set(3)
    assert len(training_contrast_set(4)) == 11 and training_contrast_set(4).count(0.0) == 1
    assert training_contrast_set(5) == (-1.0, -0.25, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.25, 1.0)
    with pytest.raises(ValueError, match="phase"):
        training_contrast_set(6)


def test_phase0_advances_exactly_when_each_easy_contrast_has_41_of_its_last_50_correct():
    cur = IBLCurriculum()
    for c in EASY:  # 9 errors first: they stay inside the last-50 window
        for _ in range(9):
            assert not cur.record(c, False)
    for _ in range(40):
        for c in EASY:
            assert not cur.record(c, True)
    # now each contrast has 40 correct of its last 49: 40/50 = 0.8 is not > 0.8
    assert not cur.record(-1.0, True)  # 41/50
    assert not cur.record(-0.5, True)
    assert not cur.record(0.5, True)
    assert cur.phase == 0
    assert cur.record(1.0, True) and cur.phase == 1  # the last of the four reaches 41/50


def test_phase0_window_is_the_last_50_and_restarts_each_session():
    cur = IBLCurriculum()
    for c in EASY:
        for _ in range(10):
            cur.record(c, False)
        for _ in range(40):
            cur.record(c, True)
    assert cur.phase == 0  # 40/50 each
    for c in EASY[:3]:
        cur.record(c, True)  # oldest error leaves the window: 41/50
    cur.start_session()  # a new session forgets the window
    cur.record(1.0, True)
    assert cur.phase == 0


def test_phase1_needs_the_25_percent_contrasts_only():
    cur = IBLCurriculum(start_phase=1)
    for _ in range(60):
        cur.record(1.0, False)  # easy errors do not matter in phase 1
    for _ in range(40):
        cur.record(-0.25, True)
        cur.record(0.25, True)
    assert cur.phase == 1
    cur.record(-0.25, True)
    assert cur.record(0.25, True) and cur.phase == 2


def test_phases_2_to_4_advance_after_200_trials_in_the_phase_within_a_session():
    cur = IBLCurriculum(start_phase=2)
    for _ in range(150):
        cur.record(0.125, False)
    cur.start_session()
    for i in range(199):
        assert not cur.record(0.125, False), i
    assert cur.record(-1.0, False) and cur.phase == 3
    for _ in range(199):
        cur.record(0.0, True)
    assert cur.phase == 3
    cur.record(0.0, True)
    assert cur.phase == 4
    for _ in range(200):
        cur.record(0.0, True)
    assert cur.phase == 5
    for _ in range(500):
        assert not cur.record(0.0, True)
    assert cur.phase == 5  # last training phase


def good_session(rng, n=500, pars=(2.0, 10.0, 0.03, 0.03)):
    c = rng.choice(training_contrast_set(5), n)
    choice = (rng.random(n) < erf_psychometric(c * 100, *pars)).astype(int)
    side = np.where(c == 0, rng.random(n) < 0.5, c > 0)
    return pd.DataFrame({"signed_contrast": c, "choice": choice, "reward": (choice == side).astype(float)})


@pytest.mark.parametrize("biased_after, stage", [("trained_1b", "biased"), ("trained_1a", "biased"), (None, "training")])
def test_biased_stage_after_the_training_criterion_over_three_sessions(biased_after, stage):
    rng = np.random.default_rng(0)
    cur = IBLCurriculum(start_phase=5, biased_after=biased_after)
    assert cur.end_session(good_session(rng)) == "in training"  # fewer than 3 sessions
    assert cur.end_session(good_session(rng)) == "in training"
    assert cur.stage == "training"
    assert cur.end_session(good_session(rng)) == "trained 1b"
    assert cur.stage == stage


def test_not_biased_when_only_1a_is_met_and_1b_is_required():
    rng = np.random.default_rng(1)
    cur = IBLCurriculum(start_phase=5)
    for _ in range(3):
        cur.end_session(good_session(rng, n=300))  # 300 trials: 1a yes, 1b no (> 400 needed)
    assert cur.status_history[-1]["status"] == "trained 1a" and cur.stage == "training"


def test_block_lengths_follow_the_truncated_exponential():
    rng = np.random.default_rng(2)
    lengths = np.array([draw_block_length(rng) for _ in range(20_000)])
    assert lengths.min() >= 20 and lengths.max() <= 100
    pmf = block_length_pmf()
    observed = pd.Series(lengths).value_counts().reindex(pmf.index, fill_value=0)
    assert stats.chisquare(observed, pmf * lengths.size).pvalue > 0.001
    mean = float((pmf.index * pmf).sum())
    assert abs(lengths.mean() - mean) < 4 * lengths.std() / np.sqrt(lengths.size)


def test_block_sequence_first_90_at_half_then_alternating():
    schedule = BlockSchedule(np.random.default_rng(3))
    p = np.array([schedule.next_trial() for _ in range(3000)])
    assert (p[:90] == 0.5).all() and p[90] in (0.2, 0.8)
    changes = np.flatnonzero(np.diff(p)) + 1
    assert changes[0] == 90
    assert np.array_equal(np.diff(np.r_[changes, 3000])[:-1], schedule.lengths[1:len(changes)])
    values = p[changes]
    assert set(values) <= {0.2, 0.8} and (np.diff(values) != 0).all()  # alternate


def test_biased_env_stimulus_side_follows_the_block_probability():
    env = IBLTrainingEnv(trials_per_session=3000, start_biased=True)
    obs, info = env.reset(seed=4)
    rows, term = [], False
    while not term:
        rows.append((info["probabilityLeft"], info["correct_side"], abs(info["signed_contrast"]), info["block"]))
        obs, _, term, _, info = env.step(0)
    df = pd.DataFrame(rows, columns=["p_left", "side", "magnitude", "block"])
    left = (df["side"] == 0).groupby(df["p_left"]).mean()
    assert abs(left[0.2] - 0.2) < 0.03 and abs(left[0.8] - 0.8) < 0.03 and abs(left[0.5] - 0.5) < 0.12
    assert set(df["magnitude"].round(4)) == {1.0, 0.25, 0.125, 0.0625, 0.0}
    assert (df["block"].iloc[:90] == 0).all() and df["block"].iloc[90] == 1


def test_debiasing_repeats_easy_errors_toward_the_neglected_side():
    env = IBLTrainingEnv(trials_per_session=1500)
    obs, info = env.reset(seed=5)
    term = False
    while not term:
        obs, _, term, _, info = env.step(0)  # always Left: errors on right stimuli
    trials = env.session_table()
    previous_error_easy = (trials["reward"].shift(1) == 0) & (trials["signed_contrast"].shift(1).abs() >= 0.5)
    assert (trials["debias_trial"] == previous_error_easy).all()
    repeats = trials[trials["debias_trial"]]
    prev = trials["signed_contrast"].shift(1).abs()[repeats.index]
    assert (repeats["signed_contrast"].abs() == prev).all()
    # f_left = 1, so the repeat is on the Right with P(N(1, 0.5) >= 0.5) = 0.841
    assert abs((repeats["signed_contrast"] > 0).mean() - 0.841) < 0.05
    assert env.curriculum.phase == 0


def test_no_debiasing_when_off_and_no_go_timeouts():
    env = IBLTrainingEnv(trials_per_session=200, debias=False, no_go=True)
    env.reset(seed=6)
    infos = [env.step(2)[4] for _ in range(200)]
    assert not any(i["debias_trial"] for i in infos)
    assert all(i["feedbackType"] == -1 and i["timeout_s"] == 2.0 and i["choice"] == 2 for i in infos)
    assert infos[-1]["status"] == "in training"  # no responded trials: criteria cannot pass
    with pytest.raises(ValueError, match="action"):
        IBLTrainingEnv().step(2)


def test_env_phase_advances_on_the_trial_that_meets_the_criterion_and_carries_over():
    env = IBLTrainingEnv(trials_per_session=400)
    obs, info = env.reset(seed=7)
    advanced_at = None
    for t in range(400):
        obs, _, term, _, info = env.step(info["correct_side"])  # always correct
        if info["phase_advanced"] and advanced_at is None:
            advanced_at = t
    trials = env.session_table()
    counts = pd.concat([(trials["signed_contrast"] == c).cumsum() for c in EASY], axis=1).min(axis=1)
    assert advanced_at == int(np.argmax(counts.to_numpy() >= 41))  # all correct: 41 presentations each
    assert (trials["training_phase"].iloc[: advanced_at + 1] == 0).all()
    assert trials["training_phase"].iloc[advanced_at + 1] == 1
    phase = env.curriculum.phase
    obs, info = env.reset()
    assert info["training_phase"] == phase and info["session"] == 2
