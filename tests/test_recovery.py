"""Parameter recovery reads the parameter registry (fast checks; the statistical test is in test_fit.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mouse_rl.fit.recovery import DEFAULT_RANGES, RECOVERY_FREE, RecoveryResult, sample_params
from mouse_rl.params import PARAMS, check_names


def test_sample_params_draws_inside_the_registry_ranges():
    free = ("eta", "b_R", "k", "stim_skew")
    p = sample_params(200, free=free, seed=3)
    for name in free:
        lo, hi, scale = PARAMS[name].recovery_range
        v = np.asarray(getattr(p, name))
        assert DEFAULT_RANGES[name] == (lo, hi) and lo <= v.min() and v.max() <= hi
        if scale == "log":  # log-uniform: the geometric midpoint is the median
            assert abs(np.median(np.log(v)) - np.log(lo * hi) / 2) < 0.2 * np.log(hi / lo)
    assert (np.asarray(p.stim_skew) < 0).any()  # an unbounded parameter is drawn on both sides of 0
    assert p.beta == PARAMS["beta"].default  # not free: from the base
    assert all(len(spec.recovery_range) == 3 for spec in PARAMS.values())


@pytest.mark.parametrize("free, needle", [
    (("eta", "omega"), r"--free: unknown parameter\(s\) \['omega'\]"),
    (("eta", "eta"), "--free: duplicate names"),
    ((), "--free: give at least one parameter"),
])
def test_check_free_names_the_option(free, needle):
    with pytest.raises(ValueError, match=needle):
        check_names(free, "--free")


def test_bad_range_is_reported():
    with pytest.raises(ValueError, match=r"ranges\['eta'\]: need 0 < low <= high"):
        sample_params(3, free=("eta",), ranges={"eta": (0.0, 0.1)})
    assert set(RECOVERY_FREE) <= set(PARAMS) and RecoveryResult._fields == ("summary", "table", "fit")
