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
