"""Animal-holdout forecast protocol: no leaks, GLM features, scores, and the network's forecast."""
import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl.fit.batch import make_batch
from mouse_rl.fit.cv import NetworkModel
from mouse_rl.forecast import (ForecastLeakError, LogisticGLM, check_no_leak, early_bias, log_loss, make_folds,
                               paired_bootstrap, run_forecast, summarise)
from mouse_rl.forecast.learners import placeholder_table
from mouse_rl.network import forward, init_weights, encode, p_right
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort


@pytest.fixture(scope="module")
def cohort():
    trials = simulate_cohort(10, 15, 40, seed=2, dtype=torch.float64).trials
    rank = trials.groupby("mouse")["session"].rank(method="dense")
    n = trials.groupby("mouse")["session"].transform("nunique")
    # a marker column that says which phase each row is in: any leak would carry "gap"/"horizon" markers
    trials["marker"] = np.where(rank <= 8, "context", np.where(rank > n - 5, "horizon", "gap"))
    return trials


class Spy:
    """A forecaster that records what it is given and predicts 0.5."""

    seen = []

    def __init__(self):
        self.name = "spy"

    def fit(self, observed, targets):
        Spy.seen.append((observed.copy(), list(targets)))
        return self

    def predict(self, schedule):
        Spy.seen.append((schedule.copy(), None))
        return np.full(len(schedule), 0.5)


def test_no_gap_or_horizon_row_of_a_forecast_mouse_reaches_a_model(cohort):
    Spy.seen = []
    res = run_forecast(cohort, models={"spy": Spy}, n_folds=5)
    fits = [(obs, t) for obs, t in Spy.seen if t is not None]
    schedules = [s for s, t in Spy.seen if t is None]
    assert len(fits) == 5 and len(schedules) == 5
    for obs, targets in fits:
        leaked = obs[obs["mouse"].isin(targets) & (obs["marker"] != "context")]
        assert leaked.empty
        ref = obs[~obs["mouse"].isin(targets)]
        assert set(ref["marker"]) == {"context", "horizon"}  # the reference cohort: context and horizon
    for s in schedules:
        assert not {"choice", "reward", "feedbackType", "marker", "response_times"} & set(s.columns)
    # every mouse forecast once, on exactly its final 5 sessions, at chance -> log 2 nats
    assert sorted(res.folds["mouse"]) == sorted(cohort["mouse"].unique())
    assert set(res.predictions.merge(cohort, on=["mouse", "session", "trial"])["marker"]) == {"horizon"}
    assert np.allclose(res.scores["log_loss"], np.log(2))


def test_check_no_leak_catches_injected_rows(cohort):
    folds, _ = make_folds(cohort.drop(columns="marker"), n_folds=5)
    f = folds[0]
    leak = pd.concat([f.observed, f.truth.assign(phase="context")])  # horizon rows relabelled as context
    with pytest.raises(ForecastLeakError):
        check_no_leak(type(f)(f.fold, f.reference, f.targets, leak, f.schedule, f.truth))
    with pytest.raises(ForecastLeakError):
        check_no_leak(type(f)(f.fold, f.reference, f.targets, f.observed, f.schedule.assign(choice=0), f.truth))


def test_folds_are_round_robin_over_sorted_ids_and_short_mice_are_excluded(cohort):
    short = cohort[cohort["session"] <= 13]
    df = pd.concat([cohort, short.assign(mouse="zz_short")])
    folds, excluded = make_folds(df.drop(columns="marker"), n_folds=5)
    assert excluded == ["zz_short"]
    mice = sorted(cohort["mouse"].unique())
    assert [f.targets for f in folds] == [mice[k::5] for k in range(5)]


def test_early_bias_by_hand():
    rows = []
    for s in range(1, 9):
        for t, (c, ch) in enumerate([(0.0, 1), (0.0, 1 if s >= 6 else 0), (0.5, 1), (-0.5, 0)]):
            rows.append(dict(mouse="m", session=s, trial=t, signed_contrast=c, choice=ch))
    b = early_bias(pd.DataFrame(rows))
    # sessions 4-8: P(R | c=0) = 0.5, 0.5, 1, 1, 1 -> mean 0.8 -> bias 0.3
    assert b["m"] == pytest.approx(0.3)


