"""``bench/choice_kernel_probe.py``: its choice kernel by hand, and its choice source -- with kappa = 0 the copies
of the library's free run with session effects (choice for choice), otherwise the policy with kappa h on the
logit."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mouse_rl.fit.batch import TrialBatch
from mouse_rl.network import init_weights
from mouse_rl.params import NetParams
from mouse_rl.rollout import GivenStimuli, rollout
from mouse_rl.simulate import simulate_on_stimuli

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def probe():
    sys.path.insert(0, str(BENCH))  # the probe imports real_mice beside it
    try:
        spec = importlib.util.spec_from_file_location("choice_kernel_probe", BENCH / "choice_kernel_probe.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def test_choice_kernel_by_hand(probe):
    choice = np.array([[1], [1], [0], [1], [0]])
    session = np.array([[0], [0], [0], [1], [1]])
    valid = np.ones((5, 1), bool)
    h = probe.choice_kernel(choice, session, valid, 0.5)
    # h1 = 0.5 * (+1), h2 = 0.5 h1 + 0.5 (+1), then a new session at t = 3, h4 = 0.5 * (+1)
    np.testing.assert_allclose(h[:, 0], [0.0, 0.5, 0.75, 0.0, 0.5])


def _batch(T=300, B=3, seed=0):
    g = np.random.default_rng(seed)
    c = g.choice([-0.5, -0.25, 0.0, 0.25, 0.5], size=(T, B))
    session = np.repeat(np.arange(T // 100), 100)[:, None].repeat(B, 1)
    z = torch.zeros((T, B), dtype=torch.float64)
    return TrialBatch([f"m{i}" for i in range(B)], torch.as_tensor(c), z.long(), z, torch.ones((T, B), dtype=bool),
                      torch.as_tensor(session), torch.zeros((T, B), dtype=torch.int64), torch.full((B,), T))


def _params(B):
    t = lambda v: torch.full((B,), v, dtype=torch.float64)  # noqa: E731
    return NetParams(t(0.05), t(8.0), t(0.3), t(1.0), t(0.5), t(0.4), t(0.1), t(0.06))


def _copies(probe, batch, params, seeds, kappa, offset, gain):
    T, B = batch.shape
    src = probe.KernelChoices(seeds, torch.float64, params.lapse, kappa, 0.3, batch.session, batch.valid,
                              torch.zeros((T, B), dtype=torch.float64), offset, gain)
    out = torch.zeros((T, B), dtype=torch.int64)

    def record(trial):
        out[trial.t] = trial.choice

    rollout(init_weights(params), params, GivenStimuli(batch.contrast, seeds), src, 0, T, learn=batch.valid,
            recorder=record)
    return out


def test_kappa_zero_is_the_free_run_with_session_effects(probe):
    batch = _batch()
    T, B = batch.shape
    params = _params(B)
    seeds = torch.tensor([11, 12, 13])
    g = np.random.default_rng(1)
    offset = torch.as_tensor(np.repeat(g.normal(0, 1.0, (3, B)), 100, axis=0))
    gain = torch.as_tensor(np.repeat(np.exp(g.normal(0, 0.4, (3, B))), 100, axis=0))
    with torch.no_grad():
        ours = _copies(probe, batch, params, seeds, torch.zeros(B, dtype=torch.float64), offset, gain)
        library, _ = simulate_on_stimuli(batch.contrast, batch.valid, params, seeds, engine="reference",
                                         offset=offset, gain=gain)
    assert torch.equal(ours, library)
    with torch.no_grad():
        sticky = _copies(probe, batch, params, seeds, torch.full((B,), 3.0, dtype=torch.float64), offset, gain)
    assert not torch.equal(sticky, library)


def test_policy_with_the_kernel(probe):
    B = 2
    lapse = torch.tensor([0.1, 0.0], dtype=torch.float64)
    kappa = torch.tensor([2.0, -1.0], dtype=torch.float64)
    pref = torch.tensor([[0.5, -0.3]] * 2, dtype=torch.float64)
    offset = torch.tensor([[0.2, 0.1]] * 2, dtype=torch.float64)
    gain = torch.tensor([[1.5, 0.7]] * 2, dtype=torch.float64)
    session, valid = torch.zeros((2, B), dtype=torch.int64), torch.ones((2, B), dtype=bool)
    src = probe.KernelChoices(torch.tensor([1, 2]), torch.float64, lapse, kappa, 0.25, session, valid, pref, offset,
                              gain)
    seen = []
    src.sampled = lambda t, p: (seen.append(p), torch.tensor([1, 0]))[1]
    value = torch.tensor([0.8, -1.2], dtype=torch.float64)  # beta (Q_R - Q_L)

    def p_of(z):
        return 0.5 * lapse + (1 - lapse) * torch.sigmoid(z)

    src(0, p_of(value + pref[0]))  # h = 0 on the first trial
    torch.testing.assert_close(seen[0], p_of(gain[0] * value + pref[0] + offset[0]), rtol=0, atol=1e-12)
    src(1, p_of(value + pref[1]))  # h = 0.25 * (+1, -1) after choices Right, Left
    h = torch.tensor([0.25, -0.25], dtype=torch.float64)
    torch.testing.assert_close(seen[1], p_of(gain[1] * value + pref[1] + offset[1] + kappa * h), rtol=0, atol=1e-12)
