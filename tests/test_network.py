"""The single-trial update against hand-computed values and autograd."""
import numpy as np
import pytest
import torch

from mouse_rl.network import Weights, encode, forward, init_weights, log_policy, p_right, trial_update
from mouse_rl.params import ModelParams

A = torch.tensor([0.5, 0.3, 1.0], dtype=torch.float64)
U = torch.tensor([[0.2, 0.4, 0.1], [0.6, 0.3, 0.2]], dtype=torch.float64)
ETA = torch.tensor(0.1, dtype=torch.float64)


def test_hand_computed_left_trial_chosen_left_rewarded():
    x = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    step = trial_update(Weights(A, U), x, torch.tensor(0), torch.tensor(1.0, dtype=torch.float64), ETA)
    # h = (0.5, 0, 1); Q_stim = (0.1, 0.3); Q_const = (0.1, 0.2); Q_tot = (0.2, 0.5)
    assert step.forward.q_stim.tolist() == pytest.approx([0.1, 0.3])
    assert step.forward.q_const.tolist() == pytest.approx([0.1, 0.2])
    assert step.forward.q_tot.tolist() == pytest.approx([0.2, 0.5])
    assert step.delta_tot.item() == pytest.approx(0.8)
    assert step.delta_stim.item() == pytest.approx(0.9)
    assert step.delta_const.item() == pytest.approx(0.9)
    # da = eta * d_tot * U[L] * x = 0.1 * 0.8 * (0.2, 0, 0.1)
    assert step.weights.a.tolist() == pytest.approx([0.516, 0.3, 1.008])
    # dU[L, stim] = 0.1 * 0.9 * (0.5, 0); dU[L, b] = 0.1 * 0.9 * 1; row R untouched
    assert step.weights.U.reshape(-1).tolist() == pytest.approx([0.245, 0.4, 0.19, 0.6, 0.3, 0.2])


def test_hand_computed_right_error_with_absolute_value():
    x = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    eta = torch.tensor(1.0, dtype=torch.float64)
    step = trial_update(Weights(A, U), x, torch.tensor(1), torch.tensor(0.0, dtype=torch.float64), eta, positive=True)
    # h = (0, 0.3, 1); Q_stim_R = 0.09, Q_const_R = 0.2, Q_tot_R = 0.29
    assert step.delta_tot.item() == pytest.approx(-0.29)
    assert step.delta_stim.item() == pytest.approx(-0.09)
    assert step.delta_const.item() == pytest.approx(-0.2)
    # a = |a - 0.29 * (0, 0.3, 0.2)| ; U[R] = |(0.6, 0.3 - 0.09*0.3, 0.2 - 0.2*1)|
    assert step.weights.a.tolist() == pytest.approx([0.5, 0.3 - 0.087, 1.0 - 0.058])
    assert step.weights.U[1].tolist() == pytest.approx([0.6, 0.273, 0.0])
    neg = trial_update(Weights(A, U), x, torch.tensor(1), torch.tensor(-5.0, dtype=torch.float64), eta, positive=False)
    assert (neg.weights.U < 0).any()
    pos = trial_update(Weights(A, U), x, torch.tensor(1), torch.tensor(-5.0, dtype=torch.float64), eta, positive=True)
    assert torch.equal(pos.weights.U, neg.weights.U.abs()) and torch.equal(pos.weights.a, neg.weights.a.abs())


