"""The fused simulation engine (mouse_rl.sim_kernel) against the reference rollout of network.trial_update."""
import numba
import numpy as np
import pandas as pd
import pytest
import torch

from envs.task import TaskConfig
from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.network import Weights
from mouse_rl.simulate import simulate_on_stimuli

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def random_params(n: int, seed: int, **options) -> ModelParams:
    """Per-mouse parameters spread over their legal range (initial weights through w0, k, s0, b_L, b_R)."""
    g = np.random.default_rng(seed)
    return ModelParams(eta=10 ** g.uniform(-3, -0.5, n), beta=g.uniform(0.5, 30, n), w0=10 ** g.uniform(-3, 0.3, n),
                       k=g.uniform(0.1, 2, n), s0=g.uniform(0, 1, n), b_L=g.uniform(0, 0.5, n),
                       b_R=g.uniform(0, 0.5, n), **options)


def assert_same_run(ref, fused, dtype):
    assert ref.engine == "reference" and fused.engine == "fused"
    np.testing.assert_array_equal(ref.trials["choice"].to_numpy(), fused.trials["choice"].to_numpy())
    np.testing.assert_array_equal(ref.trials["reward"].to_numpy(), fused.trials["reward"].to_numpy())
    numeric = [c for c in ref.trials.columns if c != "mouse"]
    diff = np.abs(ref.trials[numeric].to_numpy(float) - fused.trials[numeric].to_numpy(float)).max()
    assert diff <= TOL[dtype]
    pd.testing.assert_frame_equal(ref.weights, fused.weights, check_exact=False, rtol=0, atol=TOL[dtype])
    pd.testing.assert_frame_equal(ref.sessions, fused.sessions)
    torch.testing.assert_close(ref.final_weights.U, fused.final_weights.U, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options, task", [
    (dict(), TaskConfig()),
    (dict(lapse=0.1, zero_reward="random"), TaskConfig(repeat_after_error=True, zero_reward_p_right=0.3)),
    (dict(encoding="magnitude", positive=False), TaskConfig(contrasts=(-1, -0.125, 0, 0.0625, 0.3),
                                                            probabilities=(0.2, 0.2, 0.2, 0.2, 0.2))),
    (dict(encoding="graded", lapse=0.02), TaskConfig()),
    (dict(lapse=0.05, side_pref=np.linspace(-4, 4, 23), side_pref_tau=30.0), TaskConfig()),
])
def test_fused_cohort_equals_reference(dtype, options, task):
    kw = dict(n_mice=23, n_sessions=3, trials_per_session=40, task=task, seed=11, dtype=dtype,
              params=random_params(23, 1, **options), record_weights="trial")
    assert_same_run(simulate_cohort(engine="reference", **kw), simulate_cohort(engine="fused", **kw), dtype)


def test_fused_saturates_like_reference():
    """eta = 1 drives the weights to the MAX_WEIGHT bound: the clamp must match too."""
    kw = dict(n_mice=4, n_sessions=1, trials_per_session=120, params=ModelParams(eta=1.0, w0=1.0), seed=0,
              dtype=torch.float64, record_weights="trial")
    ref, fused = simulate_cohort(engine="reference", **kw), simulate_cohort(engine="fused", **kw)
    assert ref.final_weights.a.abs().max() == 1e6
    assert_same_run(ref, fused, torch.float64)


def given_stimuli_case(B: int, dtype, T: int = 150):
    """Random stimuli (any contrast), padded trials, per-mouse eta, beta, lapse and random initial weights:
    ``(signed_contrast, valid, params, init, seeds)`` for :func:`simulate_on_stimuli`."""
    g = torch.Generator().manual_seed(3)
    c = torch.tensor([-1, -0.5, -0.3, 0, 0.07, 0.25, 1.0], dtype=dtype)[torch.randint(0, 7, (T, B), generator=g)]
    valid = torch.arange(T)[:, None] < torch.randint(60, T + 1, (B,), generator=g)[None, :]
    p = random_params(B, 5, lapse=np.linspace(0, 0.3, B)).tensors(B, dtype=dtype)
    init = Weights(torch.rand(B, 3, generator=g, dtype=dtype) * 2 - 0.5,
                   torch.rand(B, 2, 3, generator=g, dtype=dtype) * 2 - 0.5)
    return c, valid, p, init, np.arange(B) * 7919 + 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("encoding, positive, zero_reward", [("side", True, "expected"),
                                                             ("magnitude", False, "random")])
