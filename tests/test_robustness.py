"""Property-based robustness of the simulator over legal and illegal hyperparameters.

Plain SGD on this network diverges for large eta (eta * |w|^2 >> 1); the
update saturates weights at ``network.MAX_WEIGHT`` so that every legal
parameter (eta up to 1) keeps every value finite.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mouse_rl import ModelParams, simulate_cohort

N_MICE = 3
#: Largest legal learning rate.
ETA_MAX = 1.0
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def finite_floats(lo, hi, **kw):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, **kw)


def per_mouse(values):
    """A scalar shared by the cohort or one value per mouse."""
    return st.one_of(values, st.lists(values, min_size=N_MICE, max_size=N_MICE))


legal_params = st.builds(
    ModelParams,
    eta=per_mouse(finite_floats(1e-6, ETA_MAX)),
    beta=per_mouse(finite_floats(0.0, 100.0)),
    w0=per_mouse(finite_floats(1e-6, 1.0)),
    k=per_mouse(finite_floats(0.0, 1.0)),
    s0=per_mouse(finite_floats(0.0, 1.0)),
    b_L=per_mouse(finite_floats(0.0, 1.0)),
    b_R=per_mouse(finite_floats(0.0, 1.0)),
    lapse=per_mouse(finite_floats(0.0, 1.0, exclude_max=True)),
    encoding=st.sampled_from(["side", "magnitude"]),
    zero_reward=st.sampled_from(["expected", "random"]),
    positive=st.booleans(),
    jitter=finite_floats(0.0, 1e-3),
)


def assert_finite_result(result, n_trials: int):
    numeric = result.trials.select_dtypes("number")
    assert len(numeric) == n_trials
    bad = [c for c in numeric.columns if not np.isfinite(numeric[c].to_numpy(dtype=float)).all()]
    assert not bad, f"non-finite values in trial columns {bad}"
    p = result.trials["p_right"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    weights = result.weights.drop(columns=["mouse", "session"]).to_numpy(dtype=float)
    assert np.isfinite(weights).all(), "non-finite weight snapshot"
    for tensor in result.final_weights:
        assert bool(torch.isfinite(tensor).all())


@SETTINGS
@given(params=legal_params, seed=st.integers(0, 2**32 - 1))
def test_legal_params_stay_finite(params, seed):
    result = simulate_cohort(n_mice=N_MICE, n_sessions=2, trials_per_session=60, params=params, seed=seed,
                             progress=False)
    assert_finite_result(result, N_MICE * 2 * 60)


@SETTINGS
@given(eta=finite_floats(1e-6, ETA_MAX), beta=finite_floats(0.0, 100.0), seed=st.integers(0, 1000))
def test_extreme_corner_float64_stays_finite(eta, beta, seed):
    """Tiny w0 (deepest network) and high beta in float64 as well."""
    params = ModelParams(eta=eta, beta=beta, w0=1e-6, s0=0.0, k=0.0, lapse=0.0)
    result = simulate_cohort(n_mice=2, n_sessions=2, trials_per_session=50, params=params, seed=seed,
                             dtype=torch.float64, progress=False)
    assert_finite_result(result, 2 * 2 * 50)


@pytest.mark.parametrize("eta", [1.0])
def test_max_legal_eta_stays_finite(eta):
    """Once a reproducer: ``simulate_cohort(1, 1, 200, ModelParams(eta=1.0), seed=0)`` overflowed at trial 52."""
    result = simulate_cohort(n_mice=1, n_sessions=1, trials_per_session=200, params=ModelParams(eta=eta),
                             seed=0, progress=False)
    assert_finite_result(result, 200)


# ---------------------------------------------------------------- illegal values

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NEGATIVE = st.floats(max_value=-math.ulp(0.0), allow_nan=False)  # excludes -0.0, which is legal
#: field -> strategy of illegal values
ILLEGAL = {
    "eta": st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, exclude_min=True),
                     NON_FINITE),
    "lapse": st.one_of(st.floats(min_value=1.0, exclude_min=True), NEGATIVE, NON_FINITE),
    **{name: st.one_of(NEGATIVE, NON_FINITE) for name in ("beta", "w0", "k", "s0", "b_L", "b_R")},
}


@st.composite
def illegal_field(draw):
    name = draw(st.sampled_from(sorted(ILLEGAL)))
    bad = draw(ILLEGAL[name])
    if draw(st.booleans()):  # hide the bad value among legal per-mouse values
        legal = getattr(ModelParams(), name)
        values = [legal] * N_MICE
        values[draw(st.integers(0, N_MICE - 1))] = bad
        as_tensor = draw(st.booleans())
        bad = torch.tensor(values, dtype=torch.float64) if as_tensor else values
    return name, bad


@settings(max_examples=60, deadline=None)
@given(case=illegal_field())
def test_illegal_params_rejected_naming_field(case):
    name, value = case
    with pytest.raises(ValueError, match=rf"^{name}: "):
        ModelParams(**{name: value})


@pytest.mark.parametrize(
    "name, value",
    [("eta", 0.0), ("eta", -0.1), ("eta", 1.5), ("beta", -1.0), ("lapse", 1.01), ("w0", -1e-6),
     ("eta", math.nan), ("beta", math.inf), ("s0", math.nan), ("b_R", -math.inf), ("k", math.nan)],
)
def test_illegal_examples(name, value):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        simulate_cohort(n_mice=2, n_sessions=1, trials_per_session=5, params=ModelParams(**{name: value}),
                        progress=False)


# ---------------------------------------------------------------- one long mouse


def _long_run(eta: float, beta: float, n_trials: int = 100_000):
    result = simulate_cohort(n_mice=1, n_sessions=1, trials_per_session=n_trials,
                             params=ModelParams(eta=eta, beta=beta), seed=0, record_trials=False, progress=False)
    assert result.trials.empty
    weights = result.weights.drop(columns=["mouse", "session"]).to_numpy(dtype=float)
    assert weights.shape == (2, 9)
    assert np.isfinite(weights).all(), f"non-finite weights after {n_trials} trials: {result.weights}"
    for tensor in result.final_weights:
        assert bool(torch.isfinite(tensor).all())


@pytest.mark.slow
def test_long_mouse_extreme_legal_params():
    """1 mouse x 100,000 trials at eta = 1, beta = 100 (~35 s on a 2-core machine)."""
    _long_run(eta=1.0, beta=100.0)
