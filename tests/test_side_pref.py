"""The innate side preference option (rho exp(-t / tau) added to the policy's logit): policy by hand, kernel
derivatives against autograd, simulation engines, recovery on simulated mice, defaults and bad values."""
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
from mouse_rl.network import encode, side_preference
from mouse_rl.params import PARAMS, NetParams
from mouse_rl.simulate import simulate_on_stimuli
from mouse_rl.theory import mean_field_trajectory


def test_default_is_model_md_and_not_fitted():
    assert ModelParams().side_pref == 0.0 and PARAMS["side_pref"].default == 0.0
    assert THETA == NetParams._fields and THETA[10:] == ("side_pref", "side_pref_tau")
    assert not {"side_pref", "side_pref_tau"} & set(DEFAULT_FREE)
    assert with_options(crosstalk=True, side_pref=True)[-3:] == ("crosstalk", "side_pref", "side_pref_tau")
    for name, bad in (("side_pref_tau", 0.0), ("side_pref_tau", -5.0), ("side_pref_tau", float("nan")),
                      ("side_pref", float("inf")), ("side_pref", 80.0)):
        with pytest.raises(ValueError, match=name):
            ModelParams(**{name: bad})
    tr = ParamTransform(free=with_options(side_pref=True))
    u = tr.to_u({**{n: PARAMS[n].fit_start for n in DEFAULT_FREE}, "side_pref": np.array([-2.0, 1.5]),
                 "side_pref_tau": np.array([300.0, 4000.0])}, 2)
    p = tr.params(u)
    np.testing.assert_allclose(p.side_pref.numpy(), [-2.0, 1.5], rtol=1e-12)
    np.testing.assert_allclose(p.side_pref_tau.numpy(), [300.0, 4000.0], rtol=1e-12)
    assert tr.natural(u.numpy())[0].shape == (2, 12)


def test_policy_by_hand():
    """No learning and no values (eta, s0, w0, bias weights 0): P(R) on trial t is lapse / 2 + (1 - lapse)
    sigmoid(rho exp(-t / tau)), in free-running simulation and in the teacher-forced read-outs."""
    rho, tau, lapse = np.array([2.0, -1.0]), np.array([50.0, 400.0]), 0.1
    params = ModelParams(eta=1e-15, w0=1e-9, s0=1e-9, lapse=lapse, side_pref=rho, side_pref_tau=tau)
    T = 300
    c = torch.tensor(np.random.default_rng(0).choice([-1.0, 0.0, 0.5], (T, 2)), dtype=torch.float64)
    valid = torch.ones(T, 2, dtype=torch.bool)
    choice, pr = simulate_on_stimuli(c, valid, params.tensors(2, dtype=torch.float64), np.array([1, 2]))
    t = np.arange(T)[:, None]
    expected = lapse / 2 + (1 - lapse) / (1 + np.exp(-rho * np.exp(-t / tau)))
    np.testing.assert_allclose(pr.numpy(), expected, rtol=0, atol=1e-9)
    assert choice[:40, 0].float().mean() > 0.7 and choice[:40, 1].float().mean() < 0.4
    np.testing.assert_allclose(side_preference(torch.tensor(t, dtype=torch.float64), torch.tensor(rho),
                                               torch.tensor(tau)).numpy(), rho * np.exp(-t / tau), rtol=1e-15)


@pytest.fixture(scope="module")
def small_batch():
    res = simulate_cohort(n_mice=3, n_sessions=2, seed=5,
                          params=ModelParams(eta=0.05, lapse=0.1, b_R=0.1, side_pref=np.array([2.0, -2.0, 0.5]),
                                             side_pref_tau=80.0))
    return make_batch(res.trials).crop(150)



def _theta(B, seed, crosstalk=True):
    r = np.random.default_rng(seed)
    return np.column_stack([r.uniform(0.01, 0.15, B), r.uniform(2, 12, B), r.uniform(0.02, 0.6, B),
                            r.uniform(0.5, 2, B), r.uniform(0.05, 0.6, B), r.uniform(0.0, 0.3, B),
                            r.uniform(0.0, 0.3, B), r.uniform(0.01, 0.2, B), r.uniform(-2, 2, B),
                            r.uniform(0.05, 0.9, B) if crosstalk else np.zeros(B), r.uniform(-3, 3, B),
                            r.uniform(20, 200, B)])