def test_glm_recovers_a_logistic_truth():
    rng = np.random.default_rng(0)
    n = 20000
    cl = rng.choice([0, 0.25, 1.0], n)
    cr = np.where(cl > 0, 0, rng.choice([0, 0.25, 1.0], n))
    z = 0.3 - 2.0 * cl + 2.5 * cr
    df = pd.DataFrame(dict(mouse="m", session=1, trial=np.arange(n), contrastLeft=cl, contrastRight=cr,
                           signed_contrast=cr - cl, choice=(rng.random(n) < 1 / (1 + np.exp(-z))).astype(int),
                           phase="context"))
    glm = LogisticGLM("psychometric", l2=0.0).fit(df, [])
    assert np.allclose(glm.w, [0.3, -2.0, 2.5], atol=0.1)


def test_scores_by_hand():
    assert log_loss(np.array([0.8, 0.8]), np.array([1, 0])) == pytest.approx([-np.log(0.8), -np.log(0.2)])
    lo, hi = paired_bootstrap(np.array([-0.1, -0.2, -0.15, -0.05]), seed=0)
    assert lo < -0.125 < hi < 0
    scores = pd.DataFrame({"model": ["glm_a", "glm_a", "glm_b", "glm_b", "net", "net"], "mouse": ["x", "y"] * 3,
                           "log_loss": [0.6, 0.7, 0.5, 0.6, 0.4, 0.5], "n_trials": 10})
    s = summarise(scores).set_index("model")
    assert (s["reference"] == "glm_b").all()
    assert s.loc["net", "diff_vs_reference"] == pytest.approx(-0.1)
    assert bool(s.loc["net", "better_than_reference"])


def test_network_forecast_without_learning_is_the_context_end_policy():
    """eta ~ 0: the copies never learn, so every forecast is the initial network's P(Right) on that stimulus."""
    fixed = ModelParams(eta=1e-6, b_R=0.1, jitter=0.0)
    trials = simulate_cohort(2, 3, 30, params=fixed, seed=1, dtype=torch.float64).trials
    ctx = trials[trials["session"] == 1]
    model = NetworkModel(ctx, free=("beta",), fixed=fixed, fit_lapse=False, n_restarts=1, max_iter=5)
    model.fit(np.ones(len(model.trials), bool))
    sched = placeholder_table(trials[trials["session"] > 1])
    sb = make_batch(sched, prepared=False)
    p = model.forecast_p_right(np.tile(model.u.numpy(), (3, 1)), sb, seed=0)  # column k * M + m
    params = model.transform.params(model.u)
    w = init_weights(params)
    expect = p_right(forward(w, encode(sb.contrast, "side")).q_tot, params.beta)  # (T, M)
    valid = sb.valid.numpy()
    for k in range(3):
        assert np.allclose(p[:, k * 2:(k + 1) * 2][valid], expect.numpy()[valid], atol=1e-4)


def test_cli_forecast_writes_tables_and_rejects_bad_options(cohort, tmp_path, capsys):
    from mouse_rl.cli import main

    data = tmp_path / "cohort.parquet"
    cohort.drop(columns="marker").to_parquet(data)
    out = tmp_path / "fc"
    code = main(["forecast", str(data), "--out", str(out), "--models", "glm_psychometric", "glm_early_bias",
                 "network", "--copies", "4", "--restarts", "1", "--em-iter", "1", "--quiet"])
    assert code == 0
    summary = pd.read_csv(out / "forecast_summary.csv")
    assert set(summary["model"]) == {"glm_psychometric", "glm_early_bias", "network", "network_recalibrated",
                                     "network_stacked"}
    assert np.all(np.isfinite(summary["log_loss"]))
    for name in ("forecast_predictions.parquet", "forecast_reliability.csv", "forecast_reliability.png",
                 "forecast_psychometrics.png"):
        assert (out / name).exists()
    assert main(["forecast", str(data), "--out", str(tmp_path / "bad"), "--folds", "1"]) == 2
    assert "--folds: must be >= 2, got 1" in capsys.readouterr().err


