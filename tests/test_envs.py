"""Gymnasium environment contracts, task rules and argument validation."""
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs import CohortEnv, ContrastDiscriminationEnv, TaskConfig


def test_env_checker_passes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(envs.ENV_ID).unwrapped)


def test_reset_seed_reproduces_trial_sequence():
    def run(seed):
        env = ContrastDiscriminationEnv(trials_per_session=50)
        obs, info = env.reset(seed=seed)
        seq = [info["signed_contrast"]]
        rewards = []
        for t in range(49):
            obs, r, term, trunc, info = env.step(t % 2)
            seq.append(info["signed_contrast"])
            rewards.append(r)
        return seq, rewards

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_reward_rule_and_episode_length():
    env = ContrastDiscriminationEnv(trials_per_session=2000)
    _, info = env.reset(seed=0)
    zero_rewards, steps = [], 0
    terminated = False
    while not terminated:
        c = info["signed_contrast"]
        action = int(env.np_random.integers(2))
        _, r, terminated, truncated, info = env.step(action)
        steps += 1
        assert not truncated
        if c > 0:
            assert r == float(action == 1)
        elif c < 0:
            assert r == float(action == 0)
        else:
            zero_rewards.append(r)
    assert steps == 2000 and info["trial"] == 2000
    assert abs(np.mean(zero_rewards) - 0.5) < 0.12  # ~200 zero trials, rewarded side random


def test_contrast_frequencies_follow_probabilities():
    env = CohortEnv(num_envs=20000, trials_per_session=5)
    _, info = env.reset(seed=1)
    c = info["signed_contrast"].numpy()
    for value, p in zip(envs.DEFAULT_CONTRASTS, envs.DEFAULT_PROBABILITIES):
        assert abs(np.mean(np.isclose(c, value)) - p) < 0.015


def test_observation_is_left_right_contrast():
    env = ContrastDiscriminationEnv(contrasts=(-0.25, 0.5), probabilities=(0.5, 0.5))
    obs, info = env.reset(seed=0)
    c = info["signed_contrast"]
    assert obs.tolist() == [max(-c, 0), max(c, 0)]


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"probabilities": (0.5, 0.5, 0.5, 0.0, 0.0)}, "probabilities"),
        ({"contrasts": (), "probabilities": ()}, "contrasts"),
        ({"trials_per_session": -5}, "trials_per_session"),
        ({"contrasts": (-50, 50), "probabilities": (0.5, 0.5)}, "contrasts"),
        ({"probabilities": (0.5, 0.5)}, "probabilities"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ContrastDiscriminationEnv(**kwargs)
    with pytest.raises(ValueError, match=name):
        CohortEnv(num_envs=2, **kwargs)


def test_make_vec_returns_native_cohort_env():
    vec = gym.make_vec(envs.ENV_ID, num_envs=8, trials_per_session=3)
    assert isinstance(vec, CohortEnv)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (8, 2) and torch.is_tensor(obs)
    for t in range(3):
        obs, r, term, trunc, info = vec.step(torch.ones(8, dtype=torch.long))
    assert term.all() and info["session"] == 2 and info["trial"] == 0
    with pytest.raises(ValueError, match="actions"):
        vec.step(torch.full((8,), 2))


def test_cohort_env_mouse_streams_are_batch_invariant():
    seeds = [11, 22, 33]
    big = CohortEnv(3, seeds=seeds, trials_per_session=10)
    _, info = big.reset()
    seq_big = [info["signed_contrast"].clone()]
    for _ in range(9):
        _, _, _, _, info = big.step(torch.zeros(3, dtype=torch.long))
        seq_big.append(info["signed_contrast"].clone())
    for i, s in enumerate(seeds):
        one = CohortEnv(1, seeds=[s], trials_per_session=10)
        _, info = one.reset()
        seq = [info["signed_contrast"].clone()]
        for _ in range(9):
            _, _, _, _, info = one.step(torch.zeros(1, dtype=torch.long))
            seq.append(info["signed_contrast"].clone())
        assert torch.equal(torch.stack(seq)[:, 0], torch.stack(seq_big)[:, i])


def test_repeat_after_error_repeats_the_stimulus():
    env = CohortEnv(500, task=TaskConfig(repeat_after_error=True, trials_per_session=50))
    _, info = env.reset(seed=0)
    c = info["signed_contrast"].clone()
    wrong = torch.where(c > 0, 0, 1)  # always wrong (at c = 0 half are rewarded anyway)
    _, reward, _, _, info = env.step(wrong)
    nonzero = c != 0
    assert torch.equal(info["signed_contrast"][nonzero], c[nonzero])


@pytest.mark.parametrize("repeat_after_error", [False, True])
def test_make_and_make_vec_with_one_env_give_the_same_trials(repeat_after_error):
    kw = dict(trials_per_session=30, repeat_after_error=repeat_after_error)
    single = gym.make(envs.ENV_ID, **kw)
    vec = gym.make_vec(envs.ENV_ID, num_envs=1, **kw)
    actions = np.random.default_rng(0).integers(2, size=90)
    obs, info = single.reset(seed=7)
    vobs, vinfo = vec.reset(seed=7)
    for t, a in enumerate(actions):
        if t and t % 30 == 0:  # next session: a plain reset of the single env, auto-reset of the vector env
            obs, info = single.reset()
        assert obs.tolist() == vobs[0].tolist() and info["signed_contrast"] == float(vinfo["signed_contrast"][0])
        assert info["session"] == vinfo["session"] and info["trial"] == vinfo["trial"]
        obs, r, term, _, info = single.step(int(a))
        vobs, vr, vterm, _, vinfo = vec.step(torch.tensor([a]))
        assert r == float(vr[0]) and term == bool(vterm[0]) and info["rewarded_side"] == int(vinfo["rewarded_side"][0])
