"""The fused kernels' numba cache notices an edit of the model step in another file (mouse_rl.numba_cache)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mouse_rl import fused_step, network
from mouse_rl.numba_cache import source_fingerprint

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import hashlib, torch
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_on_stimuli
g = torch.Generator().manual_seed(0)
c = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)[torch.randint(0, 3, (400, 3), generator=g)]
params = ModelParams(eta=0.05).tensors(3, dtype=torch.float64)
choice, p = simulate_on_stimuli(c, torch.ones(400, 3, dtype=torch.bool), params, torch.arange(3), engine="fused")
print(hashlib.sha256(p.numpy().tobytes()).hexdigest())
"""


def test_fingerprint_is_of_the_sources_in_order():
    assert source_fingerprint(fused_step, network) != source_fingerprint(network, fused_step)
    assert len(source_fingerprint(fused_step)) == 64


@pytest.mark.slow
def test_an_edit_of_the_fused_step_recompiles_the_cached_simulation_kernel(tmp_path):
    """Numba alone keys a cached kernel on its own file: an edit of ``fused_step.py`` would leave the cached
    simulation running the old step. Here: cache it, edit the step (the bias gain stops learning), rerun."""
    for part in ("mouse_rl", "envs"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", RUN], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=900)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    before = run()
    assert run() == before  # from the cache, same numbers
    step = tmp_path / "mouse_rl" / "fused_step.py"
    text = step.read_text()
    assert "ab = settle(ab + g * cb * one, positive, wmax)" in text
    step.write_text(text.replace("ab = settle(ab + g * cb * one, positive, wmax)", "ab = settle(ab, positive, wmax)"))
    assert run() != before