@pytest.mark.parametrize("choice", [0, 1])
@pytest.mark.parametrize("xs", [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.25, 0.0, 1.0]])
def test_each_loss_moves_only_its_block(choice, xs):
    """Autograd: each block's step is -eta * grad of its own loss; the other losses leave it alone."""
    x = torch.tensor(xs, dtype=torch.float64)
    reward = torch.tensor(0.7, dtype=torch.float64)
    a = A.clone().requires_grad_(True)
    Uw = U.clone().requires_grad_(True)
    fwd = forward(Weights(a, Uw), x)
    losses = {
        "cortex": 0.5 * (reward - fwd.q_tot[choice]) ** 2,
        "stim": 0.5 * (reward - fwd.q_stim[choice]) ** 2,
        "const": 0.5 * (reward - fwd.q_const[choice]) ** 2,
    }
    grads = {k: torch.autograd.grad(v, (a, Uw), retain_graph=True) for k, v in losses.items()}
    stim_block = torch.zeros(2, 3, dtype=torch.float64)
    stim_block[choice, :2] = 1
    const_block = torch.zeros(2, 3, dtype=torch.float64)
    const_block[choice, 2] = 1
    expected_a = A - ETA * grads["cortex"][0]
    expected_U = U - ETA * (grads["stim"][1] * stim_block + grads["const"][1] * const_block)
    step = trial_update(Weights(A, U), x, torch.tensor(choice), reward, ETA, positive=False)
    torch.testing.assert_close(step.weights.a, expected_a)
    torch.testing.assert_close(step.weights.U, expected_U)
    # the stimulus and constant losses have no gradient on each other's block of U
    assert torch.all(grads["stim"][1][:, 2] == 0) and torch.all(grads["const"][1][:, :2] == 0)
    # and the unchosen row never moves
    torch.testing.assert_close(step.weights.U[1 - choice], U[1 - choice])


def test_batched_update_equals_one_by_one():
    g = torch.Generator().manual_seed(0)
    n = 7
    a = torch.rand(n, 3, generator=g, dtype=torch.float64)
    Ub = torch.rand(n, 2, 3, generator=g, dtype=torch.float64)
    x = encode(torch.tensor([-0.5, 0.25, 0.0, 0.5, -0.25, 0.0, 0.5], dtype=torch.float64))
    ch = torch.tensor([0, 1, 1, 0, 0, 1, 1])
    r = torch.rand(n, generator=g, dtype=torch.float64)
    eta = torch.rand(n, generator=g, dtype=torch.float64)
    batched = trial_update(Weights(a, Ub), x, ch, r, eta)
    for i in range(n):
        single = trial_update(Weights(a[i], Ub[i]), x[i], ch[i], r[i], eta[i])
        torch.testing.assert_close(batched.weights.U[i], single.weights.U)
        torch.testing.assert_close(batched.weights.a[i], single.weights.a)
        torch.testing.assert_close(batched.delta_stim[i], single.delta_stim)


def test_encodings():
    c = torch.tensor([-0.5, -0.25, 0.0, 0.25, 0.5])
    assert encode(c, "side").tolist() == [[1, 0, 1], [1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 1]]
    assert encode(c, "magnitude").tolist() == [[0.5, 0, 1], [0.25, 0, 1], [0, 0, 1], [0, 0.25, 1], [0, 0.5, 1]]
    with pytest.raises(ValueError, match="encoding"):
        encode(c, "polar")


def test_policy_and_lapse():
    q = torch.tensor([[0.2, 0.5]], dtype=torch.float64)
    beta = torch.tensor([9.0], dtype=torch.float64)
    expected = 1 / (1 + torch.exp(torch.tensor(-9 * 0.3, dtype=torch.float64)))
    assert p_right(q, beta).item() == pytest.approx(expected.item())
    lapse = torch.tensor([0.2], dtype=torch.float64)
    assert p_right(q, beta, lapse).item() == pytest.approx(0.1 + 0.8 * expected.item())
    logp = log_policy(q, beta, lapse)
    assert logp.exp().sum().item() == pytest.approx(1.0)
    assert logp[0, 1].exp().item() == pytest.approx(0.1 + 0.8 * expected.item())
    # extreme logits stay finite
    big = log_policy(torch.tensor([[0.0, 100.0]]), torch.tensor([100.0]))
    assert torch.isfinite(big).all()