def test_fused_free_run_on_given_stimuli_equals_reference(dtype, encoding, positive, zero_reward):
    """Random weights, stimuli (any contrast), per-mouse eta, beta, lapse, and padded trials."""
    c, valid, p, init, seeds = given_stimuli_case(9, dtype)
    out = {}
    for engine in ("reference", "fused"):
        out[engine] = simulate_on_stimuli(c, valid, p, seeds, init, encoding, positive, zero_reward, engine=engine)
    torch.testing.assert_close(out["reference"][0], out["fused"][0], rtol=0, atol=0)
    torch.testing.assert_close(out["reference"][1], out["fused"][1], rtol=0, atol=TOL[dtype])
    assert bool((out["fused"][0][~valid] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_side_preference_in_segments_equals_reference(dtype):
    """A per-mouse side preference (both signs, fast and slow fading) on given stimuli, run in segments with the
    weights changed between them: each segment's logit offsets are those of its global trials."""
    c, valid, p, init, seeds = given_stimuli_case(9, dtype)
    p = p._replace(side_pref=torch.linspace(-5, 5, 9, dtype=dtype),
                   side_pref_tau=torch.tensor([10.0, 40.0, 1e3] * 3, dtype=dtype))
    between = lambda t, w: w * 0.9 + 0.01  # noqa: E731 (deterministic, so both engines see the same jump)
    out = {engine: simulate_on_stimuli(c, valid, p, seeds, init, cuts=(37, 90), between=between, engine=engine)
           for engine in ("reference", "fused")}
    torch.testing.assert_close(out["reference"][0], out["fused"][0], rtol=0, atol=0)
    torch.testing.assert_close(out["reference"][1], out["fused"][1], rtol=0, atol=TOL[dtype])
    plain = simulate_on_stimuli(c, valid, p._replace(side_pref=torch.zeros(9, dtype=dtype)), seeds, init,
                                cuts=(37, 90), between=between, engine="fused")
    moved = (out["fused"][1] - plain[1]).abs().amax(0)  # the preference is applied: P(R) moves for every mouse
    assert bool((moved[p.side_pref != 0] > 1e-3).all()) and float(moved[p.side_pref == 0].max()) == 0.0


def test_fallback_to_reference_is_visible_and_fused_refuses():
    hook = lambda t, session, c, choice, reward, seeds: (c > 0, None, torch.zeros_like(c))  # noqa: E731
    res = simulate_cohort(3, 1, 20, stimulation=hook)
    assert res.engine == "reference" and res.meta["engine"] == "reference"
    assert "stimulation" in res.meta["fallback"]
    assert simulate_cohort(3, 1, 20).meta["fallback"] is None
    with pytest.raises(ValueError, match="^engine: 'fused' does not support a stimulation hook"):
        simulate_cohort(3, 1, 20, stimulation=hook, engine="fused")
    with pytest.raises(ValueError, match="^engine: must be one of"):
        simulate_cohort(3, 1, 20, engine="numba")


def test_log_modes_and_session_summaries():
    from mouse_rl.analysis import session_metrics

    kw = dict(n_mice=6, n_sessions=3, trials_per_session=50, seed=2, params=ModelParams(eta=0.05, b_R=0.1))
    full = simulate_cohort(**kw)
    shared = ["mouse", "session", "n_trials", "accuracy", "p_right_left", "p_right_zero", "p_right_right"]
    pd.testing.assert_frame_equal(full.sessions[shared], session_metrics(full.trials)[shared], check_dtype=False)
    sessions = simulate_cohort(log="sessions", **kw)
    assert sessions.trials.empty
    pd.testing.assert_frame_equal(sessions.sessions, full.sessions)
    pd.testing.assert_frame_equal(sessions.weights, full.weights)
    none = simulate_cohort(log="none", **kw)
    assert none.trials.empty and none.sessions.empty
    pd.testing.assert_frame_equal(none.weights, full.weights)
    with pytest.raises(ValueError, match="^log: must be one of"):
        simulate_cohort(log="everything", **kw)


def test_threads_change_nothing_but_speed():
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(1)  # the caller's choice; numba's OpenMP layer must not change it
        runs = [simulate_cohort(40, 2, 30, seed=4, threads=n) for n in (1, 2, None)]
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, numba_before)
    finally:
        torch.set_num_threads(torch_before)
    pd.testing.assert_frame_equal(runs[0].trials, runs[1].trials)
    pd.testing.assert_frame_equal(runs[0].trials, runs[2].trials)
    with pytest.raises(ValueError, match="^threads: "):
        simulate_cohort(2, 1, 5, threads=0)


@pytest.mark.parametrize("first, second", [("reference", "fused"), ("fused", "reference")])
def test_checkpoints_resume_across_engines(tmp_path, first, second):
    kw = dict(n_mice=5, n_sessions=3, trials_per_session=30, seed=3, params=ModelParams(eta=0.05, b_R=0.05),
              task=TaskConfig(repeat_after_error=True), dtype=torch.float64)
    full = simulate_cohort(**kw)
    ckpt = tmp_path / "run.ckpt"
    simulate_cohort(**{**kw, "n_sessions": 3}, checkpoint=ckpt, checkpoint_every=2, engine=first)
    resumed = simulate_cohort(**kw, checkpoint=ckpt, engine=second)
    pd.testing.assert_frame_equal(resumed.trials, full.trials, check_exact=False, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(resumed.sessions, full.sessions)


def test_first_fused_call_keeps_the_callers_torch_threads():
    """Starting numba's OpenMP layer resets the OpenMP thread count that torch reads: the call must undo it."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); from mouse_rl import simulate_cohort; "
            "r = simulate_cohort(4, 1, 10, threads=2); print(r.engine, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["fused", "1"]


def test_record_weights_final_keeps_only_the_last_snapshot():
    kw = dict(n_mice=5, n_sessions=3, trials_per_session=30, seed=1, log="sessions")
    every = simulate_cohort(**kw)
    final = simulate_cohort(record_weights="final", **kw)
    assert sorted(every.weights["session"].unique()) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(final.weights, every.weights[every.weights["session"] == 3].reset_index(drop=True))
    pd.testing.assert_frame_equal(final.sessions, every.sessions)
    with pytest.raises(ValueError, match="^record_weights: must be 'session', 'final' or 'trial'"):
        simulate_cohort(record_weights="last", **kw)
    with pytest.raises(ValueError, match="^record_weights: 'trial' puts the weights in the trial table"):
        simulate_cohort(record_weights="trial", **kw)
