"""The fused likelihood kernel against autograd through the reference `network.trial_update` (float64)."""
import numpy as np
import pytest
import torch
from autograd_check import assert_matches_autograd, column

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.kernel import THETA, nll_derivatives
from mouse_rl.fit.likelihood import choice_logprob
from mouse_rl.network import encode
from mouse_rl.params import NetParams


@pytest.fixture(scope="module")
def batch():
    res = simulate_cohort(n_mice=3, n_sessions=2, params=ModelParams(eta=0.05, lapse=0.1, b_R=0.1), seed=3)
    return make_batch(res.trials).crop(160)



def _random_theta(B, seed):
    r = np.random.default_rng(seed)
    return np.column_stack([r.uniform(0.01, 0.15, B), r.uniform(2, 12, B), r.uniform(0.02, 0.6, B),
                            r.uniform(0.5, 2, B), r.uniform(0.05, 0.6, B), r.uniform(0.0, 0.3, B),
                            r.uniform(0.0, 0.3, B), r.uniform(0.01, 0.2, B)])


@pytest.mark.parametrize("encoding,positive,use_lapse", [("side", True, True), ("magnitude", True, False),
                                                         ("side", False, True)])
def test_value_gradient_hessian_match_autograd(batch, encoding, positive, use_lapse):
    T, B = batch.shape
    theta = _random_theta(B, 1)
    learn = batch.valid.clone()
    learn[::7] = False
    score = batch.valid.clone()
    score[::5] = False
    learn, score = learn & batch.valid, score & batch.valid
    x = encode(batch.contrast, encoding).permute(1, 0, 2).numpy()
    nll, g, H, lp = nll_derivatives(x, batch.choice.T.numpy(), batch.reward.T.numpy(), learn.T.numpy(),
                                    score.T.numpy(), batch.n_trials.numpy(), theta, positive, use_lapse,
                                    trial_logp=True)
    for m in range(B):
        col = column(batch, m)

        def f(th):
            p = NetParams(*[th[i:i + 1] for i in range(8)])
            logp = choice_logprob(col, p, encoding, positive, learn[:, m:m + 1], use_lapse)
            return -(logp * score[:, m:m + 1]).sum()

        assert_matches_autograd(f, theta[m], nll[m], g[m], H[m])
        th = torch.tensor(theta[m], dtype=torch.float64)
        with torch.no_grad():
            ref = choice_logprob(col, NetParams(*[th[i:i + 1] for i in range(8)]), encoding, positive,
                                 learn[:, m:m + 1], use_lapse)[:, 0].numpy()
        s = score[:, m].numpy()
        np.testing.assert_allclose(lp[m][s], ref[s], rtol=1e-12, atol=1e-13)


def test_rows_select_data_and_columns_are_independent(batch):
    """A column's numbers do not depend on which other columns share the call."""
    T, B = batch.shape
    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(), batch.valid.T.numpy(),
            batch.n_trials.numpy())
    theta = _random_theta(5, 2)
    rows = np.array([2, 0, 1, 2, 0])
    together = nll_derivatives(*args, theta, rows=rows)
    for j in range(5):
        alone = nll_derivatives(*args, theta[j:j + 1], rows=rows[j:j + 1])
        for a, b in zip(together, alone):
            assert np.array_equal(a[j], b[0])
    with pytest.raises(ValueError, match="rows"):
        nll_derivatives(*args, theta, rows=np.array([0, 1, 2, 3, 9]))


def test_theta_order_is_netparams_order():
    assert THETA == NetParams._fields


