"""The learning-rule experiments of ``bench/model_variants.py`` are patches of the source tree: they must
still apply to it (one of them stopped applying when the default free set's module changed)."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATCHES = sorted((ROOT / "bench" / "model_variants").glob("*.patch"))


def test_there_are_patches():
    assert {p.stem for p in PATCHES} >= {"bias_by_delta_tot", "frozen_bias_gain", "frozen_bias_gain_fit_k"}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.stem)
def test_model_variant_patch_applies_to_the_tree(patch):
    done = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
