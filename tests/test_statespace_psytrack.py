"""The noisy learner at eta = 0 with one weight group is PsyTrack's model (issue 12).

``noise="linear", frozen=("a",)``: the cortical gains a are held at (c, c, c) (w0 = k = c) and the striatal
weights U do a Gaussian random walk (sd sigma_U per trial, sigma_day_U at session starts, sigma_init at the
start, mean with b_L = b_R). With the magnitude encoding x = (cL, cR, 1) the log-odds of R is
``beta c sum_j x_j (U_Rj - U_Lj)``: the differences w_j = beta c (U_Rj - U_Lj) are PsyTrack's (cL, cR, bias)
weights, a random walk with sds beta c sqrt(2) (sigma_U, sigma_day_U, sigma_init) and prior mean 0; the sums
U_Rj + U_Lj are unobserved Gaussian coordinates that integrate out exactly. So the MAP trajectories match
(a linear map) and the Laplace evidences match (a Laplace evidence is invariant under a linear change of
variables and exact in Gaussian coordinates the likelihood does not see). Reference: ``psytrack.getMAP``
with those hyperparameters fixed, on the same simulated choices.
"""
import math

import numpy as np
import pytest
import torch

from mouse_rl.fit import statespace as ss

pytest.importorskip("psytrack")
from psytrack.getMAP import getMAP  # noqa: E402

BETA, C = 2.0, 1.0
HYPER = dict(eta=0.0, beta=BETA, w0=C, k=C, s0=0.5, b_L=0.3, b_R=0.3, sigma_U=0.08, sigma_day_U=0.4,
             sigma_init=0.7, sigma_a=0.01, sigma_day_a=0.1)
SESSIONS, TPS = 3, 100


def _psytrack_fit(df, hyper):
    s = BETA * C * math.sqrt(2)
    dat = {"y": df["choice"].to_numpy(int) + 1,
           "inputs": {"cL": df["contrastLeft"].to_numpy(float)[:, None],
                      "cR": df["contrastRight"].to_numpy(float)[:, None]},
           "dayLength": df.groupby("session", sort=True).size().to_numpy()}
    h = {"sigInit": s * hyper["sigma_init"], "sigma": [s * hyper["sigma_U"]] * 3,
         "sigDay": [s * hyper["sigma_day_U"]] * 3}
    w, _, evd, _ = getMAP(dat, h, {"bias": 1, "cL": 1, "cR": 1})
    return np.asarray(w), float(evd)  # w: (3, N), rows bias, cL, cR (alphabetical)


@pytest.fixture(scope="module")
def cohort():
    df, _ = ss.simulate_noisy(1, HYPER, n_sessions=SESSIONS, trials_per_session=TPS, seed=3,
                              contrasts=(-1.0, -0.25, 0.0, 0.25, 1.0), encoding="magnitude", noise="linear",
                              frozen=("a",))
    return df


def _ours(df, hyper):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit = ss.fit_noisy(df, free=(), fixed=hyper, start="defaults", encoding="magnitude", noise="linear",
                           frozen=("a",))
    finally:
        torch.set_num_threads(old)
    U = fit.z[:, 3:].numpy().reshape(-1, 2, 3)
    w = BETA * C * (U[:, 1] - U[:, 0])  # (N, 3): cL, cR, bias
    return np.stack([w[:, 2], w[:, 0], w[:, 1]]), fit


def test_eta_zero_one_group_is_psytrack(cohort):
    w_pt, evd_pt = _psytrack_fit(cohort, HYPER)
    w, fit = _ours(cohort, HYPER)
    assert len(cohort) == SESSIONS * TPS and abs(w_pt).max() > 0.5  # the weights do move
    np.testing.assert_allclose(w, w_pt, rtol=0, atol=1e-4)
    assert abs(fit.evidence - evd_pt) < 1e-4, (fit.evidence, evd_pt)
    a = fit.weights[["a_L", "a_R", "a_b"]].to_numpy()  # the frozen group: exact, no band
    assert (a == C).all() and (fit.weights["a_L_sd"] == 0).all()


def test_psytrack_comparison_can_fail(cohort):
    """The same comparison with sigma_U 10 % off on our side is not within tolerance."""
    w_pt, evd_pt = _psytrack_fit(cohort, HYPER)
    w, fit = _ours(cohort, dict(HYPER, sigma_U=HYPER["sigma_U"] * 1.1))
    assert abs(fit.evidence - evd_pt) > 1e-2
    assert np.abs(w - w_pt).max() > 1e-2


COLUMN = dict(HYPER, sigma_U_stimL=0.03, sigma_U_stimR=0.12, sigma_U_bias=0.06, sigma_day_U_stimL=0.2,
              sigma_day_U_stimR=0.5, sigma_day_U_bias=0.8)


def test_column_sigmas_are_psytracks_per_weight_sigmas():
    """sigma_per="column": one sd per input column of U is PsyTrack's per-weight sigma and sigDay (weights
    (bias, cL, cR) <- columns (bias, stimL, stimR)); simulated with different sds per column."""
    df, _ = ss.simulate_noisy(1, COLUMN, n_sessions=SESSIONS, trials_per_session=TPS, seed=4,
                              contrasts=(-1.0, -0.25, 0.0, 0.25, 1.0), encoding="magnitude", noise="linear",
                              frozen=("a",), sigma_per="column")
    s = BETA * C * math.sqrt(2)
    dat = {"y": df["choice"].to_numpy(int) + 1,
           "inputs": {"cL": df["contrastLeft"].to_numpy(float)[:, None],
                      "cR": df["contrastRight"].to_numpy(float)[:, None]},
           "dayLength": df.groupby("session", sort=True).size().to_numpy()}
    order = ("bias", "stimL", "stimR")  # PsyTrack's alphabetical (bias, cL, cR)
    h = {"sigInit": s * COLUMN["sigma_init"], "sigma": [s * COLUMN[f"sigma_U_{c}"] for c in order],
         "sigDay": [s * COLUMN[f"sigma_day_U_{c}"] for c in order]}
    w_pt, _, evd_pt, _ = getMAP(dat, h, {"bias": 1, "cL": 1, "cR": 1})
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit = ss.fit_noisy(df, free=(), fixed=COLUMN, start="defaults", encoding="magnitude", noise="linear",
                           frozen=("a",), sigma_per="column")
    finally:
        torch.set_num_threads(old)
    U = fit.z[:, 3:].numpy().reshape(-1, 2, 3)
    w = BETA * C * (U[:, 1] - U[:, 0])
    np.testing.assert_allclose(np.stack([w[:, 2], w[:, 0], w[:, 1]]), np.asarray(w_pt), rtol=0, atol=1e-4)
    assert abs(fit.evidence - float(evd_pt)) < 1e-4, (fit.evidence, evd_pt)
    same = ss.fit_noisy(df, free=(), fixed=dict(COLUMN, sigma_U=0.06, sigma_day_U=0.5), start="defaults",
                        encoding="magnitude", noise="linear", frozen=("a",))  # one sd per group: not PsyTrack's
    assert abs(same.evidence - float(evd_pt)) > 1e-2
