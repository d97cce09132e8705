"""``bench/crosstalk_probe.py`` fits two extensions with its own numba unroll of the network: it must be
:func:`mouse_rl.network.trial_update` and the policy of :func:`mouse_rl.network.p_right` fed the cross-talk
input and the innate logit offset (float64, <= 1e-12), and its free-running copies must learn by that rule from
their own choices."""
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mouse_rl.network import Weights, forward, p_right, trial_update

PATH = Path(__file__).resolve().parents[1] / "bench" / "crosstalk_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("crosstalk_probe", PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["crosstalk_probe"] = mod  # numba's cache locates jitted functions through the module's name
    spec.loader.exec_module(mod)
    return mod


def reference(th, c, choice, reward):
    """P(Right) per trial of the library's network with input left [1, g, 1], right [g, 1, 1], zero [0, 0, 1]
    and rho exp(-t / tau) added to the policy's logit (lapse as p_right)."""
    eta, beta, w0, k, s0, bL, bR, lapse, g, rho, tau = (torch.tensor(v, dtype=torch.float64) for v in th)
    w = Weights(torch.stack([w0, w0, k])[None], torch.tensor([[[s0, s0, bL], [s0, s0, bR]]], dtype=torch.float64))
    out = []
    for t, (ct, ch, r) in enumerate(zip(c, choice, reward)):
        x = torch.tensor([[1.0 if ct < 0 else (g if ct > 0 else 0.0), 1.0 if ct > 0 else (g if ct < 0 else 0.0),
                           1.0]], dtype=torch.float64)
        fwd = forward(w, x)
        if rho == 0:
            p = p_right(fwd.q_tot, beta[None], lapse[None])
        else:
            z = torch.sigmoid(beta * (fwd.q_tot[..., 1] - fwd.q_tot[..., 0]) + rho * math.exp(-t / tau))
            p = 0.5 * lapse + (1 - lapse) * z
        out.append(float(p[0]))
        w = trial_update(w, x, torch.tensor([int(ch)]), torch.tensor([float(r)], dtype=torch.float64),
                         eta[None], fwd=fwd).weights
    return np.array(out)


def trials(n, seed):
    rng = np.random.default_rng(seed)
    c = rng.choice([-0.5, -0.25, 0.0, 0.25, 0.5], size=n)
    choice = rng.integers(0, 2, size=n)
    reward = np.where(c == 0, 0.5, ((choice == 1) == (c > 0)).astype(float))
    return c, choice.astype(np.int64), reward


@pytest.mark.parametrize("gamma, rho", [(0.0, 0.0), (0.3, 0.0), (0.3, 1.7)])
def test_unroll_is_the_library_network(probe, gamma, rho):
    c, choice, reward = trials(400, 1)
    th = np.array([0.02, 12.0, 0.4, 1.0, 1.5, 0.3, 0.1, 0.03, gamma, rho, 150.0])
    p = np.empty(len(c))
    ll = probe.unroll(th, c, choice, reward, len(c), p)
    ref = reference(th, c, choice, reward)
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-12)
    assert ll == pytest.approx(np.sum(np.where(choice == 1, np.log(ref), np.log1p(-ref))), abs=1e-9)


def test_free_run_learns_from_its_own_choices(probe):
    c, _, _ = trials(300, 2)
    th = np.array([0.03, 10.0, 0.5, 1.0, 1.0, 0.2, 0.2, 0.02, 0.4, -1.0, 100.0])
    copies = 3
    choice, p = np.zeros((copies, len(c)), dtype=np.int64), np.zeros((copies, len(c)))
    probe.free_run(th, c, len(c), copies, 7, choice, p)
    assert 0 < choice.mean() < 1 and abs(choice.mean() - p.mean()) < 0.05  # choices drawn from P(Right)
    for k in range(copies):
        reward = np.where(c == 0, 0.5, ((choice[k] == 1) == (c > 0)).astype(float))
        np.testing.assert_allclose(p[k], reference(th, c, choice[k], reward), rtol=0, atol=1e-12)


def test_theta_maps_the_free_parameters_and_keeps_the_rest_neutral(probe):
    names = probe.BASE + probe.VARIANTS["crosstalk"]
    tr, bounds, centre, sd = probe.coordinates(names)
    th = probe.theta(names, tr, centre)
    d = dict(zip(probe.THETA, th))
    assert d["gamma"] == pytest.approx(0.1) and d["beta"] == pytest.approx(9.0) and d["k"] == 1.0
    assert d["rho"] == 0.0