def test_network_forecast_beats_the_glms_on_mice_simulated_from_the_network():
    """On a cohort drawn from a known network population, the population-prior network forecast
    of the final sessions has a lower animal-balanced log loss than every GLM."""
    from mouse_rl.fit.transforms import ParamTransform
    from mouse_rl.forecast import LearnerForecaster

    free = ("eta", "beta", "w0")
    tr = ParamTransform(free=free)
    mu = tr.to_u({"eta": 0.004, "beta": 8.0, "w0": 0.05}, 1)[0].numpy()
    u = np.random.default_rng(1).multivariate_normal(mu, np.diag([0.4, 0.3, 0.6]) ** 2, size=15)
    p = tr.params(torch.as_tensor(u))
    params = ModelParams(**{n: getattr(p, n).numpy() for n in free}, b_R=0.05, jitter=0.0)
    trials = simulate_cohort(15, 16, 80, params=params, seed=3, dtype=torch.float64).trials
    models = {f"glm_{k}": (lambda k=k: LogisticGLM(k)) for k in ("psychometric", "late_phase", "early_bias")}
    models["network"] = lambda: LearnerForecaster(
        lambda d: NetworkModel(d, free=free, fit_lapse=False, n_restarts=2), "network", n_copies=40, em_iter=3)
    s = run_forecast(trials, models=models, n_folds=5).summary.set_index("model")
    glm_best = s.loc[s.index.str.startswith("glm_"), "log_loss"].min()
    assert s.loc["network", "log_loss"] < glm_best
    assert s.loc["network_recalibrated", "log_loss"] < glm_best


def test_recalibration_recovers_a_known_temperature():
    from mouse_rl.forecast.learners import apply_recalibration, fit_recalibration

    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.98, 50000)
    z = np.log(p / (1 - p))
    y = rng.random(len(p)) < 1 / (1 + np.exp(-(0.5 * z + 0.2)))  # the forecast is overconfident
    ab = fit_recalibration(p, y)
    assert np.allclose(ab, [0.5, 0.2], atol=0.05)
    assert log_loss(apply_recalibration(p, ab), y).mean() < log_loss(p, y).mean()


# --- network_drift: the network's forecast with overnight drift of its copies (mouse_rl.forecast.drift) ---

SMALL_GRID = {"bias": (0.0, 0.3), "stim": (0.0, 0.3)}


def small_drift(grid=SMALL_GRID):
    from mouse_rl.forecast.drift import DriftForecaster

    return DriftForecaster(lambda d: NetworkModel(d, n_restarts=1, max_iter=20), n_copies=4, em_iter=1,
                           sigma_grid=grid)


def test_drift_copies_with_zero_sigma_are_the_network_forecast_bit_for_bit():
    from mouse_rl.forecast.drift import drift_p_right

    trials = simulate_cohort(3, 6, 40, seed=1, dtype=torch.float64).trials
    model = NetworkModel(trials[trials["session"] <= 2], n_restarts=1, max_iter=10)
    model.fit(np.ones(len(model.trials), bool))
    sb = make_batch(placeholder_table(trials[trials["session"] > 2]), prepared=False)
    u = np.tile(model.u.numpy(), (4, 1)) + np.random.default_rng(0).normal(0, 0.1, (12, model.u.shape[1]))
    expect = model.forecast_p_right(u, sb, seed=3)
    params, w = model.context_state(u)
    for sigma in ({}, {"bias": 0.0, "stim": 0.0}):
        assert np.array_equal(drift_p_right(model, params, w, sb, sigma, seed=3), expect)
    drifted = drift_p_right(model, params, w, sb, {"bias": 0.3}, seed=3)  # positive control
    valid = sb.repeat(4).valid.numpy()
    first = valid & (sb.repeat(4).session.numpy() == 3)
    assert not np.allclose(drifted[first], expect[first])  # the first night (context -> schedule) drifts too
    assert np.array_equal(drift_p_right(model, params, w, sb, {"bias": 0.3}, seed=3), drifted)  # reproducible


