"""One rollout for simulation, free runs and teacher forcing (mouse_rl.rollout)."""
import numpy as np
import pytest
import torch

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit import free_run, teacher_forced
from mouse_rl.fit.batch import make_batch
from mouse_rl.network import init_weights
from mouse_rl.params import NetParams
from mouse_rl.rollout import GivenChoices, GivenStimuli, GivenTrials, SampledChoices, rollout
from mouse_rl.simulate import simulate_on_stimuli

COLUMNS = ("p_right", "q_tot_L", "q_tot_R", "q_stim_L", "q_stim_R", "q_const_L", "q_const_R", "delta_tot",
           "delta_stim", "delta_const")


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_fit_equals_simulation_without_jitter(engine):
    """Teacher forcing a simulated cohort on its own trials reproduces the simulation to float64 round-off."""
    params = ModelParams(eta=0.05, beta=6.0, b_R=0.1, lapse=0.05, jitter=0.0)
    sim = simulate_cohort(4, 3, 60, params, seed=7, dtype=torch.float64, engine=engine)
    tf = teacher_forced(sim.trials, params)
    ref = sim.trials.sort_values(["mouse", "session", "trial"]).reset_index(drop=True)
    for col in COLUMNS:
        np.testing.assert_allclose(tf[col], ref[col], rtol=0, atol=1e-12, err_msg=col)


def test_given_choices_replay_sampled_choices():
    """The same rollout with sampled choices, then with those choices given, takes the same path."""
    B, T = 5, 80
    g = torch.Generator().manual_seed(0)
    c = torch.tensor([-0.5, -0.25, 0.0, 0.25, 0.5], dtype=torch.float64)[torch.randint(0, 5, (T, B), generator=g)]
    p = ModelParams(eta=0.05, b_L=0.1).tensors(B, dtype=torch.float64)
    seeds = torch.arange(B) + 100
    w0 = init_weights(p)
    seen = []
    w_sim = rollout(w0, p, GivenStimuli(c, seeds), SampledChoices(seeds, torch.float64), 0, T,
                    recorder=lambda tr: seen.append((tr.choice, tr.reward, tr.step.delta_tot)))
    choice = torch.stack([s[0] for s in seen])
    reward = torch.stack([torch.where(c[t] == 0, 0.5, seen[t][1]) for t in range(T)])
    replay = []
    w_fit = rollout(w0, p, GivenTrials(c, reward), GivenChoices(choice), 0, T, zero_reward=None,
                    recorder=lambda tr: replay.append(tr.step.delta_tot))
    torch.testing.assert_close(w_fit.U, w_sim.U, rtol=0, atol=0)
    torch.testing.assert_close(torch.stack(replay), torch.stack([s[2] for s in seen]), rtol=0, atol=0)


def test_delta_offsets_change_only_their_block():
    """An offset on delta_stim changes that trial's stimulus weights only (the cortex and the bias as without it)."""
    B, T = 3, 1
    c = torch.full((T, B), 0.5, dtype=torch.float64)
    p = ModelParams(eta=0.05).tensors(B, dtype=torch.float64)
    w0 = init_weights(p)
    choice = torch.ones(T, B, dtype=torch.long)
    reward = torch.ones(T, B, dtype=torch.float64)
    offset = torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64).expand(B, 3)
    base = rollout(w0, p, GivenTrials(c, reward), GivenChoices(choice), 0, T, zero_reward=None)
    stim = rollout(w0, p, GivenTrials(c, reward), GivenChoices(choice), 0, T, zero_reward=None,
                   stimulation=lambda t, c_, ch, r: (None, offset, torch.zeros_like(r)))
    torch.testing.assert_close(stim.a, base.a, rtol=0, atol=0)
    torch.testing.assert_close(stim.U[..., 2], base.U[..., 2], rtol=0, atol=0)
    assert bool((stim.U[:, 1, 1] > base.U[:, 1, 1]).all())


def test_free_run_starts_from_given_weights():
    sim = simulate_cohort(3, 2, 50, ModelParams(eta=0.05, b_R=0.1), seed=1, dtype=torch.float64)
    batch = make_batch(sim.trials)
    p = ModelParams(eta=0.05, b_R=0.1).tensors(3, dtype=torch.float64)
    seeds = np.array([5, 6, 7])
    default = free_run(batch, p, seeds)
    same = free_run(batch, p, seeds, init=init_weights(p))
    for a, b in zip(default, same):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    moved = sim.final_weights
    moved = type(moved)(moved.a.double(), moved.U.double())
    fused = free_run(batch, p, seeds, init=moved)
    ref = simulate_on_stimuli(batch.contrast, batch.valid, p, seeds, moved, engine="reference")
    torch.testing.assert_close(fused[0], ref[0], rtol=0, atol=0)
    torch.testing.assert_close(fused[1], ref[1], rtol=0, atol=1e-12)
    assert not torch.equal(fused[1], default[1])


def test_netparams_from_the_eight_model_fields_simulate():
    """NetParams built from MODEL.md's eight fields (stim_skew left at its float default) simulate as the same
    parameters with an explicit zero skew tensor (it raised AttributeError: float has no requires_grad)."""
    sim = simulate_cohort(2, 1, 40, seed=3, dtype=torch.float64)
    batch = make_batch(sim.trials)
    p = ModelParams(eta=0.05).tensors(2, dtype=torch.float64)
    eight = NetParams(*p[:8])
    assert isinstance(eight.stim_skew, float)
    seeds = np.array([1, 2])
    got = simulate_on_stimuli(batch.contrast, batch.valid, eight, seeds)
    ref = simulate_on_stimuli(batch.contrast, batch.valid, p, seeds)
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=0)
