"""The crosstalk option (each grating also drives the other side's stimulus input): encoding, kernel
derivatives, simulation engines, defaults."""
import numpy as np
import pytest
import torch
from autograd_check import assert_columns_match_reference

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit import fit_mice
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.kernel import THETA, nll_derivatives
from mouse_rl.fit.likelihood import teacher_forced
from mouse_rl.fit.transforms import DEFAULT_FREE, ParamTransform, with_options
from mouse_rl.network import encode, forward, init_weights, trial_update
from mouse_rl.params import PARAMS, NetParams
from mouse_rl.simulate import simulate_on_stimuli


def test_encode_by_hand():
    c = torch.tensor([[-0.5, 0.0, 0.25], [1.0, -1.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)  # one value per column (mouse)
    x = encode(c, "side", g)
    assert x[0].tolist() == [[1.0, 0.1, 1.0], [0.0, 0.0, 1.0], [0.5, 1.0, 1.0]]
    assert x[1].tolist() == [[0.1, 1.0, 1.0], [1.0, 0.3, 1.0], [0.0, 0.0, 1.0]]
    # magnitude: x_L + g x_R, x_R + g x_L of the plain inputs
    assert encode(torch.tensor([-0.5, 0.25]), "magnitude", 0.5).tolist() == [[0.5, 0.25, 1.0], [0.125, 0.25, 1.0]]
    # 0 and None are MODEL.md's inputs, exactly
    assert torch.equal(encode(c, "side", 0.0), encode(c, "side")) and torch.equal(encode(c, "side", g * 0),
                                                                                   encode(c))


def test_default_is_model_md_and_not_fitted():
    assert PARAMS["crosstalk"].default == 0.0 and ModelParams().crosstalk == 0.0
    assert "crosstalk" not in DEFAULT_FREE and THETA == NetParams._fields and THETA[9] == "crosstalk"
    assert with_options(crosstalk=True)[-1] == "crosstalk"
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="crosstalk"):
            ModelParams(crosstalk=bad)
    tr = ParamTransform(free=(*DEFAULT_FREE, "crosstalk"))
    u = tr.to_u({**{n: PARAMS[n].fit_start for n in DEFAULT_FREE}, "crosstalk": np.array([0.05, 0.5])}, 2)
    np.testing.assert_allclose(tr.params(u).crosstalk.numpy(), [0.05, 0.5], rtol=1e-12)
    assert tr.natural(u.numpy())[0].shape == (2, 12)


def test_single_trial_by_hand():
    """Left stimulus, g = 0.5: the right channel's input is 0.5, so the right gain and U[ch, R] learn too."""
    p = ModelParams(eta=0.1, w0=0.5, s0=0.5, crosstalk=0.5).tensors(1, dtype=torch.float64)
    w = init_weights(p)
    x = encode(torch.tensor([-1.0], dtype=torch.float64), "side", p.crosstalk)
    f = forward(w, x)
    # h = (0.5, 0.25, 1); Q^stim = 0.5 * 0.5 + 0.5 * 0.25 = 0.375 for both actions; Q^const = 0
    assert f.q_stim[0].tolist() == [0.375, 0.375] and f.q_tot[0].tolist() == [0.375, 0.375]
    step = trial_update(w, x, torch.tensor([0]), torch.tensor([1.0], dtype=torch.float64), p.eta)
    # delta_tot = delta_stim = 0.625, delta_const = 1; a_R += 0.1 * 0.625 * U[L, R] * x_R = 0.0078125
    assert step.weights.a[0].tolist() == [0.5 + 0.1 * 0.625 * 0.5, 0.5 + 0.1 * 0.625 * 0.5 * 0.5, 1.0]
    assert step.weights.U[0, 0].tolist() == [0.5 + 0.1 * 0.625 * 0.5, 0.5 + 0.1 * 0.625 * 0.25, 0.1]
    assert step.weights.U[0, 1].tolist() == [0.5, 0.5, 0.0]


@pytest.fixture(scope="module")
def small_batch():
    res = simulate_cohort(n_mice=3, n_sessions=2, params=ModelParams(eta=0.05, lapse=0.1, b_R=0.1, crosstalk=0.3),
                          seed=5)
    return make_batch(res.trials).crop(150)



def _theta(B, seed, skew=True):
    r = np.random.default_rng(seed)
    return np.column_stack([r.uniform(0.01, 0.15, B), r.uniform(2, 12, B), r.uniform(0.02, 0.6, B),
                            r.uniform(0.5, 2, B), r.uniform(0.05, 0.6, B), r.uniform(0.0, 0.3, B),
                            r.uniform(0.0, 0.3, B), r.uniform(0.01, 0.2, B),
                            r.uniform(-2, 2, B) if skew else np.zeros(B), r.uniform(0.05, 0.9, B)])


# One kernel entry point (the default set plus the crosstalk, as a fit with it free runs) for every case: each
# further one costs a minute or more of compilation; the other dual maps are the k and stim_skew tests'.
@pytest.mark.parametrize("encoding,positive,skew", [("side", True, False), ("magnitude", False, True),
                                                    ("graded", True, False)])
def test_kernel_crosstalk_derivatives_match_autograd(small_batch, encoding, positive, skew):
    """skew: stim_skew not 0 (its value used, not its derivatives)."""
    b = small_batch
    B = b.shape[1]
    theta = _theta(B, 4, skew)
    x = encode(b.contrast, encoding).permute(1, 0, 2).numpy()  # the kernel takes the plain inputs
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    nll, g, H = nll_derivatives(*args, theta, positive, True, crosstalk_derivatives=True, k_derivatives=False)
    free = [0, 1, 2, 4, 5, 6, 7, 9]
    fixed = [i for i in range(10) if i not in free]
    assert np.all(g[:, fixed] == 0) and np.all(H[:, fixed] == 0)
    assert_columns_match_reference(b, theta, free, nll, g, H, encoding, positive)


def test_at_most_two_options_free_at_once(small_batch):
    b = small_batch
    x = encode(b.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    with pytest.raises(ValueError, match="at most two"):
        nll_derivatives(*args, _theta(3, 1), crosstalk_derivatives=True, k_derivatives=True, skew_derivatives=True)
    with pytest.raises(ValueError, match="at most two"):
        fit_mice(simulate_cohort(n_mice=1, n_sessions=1, trials_per_session=40, seed=1).trials,
                 free=(*DEFAULT_FREE, "k", "stim_skew", "crosstalk"))


def test_zero_crosstalk_lanes_are_bitwise_the_plain_kernel(small_batch):
    """A column with g = 0 gives the same numbers whether or not its lane partners (or the call) use crosstalk."""
    b = small_batch
    x = encode(b.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    theta = _theta(4, 7, skew=False)
    theta[0, 9] = 0.0
    rows = np.zeros(4, np.int64)  # one data row: the four columns share a lane group
    mixed = nll_derivatives(*args, theta, rows=rows, k_derivatives=False, crosstalk_derivatives=True)
    alone = nll_derivatives(*args, theta[:1, :9], rows=rows[:1], k_derivatives=False)  # nine columns: g = 0
    assert mixed[0][0] == alone[0][0]
    assert np.array_equal(mixed[1][0, :9], alone[1][0]) and np.array_equal(mixed[2][0, :9, :9], alone[2][0])
    assert mixed[1][0, 9] != 0  # g's derivatives are there, at g = 0 too


def test_teacher_forced_readouts_use_the_crosstalk(small_batch):
    """teacher_forced (kernel weights, then forward with the crosstalk inputs) equals the reference rollout."""
    res = simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=80, params=ModelParams(crosstalk=0.4, eta=0.05),
                          seed=2, dtype=torch.float64)
    params = ModelParams(crosstalk=np.array([0.2, 0.6]), eta=0.05, lapse=0.02)
    fast = teacher_forced(res.trials, params)
    slow = teacher_forced(res.trials, params, dtype=torch.float32)  # the reference rollout (not the kernel)
    np.testing.assert_allclose(fast["p_right"], slow["p_right"], rtol=1e-5, atol=1e-6)
    plain = teacher_forced(res.trials, params.replace(crosstalk=0.0))
    assert np.abs(fast["p_right"] - plain["p_right"]).max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_simulation_on_stimuli_equals_the_reference(dtype):
    r = np.random.default_rng(0)
    T, B = 300, 3
    c = torch.tensor(r.choice([-1.0, -0.25, 0.0, 0.25, 1.0], (T, B)), dtype=dtype)
    valid = torch.ones(T, B, dtype=torch.bool)
    p = ModelParams(eta=0.05, crosstalk=np.array([0.0, 0.3, 0.8]), lapse=0.05).tensors(B, dtype=dtype)
    fused = simulate_on_stimuli(c, valid, p, np.arange(B), engine="fused")
    ref = simulate_on_stimuli(c, valid, p, np.arange(B), engine="reference")
    assert torch.equal(fused[0], ref[0])
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-7)
    plain = simulate_on_stimuli(c, valid, p._replace(crosstalk=p.crosstalk * 0), np.arange(B))
    assert torch.equal(plain[1][:, 0], fused[1][:, 0]) and not torch.equal(plain[1][:, 2], fused[1][:, 2])


def test_cohort_with_crosstalk_runs_the_reference_engine():
    """The fused cohort engine has no per-mouse crosstalk: 'auto' runs the reference, 'fused' says why not."""
    p = ModelParams(crosstalk=0.3)
    res = simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=50, params=p, seed=1)
    assert len(res.trials) == 100
    with pytest.raises(ValueError, match="crosstalk"):
        simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=50, params=p, seed=1, engine="fused")


def test_cli_refuses_three_options_and_a_crosstalk_out_of_range(tmp_path, capsys):
    from mouse_rl.cli import main

    path = tmp_path / "t.parquet"
    simulate_cohort(n_mice=1, n_sessions=1, trials_per_session=40, seed=1).trials[
        ["mouse", "session", "trial", "signed_contrast", "choice", "reward"]].to_parquet(path)
    assert main(["fit", str(path), "--out", str(tmp_path / "f"), "--fit-skew", "--fit-k", "--fit-crosstalk"]) == 2
    assert "at most two" in capsys.readouterr().err
    assert main(["simulate", "--mice", "2", "--sessions", "1", "--crosstalk", "1.5", "--out",
                 str(tmp_path / "s.parquet")]) == 2
    assert "crosstalk" in capsys.readouterr().err
