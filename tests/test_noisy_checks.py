"""Free-running copies of the noisy learner (mouse_rl.fit.noisy_checks): the sigma = 0 copies are the
deterministic network's free-running copies, the noise has the fitted sds in the right places, and bad input
gives a ValueError naming the field."""
import numpy as np
import pandas as pd
import pytest
import torch

from envs import rng
from mouse_rl.fit import statespace as ss
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.checks import free_run
from mouse_rl.fit.noisy_checks import (NOISE_STREAM, check_noisy, copy_inputs, fitted_table, free_run_noisy,
                                       noisy_labels, rule_only_weights)
from mouse_rl.network import weights_from_flat
from mouse_rl.params import NetParams
from mouse_rl.schema import WEIGHT_COLUMNS


@pytest.fixture(scope="module")
def mice():
    """3 simulated mice (4 sessions of 60 trials): real stimulus sequences and session boundaries."""
    df, z = ss.simulate_noisy(3, {"eta": 0.05, "beta": 8.0, "sigma_U": 0.02, "sigma_a": 1e-5,
                                  "sigma_day_U": 0.2, "sigma_day_a": 1e-4, "sigma_init": 1e-3},
                              n_sessions=4, trials_per_session=60, seed=3)
    return df, z


def _params(n, **kw):
    base = {"mouse": [f"noisy{i:03d}" for i in range(n)], "eta": 0.05, "beta": 8.0, "lapse": 0.0,
            **{c: 0.0 for c in ("sigma_a", "sigma_day_a", "sigma_U", "sigma_day_U", *ss.COLUMN_SIGMAS,
                                *ss.COLUMN_DAY_SIGMAS)}}
    base.update(kw)
    return pd.DataFrame(base)


def _weights(df, flat):
    """A weights table (NoisyFit.weights layout) with the same weights on every trial of a mouse."""
    w = df[["mouse", "session", "trial"]].copy()
    codes = pd.factorize(w["mouse"], sort=True)[0]
    for j, c in enumerate(WEIGHT_COLUMNS):
        w[c] = flat[codes, j]
    w["p_right"] = 0.5
    return w


@pytest.mark.parametrize("noise,positive", [("log", True), ("linear", False)])
@pytest.mark.parametrize("lapse", [0.0, 0.1])
def test_sigma_zero_copies_are_the_network(mice, noise, positive, lapse):
    df, _ = mice
    batch = make_batch(df).repeat(4)  # 4 copies of 3 mice, different streams per column
    B = batch.shape[1]
    g = np.random.default_rng(0)
    w = torch.as_tensor(g.uniform(0.05, 1.0, (B, 9)))
    eta, beta = torch.as_tensor(g.uniform(0.01, 0.2, B)), torch.as_tensor(g.uniform(3, 15, B))
    lap = torch.full((B,), lapse, dtype=torch.float64)
    seeds = np.arange(100, 100 + B)
    one = torch.ones(B, dtype=torch.float64)
    net = NetParams(eta, beta, one, one, one, one, one, lap, 0 * one)  # stim_skew as a tensor (see report)
    ref_c, ref_p = free_run(batch, net, seeds, "side", positive, "expected", init=weights_from_flat(w))
    z0 = w.log() if noise == "log" else w
    zeros = torch.zeros(B, 9, dtype=torch.float64)
    ch, p = free_run_noisy(batch, z0, eta, beta, lap, zeros, zeros, seeds, "side", noise)
    assert torch.equal(ch, ref_c)
    assert torch.allclose(p, ref_p, rtol=0, atol=1e-10)
    assert ch[batch.valid].float().mean().item() not in (0.0, 1.0)  # the copies do choose both ways


def test_noise_has_the_fitted_sds_at_the_right_trials(mice):
    """eta = 0, beta = 0: the state is a pure random walk of sd sd_trial within, sd_day across sessions,
    frozen gains stay put, and the increments are envs.rng's normals of stream NOISE_STREAM."""
    df, _ = mice
    batch = make_batch(df).repeat(40)
    B = batch.shape[1]
    z0 = torch.full((B, 9), 0.3, dtype=torch.float64)
    sd_t = torch.tensor([0.0] * 3 + [0.01, 0.02, 0.03] * 2, dtype=torch.float64).expand(B, 9)
    sd_d = torch.tensor([0.0] * 3 + [0.2, 0.3, 0.4] * 2, dtype=torch.float64).expand(B, 9)
    zero = torch.zeros(B, dtype=torch.float64)
    seeds = np.arange(B) + 7
    ch, p, z = free_run_noisy(batch, z0, zero, zero, zero, sd_t, sd_d, seeds, "magnitude", "linear",
                              frozen=("a",), record=True)
    assert torch.all(p[batch.valid] == 0.5)
    assert torch.all(z[..., :3] == 0.3)  # frozen gains
    dz = z[1:] - z[:-1]
    day = torch.as_tensor(batch.session[1:] != batch.session[:-1])
    within, across = dz[~day], dz[day]
    np.testing.assert_allclose(within[:, 3:].std(0).numpy(), sd_t[0, 3:].numpy(), rtol=0.05)
    np.testing.assert_allclose(across[:, 3:].std(0).numpy(), sd_d[0, 3:].numpy(), rtol=0.2)
    t = 5
    eps = torch.stack([rng.normal(torch.as_tensor(seeds), NOISE_STREAM, 9 * t + j) for j in range(9)], -1)
    torch.testing.assert_close(dz[t], sd_t * eps, rtol=1e-12, atol=1e-15)


