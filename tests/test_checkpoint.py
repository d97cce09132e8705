"""Checkpoint and resume give output identical to an uninterrupted run."""
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from mouse_rl import ModelParams, TaskConfig, simulate_cohort


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    kwargs = dict(n_mice=5, n_sessions=4, trials_per_session=30, seed=3, params=ModelParams(eta=0.05, b_R=0.05),
                  task=TaskConfig(repeat_after_error=True), record_weights="trial", progress=False)
    full = simulate_cohort(**kwargs)
    ckpt = tmp_path / "run.ckpt"
    simulate_cohort(**{**kwargs, "n_sessions": 4}, checkpoint=ckpt, checkpoint_every=3)
    state = torch.load(ckpt, weights_only=False)
    assert state["global_trial"] == 3 * 30  # written after session 3, not after the last
    resumed = simulate_cohort(**kwargs, checkpoint=ckpt)
    pd.testing.assert_frame_equal(resumed.trials, full.trials)
    pd.testing.assert_frame_equal(resumed.weights, full.weights)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    simulate_cohort(3, 2, 20, seed=0, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="checkpoint.*seeds"):
        simulate_cohort(3, 2, 20, seed=1, checkpoint=ckpt, progress=False)


def test_killed_cli_run_resumes_identically(tmp_path):
    out = tmp_path / "cohort.parquet"
    ckpt = tmp_path / "cohort.ckpt"
    cmd = [sys.executable, "-m", "mouse_rl.cli", "simulate", "--mice", "200", "--sessions", "12", "--trials", "220",
           "--seed", "4", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared before the run ended"
    proc.kill()
    proc.wait()
    assert not out.exists()
    done_at_kill = torch.load(ckpt, weights_only=False)["global_trial"]
    assert 0 < done_at_kill < 12 * 220
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert not ckpt.exists()  # removed after a successful run
    expected = simulate_cohort(200, 12, 220, seed=4, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected.trials)