def test_init_weights_defaults_and_jitter():
    p = ModelParams(b_R=0.05).tensors(4, dtype=torch.float64)
    w = init_weights(p)
    assert w.a[0].tolist() == [0.05, 0.05, 1.0]
    assert w.U[0].tolist() == [[0.2, 0.2, 0.0], [0.2, 0.2, 0.05]]
    seeds = torch.arange(4)
    jittered = init_weights(p, seeds, jitter=1e-5)
    diff = (jittered.U - w.U).abs()
    assert (diff > 0).all() and (diff < 1e-4).all()
    assert (jittered.U >= 0).all()
    torch.testing.assert_close(init_weights(p, seeds, 1e-5).U, jittered.U)  # reproducible


@pytest.mark.parametrize(
    "field,value", [("eta", 0.0), ("eta", 1.5), ("beta", -1.0), ("lapse", 1.2), ("w0", float("nan")), ("s0", -0.1)]
)
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ModelParams(**{field: value})


def test_learning_reward_one_rule_for_tensors_and_arrays():
    from mouse_rl.network import learning_reward

    c = np.array([-0.25, 0.0, 0.0, 0.5, 0.0])
    r = np.array([1.0, 0.0, np.nan, 0.0, 1.0])
    expected = learning_reward(c, r, "expected")
    random = learning_reward(c, r, "random")
    np.testing.assert_array_equal(expected, [1.0, 0.5, 0.5, 0.0, 0.5])
    np.testing.assert_array_equal(random, [1.0, 0.0, 0.5, 0.0, 1.0])  # 0.5 only where unknown
    for mode, want in (("expected", expected), ("random", random)):
        got = learning_reward(torch.as_tensor(c), torch.as_tensor(r), mode)
        assert torch.is_tensor(got) and np.array_equal(got.numpy(), want)
    with pytest.raises(ValueError, match="zero_reward"):
        learning_reward(c, r, "drawn")


def test_prediction_errors_are_the_teaching_signals_of_trial_update():
    from mouse_rl.network import forward, prediction_errors

    g = torch.Generator().manual_seed(1)
    w = Weights(torch.rand(5, 3, generator=g, dtype=torch.float64), torch.rand(5, 2, 3, generator=g, dtype=torch.float64))
    x = encode(torch.tensor([-0.5, 0.0, 0.25, 0.5, 0.0], dtype=torch.float64))
    choice, reward = torch.tensor([0, 1, 1, 0, 0]), torch.tensor([1.0, 0.5, 1.0, 0.0, 0.5], dtype=torch.float64)
    step = trial_update(w, x, choice, reward, torch.full((5,), 0.1, dtype=torch.float64))
    d = prediction_errors(forward(w, x), choice, reward)
    assert torch.equal(d, torch.stack([step.delta_tot, step.delta_stim, step.delta_const], -1))


def test_stimulus_reward_by_hand_for_arrays_and_tensors():
    from mouse_rl.network import stimulus_reward

    c = np.array([-0.5, -0.25, 0.25, 0.5, -0.5, 0.5])
    ch = np.array([0, 1, 1, 0, 0, 1])
    expected = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])  # rewarded iff the choice is on the stimulus side
    np.testing.assert_array_equal(stimulus_reward(c, ch), expected)
    t = stimulus_reward(torch.tensor(c), torch.tensor(ch))
    assert t.dtype == torch.float64 and np.array_equal(t.numpy(), expected)


def test_flat_weights_round_trip_in_schema_order():
    from mouse_rl.network import flat_weights, weights_from_flat
    from mouse_rl.schema import WEIGHT_COLUMNS

    v = flat_weights(Weights(A, U))
    assert len(WEIGHT_COLUMNS) == 9 and v.tolist() == [*A.tolist(), *U.flatten().tolist()]
    back = weights_from_flat(v[None].expand(4, 9))
    assert torch.equal(back.a[0], A) and torch.equal(back.U[2], U)
    table = np.arange(18.0).reshape(2, 9)  # a NumPy (rows, WEIGHT_COLUMNS) block too
    a, u = weights_from_flat(table)
    assert a.shape == (2, 3) and u.shape == (2, 2, 3) and u[1, 1, 0] == 15.0