def test_lower_orders_give_the_same_numbers(batch):
    """Order 0 propagates no derivatives and order 1 no Hessians: the value and gradient are unchanged."""
    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(), batch.valid.T.numpy(),
            batch.n_trials.numpy(), _random_theta(3, 4))
    f2, g2, H2 = nll_derivatives(*args, order=2)
    f1, g1, H1 = nll_derivatives(*args, order=1)
    f0, g0, H0 = nll_derivatives(*args, order=0)
    assert np.array_equal(f0, f2) and np.array_equal(f1, f2) and np.array_equal(g1, g2)
    assert not g0.any() and not H0.any() and not H1.any()
    np.testing.assert_allclose(H2, np.swapaxes(H2, 1, 2), rtol=1e-13, atol=0)
    assert np.abs(H2).max() > 0
    # order 0 runs the smallest dual size whatever is asked: values equal those of the largest (k, stim_skew)
    skewed = np.column_stack([args[-1], np.array([-1.5, 0.0, 2.0])])
    full = nll_derivatives(*args[:-1], skewed, order=2, skew_derivatives=True, trial_logp=True)
    value = nll_derivatives(*args[:-1], skewed, order=0, skew_derivatives=True, trial_logp=True)
    assert np.array_equal(value[0], full[0]) and np.array_equal(value[3], full[3])


def test_gauss_newton_hessian_is_the_exact_one_without_second_order_duals(batch):
    """order=1 with gauss_newton: the same value and gradient, and the Hessian without the Q values' second
    derivatives. At beta's own entry (beta enters the logit linearly) the two Hessians agree exactly."""
    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(), batch.valid.T.numpy(),
            batch.n_trials.numpy(), _random_theta(3, 5))
    f2, g2, H2 = nll_derivatives(*args, order=2)
    f1, g1, H1 = nll_derivatives(*args, order=1, gauss_newton=True)
    assert np.array_equal(f1, f2) and np.array_equal(g1, g2)
    np.testing.assert_allclose(H1, np.swapaxes(H1, 1, 2), rtol=1e-13, atol=0)
    b, lapse = THETA.index("beta"), THETA.index("lapse")
    for i in (b, lapse):
        np.testing.assert_allclose(H1[:, i, :], H2[:, i, :], rtol=1e-12, atol=1e-12)
    assert not np.allclose(H1, H2)  # the network's curvature terms are left out
    assert not nll_derivatives(*args, order=0, gauss_newton=True)[2].any()  # only with order 1


def test_leaving_out_k_derivatives_changes_nothing_else(batch):
    """k_derivatives=False (a fit with k fixed) propagates five dual coordinates instead of six: the value and
    every other derivative are unchanged (to rounding), k's row and column are 0."""
    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(), batch.valid.T.numpy(),
            batch.n_trials.numpy(), _random_theta(3, 6))
    k = THETA.index("k")
    rest = [i for i in range(args[-1].shape[1]) if i != k]
    f6, g6, H6 = nll_derivatives(*args)
    f5, g5, H5 = nll_derivatives(*args, k_derivatives=False)
    np.testing.assert_allclose(f5, f6, rtol=1e-14, atol=0)
    np.testing.assert_allclose(g5[:, rest], g6[:, rest], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H5[:, rest][:, :, rest], H6[:, rest][:, :, rest], rtol=1e-12, atol=1e-12)
    assert np.abs(g6[:, k]).max() > 0 and not g5[:, k].any() and not H5[:, k].any() and not H5[:, :, k].any()


@pytest.mark.parametrize("order", [0, 1, 2])
def test_restarts_in_lockstep_lanes_equal_each_column_alone(batch, order):
    """Columns on one data row run four to a group (vector lanes); a column's numbers are bit-for-bit those
    it gets alone, whatever its group, lane or the padding of a partly filled group."""
    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(), batch.valid.T.numpy(),
            batch.n_trials.numpy())
    rows = np.array([1] * 11 + [0, 2, 0])  # 11 restarts of one mouse: groups of 4, 4 and 3 (one unused lane)
    theta = _random_theta(len(rows), 7)
    together = nll_derivatives(*args, theta, rows=rows, order=order, trial_logp=True)
    for j in range(len(rows)):
        alone = nll_derivatives(*args, theta[j:j + 1], rows=rows[j:j + 1], order=order, trial_logp=True)
        for a, b in zip(together, alone):
            assert np.array_equal(a[j], b[0])