def test_network_drift_at_sigma_zero_reproduces_the_network_rows(cohort):
    """A grid of only sigma = 0: network_drift's own, recalibrated and stacked forecasts are the network's."""
    from mouse_rl.forecast import LearnerForecaster

    models = {"network": lambda: LearnerForecaster(lambda d: NetworkModel(d, n_restarts=1, max_iter=20),
                                                   "network", n_copies=4, em_iter=1),
              "network_drift": lambda: small_drift({"bias": (0.0,), "stim": (0.0,)})}
    res = run_forecast(cohort.drop(columns="marker"), models=models, n_folds=5)
    p = res.predictions.pivot_table(index=["mouse", "session", "trial"], columns="model", values="p_right")
    for variant in ("", "_recalibrated", "_stacked"):
        assert np.array_equal(p[f"network_drift{variant}"].to_numpy(), p[f"network{variant}"].to_numpy())
    assert [t["sigma"] for t in res.options["tuning"]] == [{"bias": 0.0, "stim": 0.0}] * 5


def _flip(trials, rows):
    """Reverse the choices of ``rows`` (and their rewards: the same rewarded side)."""
    out = trials.copy()
    out.loc[rows, "choice"] = 1 - out.loc[rows, "choice"]
    out.loc[rows, "reward"] = 1 - out.loc[rows, "reward"]
    out.loc[rows, "feedbackType"] = 2 * out.loc[rows, "reward"] - 1
    return out


def test_drift_sds_are_chosen_on_reference_mice_only(cohort):
    """Flipping a forecast mouse's gap and horizon choices changes neither the chosen sds, nor the grid's
    scores, nor any forecast; flipping the reference mice's horizon choices does change the scores."""
    from mouse_rl.fit.batch import prepare_trials

    base = prepare_trials(cohort.drop(columns="marker"))
    folds, _ = make_folds(base, n_folds=5)
    targets, reference = folds[0].targets, folds[0].reference
    later = cohort["marker"].to_numpy() != "context"
    runs = {}
    for label, rows in (("base", None), ("targets", cohort["mouse"].isin(targets).to_numpy() & later),
                        ("reference", cohort["mouse"].isin(reference).to_numpy()
                         & (cohort["marker"] == "horizon").to_numpy())):
        trials = base if rows is None else prepare_trials(_flip(cohort.drop(columns="marker"), rows))
        f = make_folds(trials, n_folds=5)[0][0]
        fc = small_drift().fit(f.observed, f.targets)
        runs[label] = (fc.sigma, fc.grid_scores, fc.predict(f.schedule))
    sigma, scores, pred = runs["base"]
    assert runs["targets"][0] == sigma
    pd.testing.assert_frame_equal(runs["targets"][1], scores)
    for k in pred:
        assert np.array_equal(runs["targets"][2][k], pred[k])
    assert not np.allclose(runs["reference"][1]["log_loss"], scores["log_loss"])  # positive control
    assert len(scores) == 4 and set(pred) == {"network_drift", "network_drift_recalibrated", "network_drift_stacked"}


def test_drift_choice_is_the_argmin_of_the_animal_balanced_reference_loss(monkeypatch):
    from mouse_rl.forecast import drift as D

    rows = pd.DataFrame({"mouse": ["a"] * 2 + ["b"] * 8, "choice": [1, 0] + [1] * 8})
    # animal-balanced by hand: mouse a (2 trials) and mouse b (8 trials) weigh the same
    p = np.r_[0.8, 0.2, np.full(8, 0.5)]
    assert D.animal_balanced_loss(rows, p) == pytest.approx((-np.log(0.8) + np.log(2)) / 2)

    def fake(self, model, schedule):  # perfect at (bias 0.2, stim 0.1), chance elsewhere
        good = self.sigma == {"bias": 0.2, "stim": 0.1}
        q = np.where(rows["choice"] == 1, 0.9, 0.1) if good else np.full(len(rows), 0.5)
        return np.r_[q, 0.5]  # + one gap row

    monkeypatch.setattr(D.DriftForecaster, "_forecast", fake)
    fc = D.DriftForecaster(None, sigma_grid={"bias": (0.0, 0.2), "stim": (0.1, 0.4)})
    schedule = pd.DataFrame({"phase": ["horizon"] * len(rows) + ["gap"]})
    out = fc._reference_forecast(None, schedule, rows)
    assert fc.sigma == {"bias": 0.2, "stim": 0.1} and len(out) == len(rows)
    assert fc.grid_scores["log_loss"].min() == pytest.approx(-np.log(0.9))
    assert fc.tuning["sigma"] == fc.sigma and len(fc.tuning["grid"]) == 4


