"""Parameter recovery reads the parameter registry (fast checks; the statistical test is in test_fit.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mouse_rl.fit.recovery import DEFAULT_RANGES, RECOVERY_FREE, RecoveryResult, check_free, sample_params
from mouse_rl.params import PARAMS


def test_sample_params_draws_inside_the_ranges():
    p = sample_params(200, free=("eta", "b_R", "k"), seed=3)
    eta, b_r, k = (np.asarray(getattr(p, n)) for n in ("eta", "b_R", "k"))
    assert DEFAULT_RANGES["eta"][0] <= eta.min() and eta.max() <= DEFAULT_RANGES["eta"][1]
    assert DEFAULT_RANGES["b_R"][0] <= b_r.min() and b_r.max() <= DEFAULT_RANGES["b_R"][1]
    lo, hi = PARAMS["k"].init_range  # no own range: the registry's restart box
    assert lo <= k.min() and k.max() <= hi
    assert p.beta == PARAMS["beta"].default  # not free: from the base


@pytest.mark.parametrize("free, needle", [
    (("eta", "omega"), r"--free: unknown parameter\(s\) \['omega'\]"),
    (("eta", "eta"), "--free: duplicate names"),
    ((), "--free: give at least one parameter"),
])
def test_check_free_names_the_option(free, needle):
    with pytest.raises(ValueError, match=needle):
        check_free(free, "--free")


def test_bad_range_is_reported():
    with pytest.raises(ValueError, match=r"ranges\['eta'\]: need 0 < low <= high"):
        sample_params(3, free=("eta",), ranges={"eta": (0.0, 0.1)})
    assert set(RECOVERY_FREE) <= set(PARAMS) and RecoveryResult._fields == ("summary", "table", "fit")
