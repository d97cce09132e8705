"""The free-running fit (mouse_rl.fit.freerun) and its forecaster."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.freerun import (FREERUN_FREE, check_free_running, energy_score, fit_free_running, search_box,
                                  session_rates)
from mouse_rl.fit.transforms import ParamTransform

SMALL = dict(n_copies=8, n_starts=32, popsize=12, n_elite=4, n_gen=5)


def crps_gaussian(y, mu, sd):
    z = (y - mu) / sd
    return sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_energy_score_in_one_dimension_is_the_gaussian_crps():
    K = 2000  # the Gaussian's quantiles at (k + 1/2) / K: a sample without Monte Carlo noise
    x = norm.ppf((np.arange(K) + 0.5) / K, 0.3, 2.0).reshape(1, 1, K)
    for y in (-1.0, 0.3, 4.0):
        assert energy_score(np.array([y]), x)[0] == pytest.approx(crps_gaussian(y, 0.3, 2.0), rel=2e-3)


def test_energy_score_is_proper_the_true_distribution_scores_best():
    rng = np.random.default_rng(1)
    D, n_obs, K = 6, 300, 64
    truth = rng.normal(size=(n_obs, D))
    cands = {"true": (0.0, 1.0), "shifted": (0.5, 1.0), "narrow": (0.0, 0.4), "wide": (0.0, 2.5)}
    mean = {}
    for name, (mu, sd) in cands.items():
        x = rng.normal(mu, sd, size=(D, 1, K))
        mean[name] = np.mean([energy_score(y, x)[0] for y in truth])
    assert min(mean, key=mean.get) == "true", mean


def test_energy_score_skips_missing_observations_and_rejects_missing_samples():
    x = np.zeros((3, 2, 5))
    x[1] = 7.0
    y = np.array([1.0, np.nan, 1.0])
    assert np.allclose(energy_score(y, x), math.sqrt(2))  # copies all at 0: distance sqrt(1 + 1), spread 0
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x: NaN"):
        energy_score(y, x)
    with pytest.raises(ValueError, match="x: expected shape"):
        energy_score(y, x[0])


def test_session_rates_by_hand():
    import pandas as pd

    rows = []  # session 1: left, left, zero, right; session 2: right, right, left (no zero trial)
    for s, cs, ch in ((1, [-0.5, -0.25, 0.0, 0.5], [1, 0, 1, 1]), (2, [0.5, 0.25, -0.5], [0, 1, 0])):
        for t, (c, y) in enumerate(zip(cs, ch)):
            rows.append(dict(mouse="m", session=s, trial=t, signed_contrast=c, choice=y))
    df = pd.DataFrame(rows)
    df["contrastLeft"], df["contrastRight"] = np.maximum(-df.signed_contrast, 0), np.maximum(df.signed_contrast, 0)
    df["reward"] = ((df.signed_contrast > 0) & (df.choice == 1)) | ((df.signed_contrast < 0) & (df.choice == 0))
    df["reward"] = df["reward"].astype(float)
    batch = make_batch(df)
    r = session_rates(batch, batch.choice.numpy())[:, 0]
    np.testing.assert_allclose(r, [0.5, 1.0, 1.0, 0.0, np.nan, 0.5])


def test_search_box_lies_inside_the_fit_bounds():
    tr = ParamTransform(free=FREERUN_FREE)
    lo, hi = search_box(tr)
    blo, bhi = tr.bounds_u()
    assert np.all(lo >= blo) and np.all(hi <= bhi) and np.all(lo < hi)


#: Skewed starts (as tests/test_stim_skew.py) with slow learning: with seed 21 the four simulated mice end
#: left, left, right, right learners (late slope differences -0.49, -0.45, +0.22, +0.47) -- which side a
#: mouse learns is partly chance in the model, not set by the skew's sign alone.
SKEWS = np.array([3.0, -3.0, 3.0, -3.0])


@pytest.fixture(scope="module")
def skewed():
    p = ModelParams(eta=0.01, beta=8.0, w0=0.1, s0=0.25, b_L=0.05, b_R=0.05, lapse=0.03, stim_skew=SKEWS)
    cohort = simulate_cohort(len(SKEWS), 10, 200, p, seed=21, dtype=torch.float64)
    return cohort.trials, fit_free_running(cohort.trials, **SMALL)


def test_free_running_copies_take_the_sides_of_one_sided_mice(skewed):
    trials, res = skewed
    assert list(res.params["mouse"]) == sorted(trials["mouse"].unique())
    assert res.u.shape == (len(SKEWS), len(FREERUN_FREE)) and np.all(np.isfinite(res.params["energy_score"]))
    hist = res.history.groupby("mouse")["energy_score"]
    assert (hist.diff().dropna() <= 0).all()  # best-so-far never gets worse
    check = check_free_running(res, trials, n_copies=30, seed=5)  # fresh choice streams
    pm = check.per_mouse.set_index("mouse")
    assert list(pm["side"]) == ["left", "left", "right", "right"]  # the simulated mice, as documented above
    assert pm["side_match"].all(), pm
    assert (pm["side_share"] >= 0.6).all(), pm["side_share"]


def test_a_mouse_fitted_alone_equals_the_mouse_in_a_batch(skewed):
    trials, res = skewed
    alone = fit_free_running(trials[trials.mouse == "sim0001"], **SMALL)
    np.testing.assert_array_equal(alone.u[0], res.u[1])


@pytest.mark.parametrize("kw, msg", [(dict(n_copies=1), "n_copies"), (dict(n_gen=-1), "n_gen"),
                                     (dict(n_elite=30), "n_elite"), (dict(popsize=2.5), "popsize")])
def test_bad_options_are_named(skewed, kw, msg):
    trials, _ = skewed
    with pytest.raises(ValueError, match=msg):
        fit_free_running(trials, **kw)


def test_freerun_forecaster_gives_finite_horizon_forecasts():
    from mouse_rl.forecast import run_forecast
    from mouse_rl.forecast.freerun import FreeRunForecaster
    from mouse_rl.forecast.glm import LogisticGLM

    cohort = simulate_cohort(4, 7, 60, ModelParams(eta=0.03), seed=3, dtype=torch.float64)
    res = run_forecast(cohort.trials, models={"glm_early_bias": lambda: LogisticGLM("early_bias"),
                                              "network_freerun": lambda: FreeRunForecaster(n_copies=6, fit=SMALL)},
                       n_folds=2, n_context=4, n_horizon=2)
    assert set(res.scores["model"]) == {"glm_early_bias", "network_freerun", "network_freerun_tf"}
    p = res.predictions["p_right"]
    assert np.all((p > 0) & (p < 1)) and np.isfinite(res.scores["log_loss"]).all()


def test_cli_fit_free_running_then_check(skewed, tmp_path, capsys):
    import json

    import pandas as pd

    from mouse_rl.cli import main

    trials, _ = skewed
    data = tmp_path / "mice.parquet"
    trials[trials.mouse.isin(["sim0000", "sim0003"])].to_parquet(data)
    assert main(["fit", str(data), "--out", str(tmp_path / "fits"), "--criterion", "free-running", "--quiet"]) == 0
    params = pd.read_csv(tmp_path / "fits" / "freerun_params.csv")
    assert list(params["mouse"]) == ["sim0000", "sim0003"] and np.isfinite(params["energy_score"]).all()
    assert json.loads((tmp_path / "fits" / "fit_options.json").read_text())["criterion"] == "free-running"
    assert main(["check", str(tmp_path / "fits"), "--copies", "10", "--no-plots"]) == 0
    assert "point estimate" not in capsys.readouterr().err  # draws from the saved precision
    summary = json.loads((tmp_path / "fits" / "check" / "check_summary.json").read_text())
    assert summary["n_mice"] == 2 and summary["n_copies"] == 10
    with np.load(tmp_path / "fits" / "fit_laplace.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert np.all(np.linalg.eigvalsh(arrays["hessian"]) > 0)
    with open(tmp_path / "fits" / "fit_laplace.npz", "wb") as fh:  # as written before fits saved a precision
        np.savez(fh, **{**arrays, "hessian": np.zeros_like(arrays["hessian"])})
    assert main(["check", str(tmp_path / "fits"), "--copies", "10", "--no-plots"]) == 0
    assert "saved no precision; its copies use the fitted point estimate" in capsys.readouterr().err
    nan = np.full_like(arrays["hessian"], np.nan)
    for damaged, rc, msg in ((-arrays["hessian"], 2, "not positive definite for ['sim0000', 'sim0003']"),
                             (nan, 0, "no finite Hessian for ['sim0000', 'sim0003']")):
        with open(tmp_path / "fits" / "fit_laplace.npz", "wb") as fh:
            np.savez(fh, **{**arrays, "hessian": damaged})
        assert main(["check", str(tmp_path / "fits"), "--copies", "10", "--no-plots"]) == rc
        assert msg in capsys.readouterr().err
    # options the free-running fit would ignore are refused, naming them
    assert main(["fit", str(data), "--out", str(tmp_path / "f2"), "--criterion", "free-running",
                 "--restarts", "3"]) == 2
    assert "--restarts" in capsys.readouterr().err


def test_cli_free_running_with_drift_saves_it_and_the_check_uses_it(skewed, tmp_path, capsys):
    import json

    import pandas as pd

    from mouse_rl.cli import main
    from mouse_rl.fit.drift import GROUPS

    trials, _ = skewed
    data = tmp_path / "mice.parquet"
    trials[trials.mouse.isin(["sim0000", "sim0003"])].to_parquet(data)
    fits = tmp_path / "fits"
    assert main(["fit", str(data), "--out", str(fits), "--criterion", "free-running", "--drift", "bias",
                 "--summary-weight", "1", "--quiet"]) == 0
    params = pd.read_csv(fits / "freerun_params.csv")
    opts = json.loads((fits / "fit_options.json").read_text())
    assert opts["drift"] == ["bias"] and opts["summary_weight"] == 1.0
    with np.load(fits / "fit_laplace.npz", allow_pickle=False) as z:
        sd = z["sigma_day"]
    bias = list(GROUPS["bias"])
    np.testing.assert_allclose(sd[:, bias], np.repeat(params["sigma_day_bias"].to_numpy()[:, None], 3, 1))
    assert not np.delete(sd, bias, axis=1).any() and (sd[:, bias] > 0).all()
    assert main(["check", str(fits), "--copies", "10", "--no-plots"]) == 0
    assert "drift overnight" in capsys.readouterr().err
    with np.load(fits / "fit_laplace.npz", allow_pickle=False) as z:  # a damaged drift is refused, named
        arrays = {k: z[k] for k in z.files}
    with open(fits / "fit_laplace.npz", "wb") as fh:
        np.savez(fh, **{**arrays, "sigma_day": -arrays["sigma_day"] - 1})
    assert main(["check", str(fits), "--copies", "10", "--no-plots"]) == 2
    assert "sigma_day (the copies' overnight drift) has negative values" in capsys.readouterr().err
    assert main(["fit", str(data), "--out", str(tmp_path / "f3"), "--criterion", "free-running", "--drift", "bias",
                 "bias"]) == 2
    assert "--drift: group bias given twice" in capsys.readouterr().err
    assert main(["fit", str(data), "--out", str(tmp_path / "f2"), "--drift", "stim"]) == 2  # teacher-forced: no drift
    assert "--criterion free-running only" in capsys.readouterr().err


def test_session_rates_leave_out_unobserved_choices():
    import pandas as pd

    rows = []  # one session: left, left, right, right; the second left and the second right unobserved
    for t, (c, y) in enumerate(zip([-0.5, -0.25, 0.5, 0.25], [1, 0, 0, 1])):
        rows.append(dict(mouse="m", session=1, trial=t, signed_contrast=c, choice=y))
    df = pd.DataFrame(rows)
    df["contrastLeft"], df["contrastRight"] = np.maximum(-df.signed_contrast, 0), np.maximum(df.signed_contrast, 0)
    df["reward"] = (((df.signed_contrast > 0) & (df.choice == 1)) | ((df.signed_contrast < 0) & (df.choice == 0)))
    df["reward"] = df["reward"].astype(float)
    batch = make_batch(df)
    choice = batch.choice.numpy().astype(float)
    choice[[1, 3], 0] = np.nan
    np.testing.assert_allclose(session_rates(batch, choice)[:, 0], [1.0, np.nan, 0.0])


def test_observed_rows_alone_shape_the_fit(skewed):
    """All rows observed = the default; the choices of unobserved rows cannot reach the fit (a leak test)."""
    trials, res = skewed
    one = trials[trials.mouse == "sim0002"].reset_index(drop=True)
    kw = dict(SMALL, n_starts=8, n_gen=1)
    base = fit_free_running(one, **kw)
    np.testing.assert_array_equal(fit_free_running(one, observed=np.ones(len(one), bool), **kw).u, base.u)
    from mouse_rl.fit.cv import time_split

    train, _ = time_split(one, 0.5)
    masked = fit_free_running(one, observed=train, **kw)
    flipped = one.copy()
    flipped.loc[~train, "choice"] = 1 - flipped.loc[~train, "choice"]
    flipped.loc[~train, "reward"] = 1.0 - flipped.loc[~train, "reward"]
    if "feedbackType" in flipped:
        flipped.loc[~train, "feedbackType"] = -flipped.loc[~train, "feedbackType"]
    np.testing.assert_array_equal(fit_free_running(flipped, observed=train, **kw).u, masked.u)
    assert not np.array_equal(masked.u, base.u)  # the held-out half did matter to the full fit
    with pytest.raises(ValueError, match="observed"):
        fit_free_running(one, observed=train[:-1], **kw)


def test_freerun_cv_model_scores_by_the_reference_likelihood(skewed):
    """FreeRunModel.score = the torch reference log-likelihood (mouse_rl.fit.log_likelihood) on the mask."""
    from mouse_rl.fit import log_likelihood, prepare_trials
    from mouse_rl.fit.cv import interleaved_split
    from mouse_rl.fit.freerun import FreeRunModel

    trials, _ = skewed
    two = prepare_trials(trials[trials.mouse.isin(["sim0000", "sim0003"])])
    train, test = interleaved_split(two)
    model = FreeRunModel(two, **dict(SMALL, n_starts=8, n_gen=1)).fit(train)
    held = model.score(test).set_index("mouse")
    res = model.result
    p = res.transform.fixed.replace(**{f: res.params[f].to_numpy(float) for f in res.transform.free})
    batch = make_batch(two)
    ref = log_likelihood(two, p, score=batch.mask_from_rows(test)).numpy()
    np.testing.assert_allclose(held.loc[["sim0000", "sim0003"], "loglik"], ref, rtol=1e-10)
    assert list(held["n_trials"]) == [int(test[two.mouse == m].sum()) for m in ("sim0000", "sim0003")]


def test_choice_information_is_the_fisher_information_by_autograd(skewed):
    """Independent truth: sum_t dp_t dp_t^T / (p_t (1 - p_t)) with dp_t by autograd through the reference
    network.trial_update (mouse_rl.fit.likelihood.choice_logprob), stim_skew and lapse free."""
    from mouse_rl.fit.batch import TrialBatch
    from mouse_rl.fit.fitting import make_transform
    from mouse_rl.fit.likelihood import choice_logprob
    from mouse_rl.fit.objective import KernelObjective

    trials, res = skewed
    batch = make_batch(trials, "expected", "cpu", torch.float64).crop(300)
    tr = make_transform(FREERUN_FREE, None)
    u = res.u.copy()
    info = KernelObjective(batch, tr).choice_information(u, np.arange(len(u)))
    for m in range(len(u)):
        s = slice(m, m + 1)
        col = TrialBatch(batch.mice[s], batch.contrast[:, s], batch.choice[:, s], batch.reward[:, s],
                         batch.valid[:, s], batch.session[:, s], batch.row[:, s], batch.n_trials[s])

        def p_right(um):
            lp = choice_logprob(col, tr.params(um[None]), tr.fixed.encoding, tr.fixed.positive)[:, 0]
            return torch.where(col.choice[:, 0] == 1, lp.exp(), 1 - lp.exp())

        um = torch.tensor(u[m], dtype=torch.float64)
        J = torch.autograd.functional.jacobian(p_right, um, vectorize=True, strategy="forward-mode").numpy()  # (T, P)
        p = p_right(um).detach().numpy()
        w = col.valid[:, 0].numpy() / (p * (1 - p))
        ref = np.einsum("ti,t,tj->ij", J, w, J)
        np.testing.assert_allclose(info[m], ref, rtol=1e-5, atol=1e-8 * np.abs(ref).max())
        assert np.all(np.linalg.eigvalsh(info[m]) > -1e-8 * np.abs(ref).max())
    # the fit's precision is this information (on all trials) plus the registry prior
    full = KernelObjective(make_batch(trials, "expected", "cpu", torch.float64), tr).choice_information(
        u, np.arange(len(u)))
    np.testing.assert_allclose(res.precision, full + tr.registry_prior().precision[None], rtol=1e-10)


def test_parameter_uncertainty_widens_the_checks_bands(skewed):
    trials, res = skewed
    point = check_free_running(res, trials, n_copies=30, seed=5, parameter_uncertainty=False)
    drawn = check_free_running(res, trials, n_copies=30, seed=5)
    width = lambda c: (c.per_session["accuracy_hi"] - c.per_session["accuracy_lo"]).mean()  # noqa: E731
    assert width(drawn) > width(point)

