"""The stim_skew option (per-side initial stimulus channels): init weights, kernel derivatives, recovery, defaults."""
import math

import numpy as np
import pytest
import torch
from autograd_check import assert_matches_autograd

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit import fit_mice
from mouse_rl.fit.batch import TrialBatch, make_batch
from mouse_rl.fit.kernel import THETA, nll_derivatives
from mouse_rl.fit.likelihood import choice_logprob
from mouse_rl.fit.transforms import DEFAULT_FREE, ParamTransform
from mouse_rl.network import encode, init_weights
from mouse_rl.params import PARAMS, NetParams


def test_init_weights_with_skew_by_hand():
    """skew = ln 4: the left channel's gain and striatal weights start halved, the right one's doubled."""
    p = ModelParams(w0=0.05, s0=0.2, b_R=0.1, stim_skew=np.array([math.log(4.0), 0.0, -math.log(4.0)])
                    ).tensors(3, dtype=torch.float64)
    w = init_weights(p)
    np.testing.assert_allclose(w.a.numpy(), [[0.025, 0.1, 1.0], [0.05, 0.05, 1.0], [0.1, 0.025, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(w.U[0].numpy(), [[0.1, 0.4, 0.0], [0.1, 0.4, 0.1]], rtol=1e-15)
    np.testing.assert_allclose(w.U[2].numpy(), [[0.4, 0.1, 0.0], [0.4, 0.1, 0.1]], rtol=1e-15)
    d = init_weights(ModelParams().tensors(1, dtype=torch.float64))  # default: exactly MODEL.md
    assert d.a[0].tolist() == [0.05, 0.05, 1.0] and d.U[0].tolist() == [[0.2, 0.2, 0.0], [0.2, 0.2, 0.0]]


def test_default_is_model_md_and_not_fitted():
    assert PARAMS["stim_skew"].default == 0.0 and ModelParams().stim_skew == 0.0
    assert "stim_skew" not in DEFAULT_FREE
    assert NetParams._fields[8] == "stim_skew" and THETA == NetParams._fields
    # the eight MODEL.md fields alone still build a NetParams (skew 0)
    z = torch.zeros(1, dtype=torch.float64)
    p = NetParams(z + 0.01, z + 9, z + 0.05, z + 1, z + 0.2, z, z, z)
    assert init_weights(p).a[0].tolist() == [0.05, 0.05, 1.0]
    with pytest.raises(ValueError, match="stim_skew"):
        ModelParams(stim_skew=float("nan"))


def test_identity_transform_round_trip():
    tr = ParamTransform(free=(*DEFAULT_FREE, "stim_skew"))
    u = tr.to_u({**{n: PARAMS[n].fit_start for n in DEFAULT_FREE}, "stim_skew": np.array([-1.5, 0.0, 2.5])}, 3)
    np.testing.assert_allclose(u[:, -1].numpy(), [-1.5, 0.0, 2.5])
    assert tr.params(u).stim_skew.tolist() == [-1.5, 0.0, 2.5]
    theta, d1, d2 = tr.natural(u.numpy())
    assert theta.shape == (3, len(NetParams._fields)) and np.all(d1[:, -1] == 1) and np.all(d2[:, -1] == 0)
    assert tr.jacobian_diag(u)[:, -1].tolist() == [1.0, 1.0, 1.0]
    lo, hi = tr.bounds_u()
    assert (lo[-1], hi[-1]) == PARAMS["stim_skew"].fit_bounds
    starts = tr.starts(5, seed=1)
    assert starts[0, -1] == 0.0 and np.all(np.abs(starts[1:, -1]) <= 2.0)


@pytest.fixture(scope="module")
def small_batch():
    res = simulate_cohort(n_mice=3, n_sessions=2, params=ModelParams(eta=0.05, lapse=0.1, b_R=0.1, stim_skew=1.0),
                          seed=5)
    return make_batch(res.trials).crop(150)


@pytest.mark.parametrize("encoding,positive", [("side", True), ("magnitude", False)])
def test_kernel_skew_derivatives_match_autograd(small_batch, encoding, positive):
    b = small_batch
    T, B = b.shape
    r = np.random.default_rng(4)
    theta = np.column_stack([r.uniform(0.01, 0.15, B), r.uniform(2, 12, B), r.uniform(0.02, 0.6, B),
                             r.uniform(0.5, 2, B), r.uniform(0.05, 0.6, B), r.uniform(0.0, 0.3, B),
                             r.uniform(0.0, 0.3, B), r.uniform(0.01, 0.2, B), r.uniform(-3, 3, B)])
    x = encode(b.contrast, encoding).permute(1, 0, 2).numpy()
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    nll, g, H = nll_derivatives(*args, theta, positive, True, skew_derivatives=True)
    nll0, g0, H0 = nll_derivatives(*args, theta, positive, True)  # skew used, its derivatives not propagated
    np.testing.assert_array_equal(nll, nll0)
    np.testing.assert_allclose(g0[:, :8], g[:, :8], rtol=1e-13, atol=1e-13 * np.abs(g).max())
    assert np.all(g0[:, 8] == 0) and np.all(H0[:, 8] == 0)
    for m in range(B):
        col = TrialBatch(b.mice[m:m + 1], b.contrast[:, m:m + 1], b.choice[:, m:m + 1], b.reward[:, m:m + 1],
                         b.valid[:, m:m + 1], b.session[:, m:m + 1], b.row[:, m:m + 1], b.n_trials[m:m + 1])

        def f(th):
            p = NetParams(*[th[i:i + 1] for i in range(9)])
            return -choice_logprob(col, p, encoding, positive, None, True).sum()

        assert_matches_autograd(f, theta[m], nll[m], g[m], H[m])


def test_kernel_eight_column_theta_is_skew_zero(small_batch):
    b = small_batch
    x = encode(b.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    theta8 = np.tile([0.05, 8.0, 0.1, 1.0, 0.2, 0.05, 0.1, 0.03], (3, 1))
    f8, g8, H8 = nll_derivatives(*args, theta8)
    f9, g9, H9 = nll_derivatives(*args, np.hstack([theta8, np.zeros((3, 1))]), skew_derivatives=True)
    assert g8.shape == (3, 8) and H8.shape == (3, 8, 8) and g9.shape == (3, 9)
    np.testing.assert_array_equal(f8, f9)
    np.testing.assert_allclose(g8, g9[:, :8], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(H8, H9[:, :8, :8], rtol=1e-14, atol=1e-12)
    with pytest.raises(ValueError, match="theta"):
        nll_derivatives(*args, theta8[:, :7])


#: One-sided learners by construction: skew +3 (the left channel starts 4.5x weaker in gain and in striatal
#: weights, the right one 4.5x stronger), -3, and balanced 0.
SKEWS = np.array([3.0, -3.0, 0.0, 3.0])


@pytest.fixture(scope="module")
def skewed_cohort():
    p = ModelParams(eta=0.03, beta=8.0, w0=0.1, s0=0.25, b_L=0.05, b_R=0.05, lapse=0.03, stim_skew=SKEWS)
    return simulate_cohort(len(SKEWS), 10, 200, p, seed=21, dtype=torch.float64)


def test_skew_is_recovered_on_one_sided_mice(skewed_cohort):
    res = fit_mice(skewed_cohort.trials, n_restarts=3, seed=0, free=(*DEFAULT_FREE, "stim_skew"), per_trial=False)
    est = res.params.sort_values("mouse")["stim_skew"].to_numpy()
    assert res.u.shape == (len(SKEWS), 8) and "se_stim_skew" in res.params
    # 10 sessions of 200 trials pin down the sign and a clear skew; the prior (sd 2) and the w0 / s0 / skew
    # trade-off shrink its size (measured: +1.3, -2.5, -0.2, +1.3 for +3, -3, 0, +3; se 1.6, 0.5, 0.25, 1.8)
    one_sided = SKEWS != 0
    assert np.all(np.sign(est[one_sided]) == np.sign(SKEWS[one_sided])), est
    assert np.all(np.abs(est[one_sided]) > 0.75) and abs(est[~one_sided][0]) < 0.75, est
    # the default fit does not free it: the column is there, at its fixed value 0
    default = fit_mice(skewed_cohort.trials[skewed_cohort.trials.mouse == "sim0000"], n_restarts=1, max_iter=5,
                       per_trial=False)
    assert default.params["stim_skew"].iloc[0] == 0.0 and default.u.shape[1] == len(DEFAULT_FREE)


def test_skew_alone_free_fits():
    """Only the skew free (e.g. `mouse-rl recover --free stim_skew`): no inner fit, the skew starts fitted."""
    res = simulate_cohort(2, 2, 60, params=ModelParams(stim_skew=np.array([2.0, -2.0]), eta=0.02), seed=1)
    fit = fit_mice(res.trials, free=("stim_skew",), max_iter=15, n_restarts=1)
    assert np.isfinite(fit.params["stim_skew"]).all() and np.isfinite(fit.params["loglik"]).all()