# One kernel entry point for every case (the default set with the crosstalk and the side preference free, as a
# fit with both options runs): each further one costs a minute or more of compilation. With the crosstalk at 0
# the same entry point computes the side preference alone; its code does not depend on the dual coordinates.
@pytest.mark.parametrize("encoding,positive,crosstalk,lapse", [("side", True, True, True),
                                                               ("magnitude", False, False, True),
                                                               ("side", True, False, False)])
def test_kernel_side_pref_derivatives_match_autograd(small_batch, encoding, positive, crosstalk, lapse):
    b = small_batch
    B = b.shape[1]
    theta = _theta(B, 4, crosstalk)
    if not lapse:
        theta[:, 7] = 0.0
    x = encode(b.contrast, encoding).permute(1, 0, 2).numpy()
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    nll, g, H = nll_derivatives(*args, theta, positive, lapse, crosstalk_derivatives=True, k_derivatives=False,
                                side_pref_derivatives=True)
    free = [0, 1, 2, 4, 5, 6, 9, 10, 11] + ([7] if lapse else [])
    fixed = [i for i in range(12) if i not in free]
    assert np.all(g[:, fixed] == 0) and np.all(H[:, fixed] == 0)
    assert_columns_match_reference(b, theta, free, nll, g, H, encoding, positive, lapse)


def test_zero_side_pref_is_bitwise_the_plain_kernel(small_batch):
    """rho = 0 gives the numbers of the kernel without the option (ten columns of theta), with or without its
    derivatives asked for; rho's derivatives are there at rho = 0."""
    b = small_batch
    x = encode(b.contrast, "side").permute(1, 0, 2).numpy()
    args = (x, b.choice.T.numpy(), b.reward.T.numpy(), b.valid.T.numpy(), b.valid.T.numpy(), b.n_trials.numpy())
    theta = _theta(4, 7)
    theta[0, 10] = 0.0
    rows = np.zeros(4, np.int64)
    mixed = nll_derivatives(*args, theta, rows=rows, k_derivatives=False, crosstalk_derivatives=True,
                            side_pref_derivatives=True)
    alone = nll_derivatives(*args, theta[:1, :10], rows=rows[:1], k_derivatives=False, crosstalk_derivatives=True)
    assert mixed[0][0] == alone[0][0]
    assert np.array_equal(mixed[1][0, :10], alone[1][0]) and np.array_equal(mixed[2][0, :10, :10], alone[2][0])
    assert mixed[1][0, 10] != 0 and mixed[1][0, 11] == 0  # d/d tau = rho (...) = 0 at rho = 0


def test_teacher_forced_readouts_use_the_side_pref(small_batch):
    res = simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=120, seed=3)
    params = ModelParams(eta=0.05, lapse=0.05, side_pref=np.array([3.0, -1.0]), side_pref_tau=15.0)
    fast = teacher_forced(res.trials, params)  # kernel weights, then the policy with the preference
    slow = teacher_forced(res.trials, params, dtype=torch.float32)  # the reference rollout
    np.testing.assert_allclose(fast["p_right"], slow["p_right"], rtol=1e-5, atol=1e-6)
    plain = teacher_forced(res.trials, params.replace(side_pref=0.0))
    first = fast.groupby("mouse").head(1).index
    assert (fast.loc[first, "p_right"] - plain.loc[first, "p_right"]).abs().min() > 0.1
    assert np.abs(fast["p_right"].to_numpy()[-10:] - plain["p_right"].to_numpy()[-10:]).max() < 1e-3


def test_ibl_network_env_applies_the_preference():
    from envs.ibl_network import simulate_ibl_cohort

    kw = dict(n_mice=2, n_sessions=1, trials_per_session=60, seed=3)
    pref, _ = simulate_ibl_cohort(params=ModelParams(side_pref=np.array([4.0, -4.0]), side_pref_tau=10.0), **kw)
    plain, _ = simulate_ibl_cohort(**kw)
    first = pref.groupby("mouse").head(1).index
    np.testing.assert_allclose(pref.loc[first, "p_right"].to_numpy(), 1 / (1 + np.exp(-np.array([4.0, -4.0]))),
                               atol=1e-3)
    assert np.abs(pref["p_right"].to_numpy() - plain["p_right"].to_numpy()).max() > 0.3