def test_check_and_labels_run_and_noise_off_matches(mice):
    df, z = mice
    flat = np.exp(z.numpy()[[0, 240, 480]])  # each mouse's true first-trial weights
    w = _weights(df, flat)
    params = _params(3, sigma_U=0.02, sigma_day_U=0.2, **{c: 0.02 for c in ss.COLUMN_SIGMAS},
                     **{c: 0.2 for c in ss.COLUMN_DAY_SIGMAS})
    res = check_noisy(df, params, w, noise="log", frozen=(), sigma_per="group", encoding="side", n_copies=5)
    assert res.summary["n_mice"] == 3 and res.summary["n_copies"] == 5
    assert 0 <= res.summary["session_coverage"] <= 1
    off = check_noisy(df, params, w, noise="log", frozen=(), sigma_per="group", encoding="side", n_copies=5,
                      noise_off=True)
    off2 = check_noisy(df, params.assign(sigma_U=0.0, sigma_day_U=0.0), w, noise="log", frozen=(),
                       sigma_per="group", encoding="side", n_copies=5)
    pd.testing.assert_frame_equal(off.copies, off2.copies)
    per_mouse, _ = noisy_labels(df, params, w, encoding="side")
    assert list(per_mouse["mouse"]) == sorted(df["mouse"].unique())
    assert {"learner_side_data", "learner_side_model"} <= set(per_mouse.columns)


@pytest.mark.parametrize("noise,positive", [("log", True), ("linear", False)])
def test_rule_only_is_the_teacher_forced_network(mice, noise, positive):
    """sigma = 0 teacher forcing from the first-trial weights = the network's teacher-forced read-outs."""
    from mouse_rl.fit.likelihood import teacher_forced
    from mouse_rl.network import flat_weights, init_weights

    df, _ = mice
    params = _params(3, eta=[0.05, 0.1, 0.02], beta=[8.0, 5.0, 12.0], lapse=[0.0, 0.05, 0.1],
                     w0=[0.3, 0.5, 1.0], k=[1.0, 0.7, 0.4], s0=[0.2, 0.1, 0.3], b_L=[0.05, 0.2, 0.1],
                     b_R=[0.1, 0.05, 0.3])
    t = lambda c: torch.tensor(params[c].to_numpy(float))  # noqa: E731
    w0 = flat_weights(init_weights(NetParams(t("eta"), t("beta"), t("w0"), t("k"), t("s0"), t("b_L"), t("b_R"),
                                             t("lapse")))).numpy()
    ours = rule_only_weights(df, params, _weights(df, w0), noise=noise, frozen=(), sigma_per="group", encoding="side")
    ref = teacher_forced(df, params, encoding="side", positive=positive)
    np.testing.assert_allclose(ours["p_right"], ref["p_right"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours[list(WEIGHT_COLUMNS)], ref[list(WEIGHT_COLUMNS)], rtol=1e-9, atol=1e-12)


def test_bad_input_names_the_field(mice):
    df, z = mice
    w = _weights(df, np.exp(z.numpy()[[0, 240, 480]]))
    params = _params(3)
    kw = dict(noise="log", frozen=(), sigma_per="group", encoding="side")
    with pytest.raises(ValueError, match="n_copies"):
        check_noisy(df, params, w, n_copies=1, **kw)
    with pytest.raises(ValueError, match="params.*no row for mice.*noisy002"):
        check_noisy(df, params.iloc[:2], w, **kw)
    with pytest.raises(ValueError, match=r"params is missing required column\(s\) \['beta'\]"):
        check_noisy(df, params.drop(columns="beta"), w, **kw)
    with pytest.raises(ValueError, match=r"params\['sigma_day_U'\]: noise sds must be >= 0"):
        check_noisy(df, params.assign(sigma_day_U=-0.1), w, **kw)
    with pytest.raises(ValueError, match=r"params\['lapse'\]"):
        check_noisy(df, params.assign(lapse=1.5), w, **kw)
    with pytest.raises(ValueError, match=r"params\['eta'\]: must be finite"):
        check_noisy(df, params.assign(eta=np.nan), w, **kw)
    with pytest.raises(ValueError, match="noise: must be one of"):
        check_noisy(df, params, w, **{**kw, "noise": "cubic"})
    with pytest.raises(ValueError, match="sigma_per"):
        check_noisy(df, params, w, **{**kw, "sigma_per": "row"})
    with pytest.raises(ValueError, match="frozen: unknown weight group"):
        check_noisy(df, params, w, **{**kw, "frozen": ("b",)})
    with pytest.raises(ValueError, match=r"weights is missing required column\(s\) \['U_Rb'\]"):
        check_noisy(df, params, w.drop(columns="U_Rb"), **kw)
    with pytest.raises(ValueError, match="weights: noise='log' needs positive weights"):
        check_noisy(df, params, w.assign(U_LL=-1.0), **kw)
    with pytest.raises(ValueError, match=r"weights: no row .* for trial"):
        fitted_table(df, w.iloc[1:])
    batch = make_batch(df)
    zeros = torch.zeros(3, 9, dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"z0: expected shape \(3, 9\)"):
        free_run_noisy(batch, zeros[:2], one, one, 0 * one, zeros, zeros, [1, 2, 3])
    with pytest.raises(ValueError, match="sd_trial, sd_day: noise sds must be >= 0"):
        free_run_noisy(batch, zeros, one, one, 0 * one, zeros - 1, zeros, [1, 2, 3])
    with pytest.raises(ValueError, match="seeds: expected 3 seeds"):
        free_run_noisy(batch, zeros, one, one, 0 * one, zeros, zeros, [1, 2])
    with pytest.raises(ValueError, match="params.*no row for mice"):
        copy_inputs(params.iloc[:1], w, ["noisy000", "noisy001"], "log")