@pytest.mark.parametrize("grid, message", [({"tail": (0.1,)}, "unknown group 'tail'"),
                                           ({"bias": (0.1, -0.2)}, "sigma_grid['bias']"),
                                           ({}, "sigma_grid: must be a non-empty dict")])
def test_drift_grid_is_validated(grid, message):
    from mouse_rl.forecast.drift import DriftForecaster

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DriftForecaster(None, sigma_grid=grid)


def test_cli_forecast_runs_network_drift(cohort, tmp_path):
    import json

    from mouse_rl.cli import main

    data = tmp_path / "cohort.parquet"
    cohort.drop(columns="marker").to_parquet(data)
    out = tmp_path / "fc"
    assert main(["forecast", str(data), "--out", str(out), "--models", "glm_early_bias", "network_drift",
                 "--copies", "2", "--restarts", "1", "--em-iter", "1", "--quiet", "--no-plots",
                 "--drift-bias", "0", "--drift-stim", "0", "0.2"]) == 0
    summary = pd.read_csv(out / "forecast_summary.csv")
    assert set(summary["model"]) == {"glm_early_bias", "network_drift", "network_drift_recalibrated",
                                     "network_drift_stacked"}
    tuning = json.loads((out / "forecast_options.json").read_text())["tuning"]
    assert [t["fold"] for t in tuning] == [0, 1, 2, 3, 4] and all(t["model"] == "network_drift" for t in tuning)
    assert all(len(t["grid"]) == 2 for t in tuning) and all(t["sigma"]["bias"] == 0.0 for t in tuning)


def test_cli_forecast_drift_grid_options(cohort, tmp_path, capsys):
    from mouse_rl.cli import main
    from mouse_rl.forecast import run_forecast

    data = tmp_path / "cohort.parquet"
    cohort.drop(columns="marker").to_parquet(data)
    assert main(["forecast", str(data), "--out", str(tmp_path / "bad"), "--drift-bias", "0", "-0.5"]) == 2
    assert "--drift-bias: sds must be finite and >= 0, got -0.5" in capsys.readouterr().err
    for extra in (["--drift-stim", "0.1"], ["--drift-select", "stacked"]):  # would be ignored without network_drift
        assert main(["forecast", str(data), "--out", str(tmp_path / "bad"), "--models", "glm_early_bias", *extra]) == 2
        assert f"{extra[0]}: applies to --models network_drift" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sigma_grid: unknown group 'tail'"):
        run_forecast(cohort, models=["glm_early_bias"], drift_grid={"tail": [0.1]})


@pytest.mark.parametrize("select, chosen", [("own", 0.4), ("recalibrated", 0.1), ("stacked", 0.1)])
def test_drift_select_scores_the_named_variant(monkeypatch, select, chosen):
    """A forecast that is reversed but informative (sigma_stim 0.1) loses on its own predictive to chance
    (0.4) and wins once recalibrated or stacked: the selection scores the variant it names."""
    from mouse_rl.forecast import drift as D

    gen = np.random.default_rng(0)
    rows = pd.DataFrame({"mouse": np.repeat(["a", "b"], 200), "choice": gen.integers(0, 2, 400),
                         "contrastLeft": 0.0, "contrastRight": 0.0})

    def fake(self, model, schedule):
        return np.where(rows["choice"] == 1, 0.2, 0.8) if self.sigma["stim"] == 0.1 else np.full(len(rows), 0.5)

    monkeypatch.setattr(D.DriftForecaster, "_forecast", fake)
    fc = D.DriftForecaster(None, sigma_grid={"stim": (0.1, 0.4)}, select=select)
    fc._observed_context = pd.DataFrame({"mouse": ["a", "b"], "session": 1, "trial": 0, "signed_contrast": 0.5,
                                         "choice": 1})
    fc._reference_forecast(None, pd.DataFrame({"phase": ["horizon"] * len(rows)}), rows)
    assert fc.sigma == {"stim": chosen}
    with pytest.raises(ValueError, match="select: must be one of"):
        D.DriftForecaster(None, select="best")