def test_fused_engine_runs_it_and_theory_refuses():
    """The fused engines take the preference (their equality with the reference: tests/test_sim_kernel.py); the
    mean-field theory, whose policy does not depend on the trial index, refuses it."""
    p = ModelParams(side_pref=1.0)
    res = simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=30, params=p, seed=1)
    assert res.engine == "fused" and res.meta["fallback"] is None
    with pytest.raises(ValueError, match="side_pref"):
        mean_field_trajectory(params=p, n_sessions=1)


def test_fit_recovers_the_side_of_the_preference():
    """Mice simulated with a strong fading preference (rho = +-3, tau = 300 trials; crosstalk 0.2; 8 sessions of
    200 trials): the fit with both options finds each preference's sign, and it is nested on the fit without the
    preference (whose optimum is one of its starts), so no mouse's likelihood ends lower than there (up to the
    prior's pull on the two new parameters)."""
    truth = ModelParams(eta=0.005, beta=8.0, w0=0.1, s0=0.2, b_L=0.05, b_R=0.05, lapse=0.05, crosstalk=0.2,
                        side_pref=np.array([3.0, -3.0, 3.0, -3.0]), side_pref_tau=300.0)
    trials = simulate_cohort(n_mice=4, n_sessions=8, trials_per_session=200, params=truth, seed=11).trials
    both = fit_mice(trials, free=with_options(crosstalk=True, side_pref=True), n_restarts=4).params
    assert both["converged"].all()
    assert np.array_equal(np.sign(both["side_pref"].to_numpy()), np.sign(truth.side_pref))
    ct = fit_mice(trials, free=with_options(crosstalk=True), n_restarts=4).params
    assert (both["loglik"].to_numpy() > ct["loglik"].to_numpy() - 0.5).all()


def test_cli_fit_side_pref_then_check(tmp_path, capsys):
    """``mouse-rl fit --fit-crosstalk --fit-side-pref`` frees rho and tau (written with their standard errors, the
    fixed values kept in fit_options.json); ``mouse-rl check`` runs the copies (the reference engine); a fixed value
    beside the flag, the flag with another fit, and a theory run with a preference are refused (exit 2)."""
    import json

    import pandas as pd

    from mouse_rl.cli import main

    truth = ModelParams(eta=0.01, lapse=0.05, side_pref=np.array([2.5, -2.5]), side_pref_tau=200.0)
    path = tmp_path / "trials.parquet"
    simulate_cohort(n_mice=2, n_sessions=3, trials_per_session=150, params=truth, seed=4).trials[
        ["mouse", "session", "trial", "signed_contrast", "choice", "reward"]].to_parquet(path)
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--out", str(out), "--restarts", "1", "--max-iter", "20", "--fit-crosstalk",
                 "--fit-side-pref", "--quiet", "--no-plots"]) == 0
    opts = json.loads((out / "fit_options.json").read_text())
    assert opts["free"][-2:] == ["side_pref", "side_pref_tau"] and opts["fixed"]["side_pref"] == 0.0
    table = pd.read_parquet(out / "fit_results.parquet")
    assert {"se_side_pref", "se_side_pref_tau"} <= set(table) and (table["side_pref"] != 0).all()
    capsys.readouterr()
    assert main(["check", str(out), "--copies", "4", "--no-plots"]) == 0
    assert "sessions inside the copies' 5-95% band" in capsys.readouterr().out
    for bad in (["--fit-side-pref", "--side-pref", "1"], ["--fit-side-pref", "--side-pref-tau", "500"],
                ["--fit-side-pref", "--model", "noisy-network"], ["--side-pref-tau", "0"]):
        assert main(["fit", str(path), "--out", str(tmp_path / "x"), *bad, "--quiet"]) == 2
        err = capsys.readouterr().err
        named = bad[-2].lstrip("-").replace("-", "_")
        assert err.startswith("mouse-rl fit: error: ") and named in err.replace("-", "_")
    assert main(["theory", "--side-pref", "1", "--sessions", "2", "--out", str(tmp_path / "th.parquet")]) == 2
    assert "no fading side preference" in capsys.readouterr().err