def test_thread_count_changes_no_number(batch):
    """The lane groups run on numba's thread count of Python threads: one thread or several give the same
    numbers, bit for bit, and the caller's numba setting is left as it was."""
    import numba

    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(), batch.valid.T.numpy(),
            batch.n_trials.numpy())
    rows = np.array([1] * 9 + [0, 2, 0, 2, 2])  # six groups over three rows
    theta = _random_theta(len(rows), 11)
    old = numba.get_num_threads()
    many = numba.config.NUMBA_NUM_THREADS  # all the machine's (2 in CI)
    try:
        numba.set_num_threads(1)
        one = nll_derivatives(*args, theta, rows=rows, trial_logp=True)
        numba.set_num_threads(many)
        several = nll_derivatives(*args, theta, rows=rows, trial_logp=True)
        assert numba.get_num_threads() == many
    finally:
        numba.set_num_threads(old)
    for a, b in zip(one, several):
        assert np.array_equal(a, b)


def test_far_tail_without_lapse_matches_reference(batch):
    """With the lapse at 0 and a steep policy, P(observed choice) underflows on some trials (below 1e-320;
    the kernel then works in logs): log-probabilities still match the reference policy."""
    T, B = batch.shape
    theta = _random_theta(B, 8)
    theta[:, THETA.index("beta")] = 1e5
    theta[:, THETA.index("lapse")] = 0.0
    x = encode(batch.contrast, "side").permute(1, 0, 2).numpy()
    *_, lp = nll_derivatives(x, batch.choice.T.numpy(), batch.reward.T.numpy(), batch.valid.T.numpy(),
                             batch.valid.T.numpy(), batch.n_trials.numpy(), theta, order=0, trial_logp=True)
    tails = 0
    for m in range(B):
        th = torch.tensor(theta[m], dtype=torch.float64)
        with torch.no_grad():
            ref = choice_logprob(column(batch, m), NetParams(*[th[i:i + 1] for i in range(8)]), "side", True,
                                 batch.valid[:, m:m + 1], True)[:, 0].numpy()
        s = batch.valid[:, m].numpy()
        np.testing.assert_allclose(lp[m][s], ref[s], rtol=1e-12, atol=1e-13)
        tails += int((ref[s] < -750).sum())
    assert tails > 0


@pytest.mark.parametrize("encoding,positive", [("side", True), ("magnitude", False)])
def test_teacher_forced_readouts_from_kernel_weights_match_reference_rollout(batch, encoding, positive):
    """The per-trial table's read-outs (Q's, teaching signals, pre-update weights) from the kernel's recorded
    weights equal the reference teacher-forced rollout through `trial_update` (float64, 1e-12)."""
    from mouse_rl.fit.likelihood import _recorded_by_kernel, unroll
    T, B = batch.shape
    th = torch.tensor(_random_theta(B, 9))
    p = NetParams(*th.T, torch.zeros(B, dtype=th.dtype))
    learn = batch.valid.clone()
    learn[::3] = False
    fast = _recorded_by_kernel(batch, p, encoding, positive, learn)
    with torch.no_grad():
        ref = unroll(batch, p, encoding, positive, learn, record=True)
    v = batch.valid
    for name in ref._fields:
        a, b = getattr(fast, name)[v], getattr(ref, name)[v]
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13, err_msg=name)
    assert fast.delta_tot[v].abs().max() > 0 and (fast.a[v][1:] != fast.a[v][:-1]).any()


def test_lane_groups_fill_lanes_with_one_row_each_when_rows_have_equal_lengths():
    """Columns of one data row share a group even when other rows have as many trials (restarts are laid out
    restart by restart, so a row's columns are not adjacent): 2 rows x 8 restarts fill 4 groups, no lane
    unused; longer rows come first."""
    from mouse_rl.fit.kernel import _lane_groups
    rows = np.tile([0, 1], 8)
    grow, gcols = _lane_groups(rows, np.array([500, 500]))
    assert len(grow) == 4 and (gcols >= 0).all()
    assert all((rows[g] == r).all() for r, g in zip(grow, gcols))
    assert sorted(gcols.ravel()) == list(range(16))
    grow, gcols = _lane_groups(np.array([0, 1, 0, 2, 1]), np.array([100, 300, 200]))
    assert list(grow) == [1, 2, 0] and [sorted(g[g >= 0]) for g in gcols] == [[1, 4], [3], [0, 2]]
