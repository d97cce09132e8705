"""Hidden correction trials: the repeats a dataset removed (mouse_rl.fit.corrections, simulate_on_stimuli's
``corrections``), in the free-running engines and in teacher forcing."""
import numpy as np
import pandas as pd
import pytest
import torch

from envs import rng
from mouse_rl import ModelParams
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.corrections import correction_trials, with_corrections
from mouse_rl.fit.likelihood import choice_logprob
from mouse_rl.simulate import simulate_on_stimuli
from test_drift import _batch_and_params


@pytest.mark.parametrize("forced", [False, True])
def test_fused_and_reference_engines_agree_with_corrections(forced):
    """The fused CPU engine against the reference rollout (float64): same choices, P(R) to 1e-12, with session
    offsets, gains and padding."""
    _, _, big, params, seeds = _batch_and_params(ModelParams(eta=0.05, beta=6.0, lapse=0.05))
    T, B = big.shape
    g = np.random.default_rng(0)
    offset = torch.as_tensor(g.normal(0, 0.5, (T, B)))
    gain = torch.as_tensor(np.repeat(np.exp(g.normal(0, 0.3, (4, B))), [T // 4, T // 4, T // 4, T - 3 * (T // 4)], 0))
    kw = dict(offset=offset, gain=gain, corrections=1 if forced else 8, corrections_forced=forced)
    cf, pf = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="fused", **kw)
    cr, pr = simulate_on_stimuli(big.contrast, big.valid, params, seeds, engine="reference", **kw)
    assert torch.equal(cf, cr)
    torch.testing.assert_close(pf, pr, rtol=1e-12, atol=1e-12)
    c0, _ = simulate_on_stimuli(big.contrast, big.valid, params, seeds, offset=offset, gain=gain)
    assert not torch.equal(c0, cf)  # the hidden trials change what the copies learn


def test_corrections_change_nothing_without_learning():
    """eta = 0: the hidden trials teach nothing, so every recorded choice and P(R) is that of no corrections."""
    _, _, big, params, seeds = _batch_and_params(ModelParams(eta=0.05, beta=6.0))
    params = params._replace(eta=torch.zeros_like(params.eta))
    c0, p0 = simulate_on_stimuli(big.contrast, big.valid, params, seeds)
    c1, p1 = simulate_on_stimuli(big.contrast, big.valid, params, seeds, corrections=rng.MAX_CORRECTIONS)
    assert torch.equal(c0, c1) and torch.equal(p0, p1)


def test_sampled_corrections_raise_accuracy_on_the_stimulus_that_errs():
    """Every error at c != 0 is followed by practice on that stimulus until correct: the copies learn faster
    (accuracy on c != 0 over the whole run, the same stimuli and seeds)."""
    _, _, big, params, seeds = _batch_and_params(ModelParams(eta=0.02, beta=8.0), copies=8)
    c = big.contrast
    acc = []
    for corr in (0, rng.MAX_CORRECTIONS):
        choice, _ = simulate_on_stimuli(c, big.valid, params, seeds, corrections=corr)
        k = big.valid & (c != 0)
        acc.append(float(((choice == 1) == (c > 0))[k].float().mean()))
    assert acc[1] > acc[0] + 0.03


def test_correction_arguments_are_checked():
    _, _, big, params, seeds = _batch_and_params(ModelParams())
    for bad in (-1, rng.MAX_CORRECTIONS + 1, 1.5, True):
        with pytest.raises(ValueError, match="corrections"):
            simulate_on_stimuli(big.contrast, big.valid, params, seeds, corrections=bad)


def _table(rows):
    return pd.DataFrame(rows, columns=["mouse", "session", "trial", "signed_contrast", "choice"])


def test_hidden_trials_are_inserted_after_errors_at_nonzero_contrast():
    """By hand: errors at c != 0 followed by another trial get one hidden, correct, rewarded, unscored trial."""
    rows = [("a", 1, 0, 0.5, 0),    # error -> hidden Right trial after it
            ("a", 1, 1, -0.25, 0),  # correct
            ("a", 1, 2, 0.0, 1),    # zero contrast: never
            ("a", 1, 3, -0.5, 1),   # error at a session's end: hidden Left trial (before the next session)
            ("a", 2, 0, 0.25, 1),   # correct
            ("a", 2, 1, -0.5, 1),   # error, the mouse's last trial: nothing after it
            ("b", 1, 0, 0.5, 1),
            ("b", 1, 1, 0.5, 0)]    # error, last trial
    batch = make_batch(_table(rows), "expected", "cpu", torch.float64)
    assert correction_trials(batch)[:, 0].tolist() == [True, False, False, True, False, False]
    score, learn = batch.valid.clone(), batch.valid.clone()
    ex, score2, learn2, index = with_corrections(batch, score, learn)
    assert ex.shape == (8, 2)
    assert index[:, 0].tolist() == [0, 2, 3, 4, 6, 7]
    assert ex.contrast[:, 0].tolist() == [0.5, 0.5, -0.25, 0.0, -0.5, -0.5, 0.25, -0.5]
    assert ex.choice[:, 0].tolist() == [0, 1, 0, 1, 1, 0, 1, 1]
    assert ex.reward[:, 0].tolist() == [0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0]
    assert score2[:, 0].tolist() == [True, False, True, True, True, False, True, True]
    assert learn2[:, 0].all() and ex.valid[:, 0].all()
    assert ex.row[:, 0].tolist() == [0, -1, 1, 2, 3, -1, 4, 5]
    assert ex.session[:, 0].tolist() == [1, 1, 1, 1, 1, 1, 2, 2]
    assert ex.n_trials.tolist() == [8, 2]
    assert ex.valid[:, 1].tolist() == [True, True] + [False] * 6
    assert index[:2, 1].tolist() == [0, 1]
    default = with_corrections(batch)  # masks default to every valid trial
    assert torch.equal(default[1], score2) and torch.equal(default[2], learn2)


@pytest.mark.parametrize("lapse", [0.0, 0.1])
def test_teacher_forcing_with_corrections_is_exact_for_forced_copies(lapse):
    """Copies whose hidden trials choose correctly (corrections_forced) generate data whose teacher-forced
    log-likelihood with the inserted trials is exactly the log-probability of their sampled choices."""
    p = ModelParams(eta=0.05, beta=6.0, lapse=lapse, b_L=0.3)
    _, _, big, params, seeds = _batch_and_params(p, copies=2)
    choice, p_right = simulate_on_stimuli(big.contrast, big.valid, params, seeds, corrections=1,
                                          corrections_forced=True)
    T, B = big.shape
    rows = []
    sess = big.session.numpy()
    for b in range(B):
        for t in np.flatnonzero(big.valid[:, b].numpy()):
            rows.append((f"m{b:03d}", int(sess[t, b]), int(t), float(big.contrast[t, b]), int(choice[t, b])))
    batch = make_batch(_table(rows), "expected", "cpu", torch.float64)
    ex, _, learn2, index = with_corrections(batch, batch.valid, batch.valid)
    assert int(correction_trials(batch).sum()) > 50
    lp = choice_logprob(ex, params, learn=learn2)
    got = lp.gather(0, torch.as_tensor(index))
    pr = p_right.double()
    want = torch.where(choice == 1, pr.log(), (1 - pr).log())
    want = torch.where(big.valid, want, torch.zeros_like(want))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    plain = choice_logprob(batch, params)
    assert float((plain - want).abs().max()) > 1e-3  # without the hidden trials the likelihood is another one


def test_simulated_mice_with_session_effects_are_the_copies_with_those_effects():
    """simulate_drifting's session effects (no drift) are free_run's with session_offsets / session_gains drawn
    from the same seeds."""
    from mouse_rl.fit.checks import copy_seeds, free_run
    from mouse_rl.fit.drift import simulate_drifting
    from mouse_rl.fit.session_effects import session_gains, session_offsets

    p = ModelParams(eta=0.02, beta=8.0)
    trials, batch, _, params, _ = _batch_and_params(p, copies=1)
    M = batch.shape[1]
    bias, gain = np.array([0.2, 0.9, 0.5]), np.array([0.3, 0.0, 0.6])
    sim = simulate_drifting(trials, p, np.zeros((M, 9)), seed=4, session_bias_sd=bias, session_gain_sd=gain)
    seeds = copy_seeds(batch.mice, 1, 4)[0]
    choice, _ = free_run(batch, params, seeds, offset=session_offsets(batch, seeds, bias),
                         gain=session_gains(batch, seeds, gain))
    np.testing.assert_array_equal(sim["choice"].to_numpy(), batch.to_rows(choice).astype(int))
    plain = simulate_drifting(trials, p, np.zeros((M, 9)), seed=4)
    assert (plain["choice"] != sim["choice"]).mean() > 0.05
    with pytest.raises(ValueError, match="session_gain_sd"):
        simulate_drifting(trials, p, np.zeros((M, 9)), seed=4, session_gain_sd=[0.1, -1.0, 0.2])
