"""IBL psychometric fit and trained_1a / trained_1b on hand-made tables with known psychometric parameters."""
import numpy as np
import pandas as pd
import pytest

from mouse_rl.analysis.psychometric_fit import PLOTTING_BOX, erf_psychometric, fit_psychometric, fit_psychometric_counts
from mouse_rl.analysis.training_criteria import (
    TRAINED_1A,
    TRAINED_1B,
    evaluate_criterion,
    session_summary,
    sessions_to_trained,
    training_status,
)

ALL = np.array([-1, -0.5, -0.25, -0.125, -0.0625, 0, 0.0625, 0.125, 0.25, 0.5, 1.0])
GOOD = (3.0, 12.0, 0.04, 0.04)  # bias %, threshold %, lapse_low, lapse_high: passes 1a and 1b
NAIVE = (0.0, 80.0, 0.3, 0.3)


def make_session(rng, mouse, session, n, pars, contrasts=ALL, rt=None):
    """n trials, contrasts in equal numbers (shuffled), choices drawn from the erf psychometric."""
    c = rng.permutation(np.resize(contrasts, n))
    choice = (rng.random(n) < erf_psychometric(c * 100, *pars)).astype(int)
    side = np.where(c == 0, rng.random(n) < 0.5, c > 0)
    out = pd.DataFrame({"mouse": mouse, "session": session, "trial": np.arange(n), "signed_contrast": c,
                        "choice": choice, "reward": (choice == side).astype(float)})
    if rt is not None:
        out["response_times"] = rt
    return out


def history(mouse, sessions, seed=0):
    """sessions: list of (n_trials, pars) per session."""
    rng = np.random.default_rng(seed)
    return pd.concat([make_session(rng, mouse, i + 1, n, p) for i, (n, p) in enumerate(sessions)], ignore_index=True)


def assert_close(fit, truth, tolerance):
    got = np.array([fit["bias"], fit["threshold"], fit["lapse_low"], fit["lapse_high"]])
    assert (np.abs(got - np.array(truth)) <= np.array(tolerance)).all(), (got, truth)


def test_erf_psychometric_is_psychofits_erf_psycho_2gammas():
    bias, thr, lo, hi = 10.0, 20.0, 0.1, 0.2
    assert erf_psychometric(bias, bias, thr, lo, hi) == pytest.approx((1 + lo - hi) / 2)
    assert erf_psychometric(-1e4, bias, thr, lo, hi) == pytest.approx(lo)
    assert erf_psychometric(1e4, bias, thr, lo, hi) == pytest.approx(1 - hi)
    # erf((c - bias) / threshold) without sqrt(2): one threshold above the bias, erf(1) = 0.8427
    assert erf_psychometric(bias + thr, bias, thr, 0, 0) == pytest.approx((1 + 0.8427008) / 2, abs=1e-6)


@pytest.mark.parametrize("truth", [(-8.0, 15.0, 0.08, 0.04), (12.0, 25.0, 0.15, 0.02)])
def test_fit_recovers_known_parameters_from_expected_counts(truth):
    x = ALL * 100
    p = erf_psychometric(x, *truth)
    fit = fit_psychometric_counts(x, np.full(x.size, 10_000), p)
    assert_close(fit, truth, [0.3, 0.3, 0.005, 0.005])


def test_fit_recovers_known_parameters_from_simulated_choices():
    truth = (-6.0, 16.0, 0.1, 0.05)
    trials = make_session(np.random.default_rng(1), "m", 1, 44_000, truth)
    fit = fit_psychometric(trials)
    assert_close(fit, truth, [1.0, 1.5, 0.015, 0.015])
    plot_fit = fit_psychometric(trials, box=PLOTTING_BOX)
    assert plot_fit["threshold"] == pytest.approx(truth[1], abs=1.5)


def test_fit_input_errors_name_the_field():
    with pytest.raises(ValueError, match="p_right"):
        fit_psychometric_counts([0, 50], [10, 10], [0.5, 1.5])
    with pytest.raises(ValueError, match="contrasts_pct"):
        fit_psychometric_counts([0, 500], [10, 10], [0.5, 0.5])
    with pytest.raises(ValueError, match="choice"):
        fit_psychometric(pd.DataFrame({"signed_contrast": [0.5], "choice": [-1]}))


def test_criterion_decisions_on_known_psychometrics():
    mice = {
        "good_long": [(600, GOOD)] * 3,  # 1b
        "good_short": [(300, GOOD)] * 3,  # 1a only: 1b needs > 400 trials per session
        "steep_biased": [(600, (13.0, 10.0, 0.04, 0.04))] * 3,  # |bias| 13: passes 1a (< 16) not 1b (< 10)
        "lapsy": [(600, (0.0, 12.0, 0.13, 0.13))] * 3,  # lapses 0.13: 1a (< 0.2) not 1b (< 0.1)
        "shallow": [(600, (0.0, 35.0, 0.04, 0.04))] * 3,  # threshold 35 > 19 and > 20
        "very_biased": [(600, (30.0, 12.0, 0.04, 0.04))] * 3,  # |bias| 30 > 16
    }
    table = pd.concat([history(m, s, seed=i) for i, (m, s) in enumerate(mice.items())], ignore_index=True)
    status = training_status(table).query("session == 3").set_index("mouse")["status"]
    assert status.to_dict() == {
        "good_long": "trained 1b", "good_short": "trained 1a", "steep_biased": "trained 1a",
        "lapsy": "trained 1a", "shallow": "in training", "very_biased": "in training",
    }


def test_window_is_the_last_three_sessions_and_sessions_to_trained():
    table = history("m", [(500, NAIVE), (500, NAIVE), (500, GOOD), (500, GOOD), (500, GOOD), (500, GOOD)])
    status = training_status(table)
    assert status["window"].tolist() == [1, 2, 3, 3, 3, 3]
    assert status["status"].tolist() == ["in training"] * 4 + ["trained 1b"] * 2
    result = sessions_to_trained(table)
    assert result.to_dict("records") == [{"mouse": "m", "n_sessions": 6, "trained": True, "sessions_to_trained": 5.0}]
    never = sessions_to_trained(history("n", [(500, NAIVE)] * 4))
    assert not never["trained"].iloc[0] and np.isnan(never["sessions_to_trained"].iloc[0])


def test_trial_minimum_is_strict_and_per_session():
    ok = history("ok", [(201, GOOD), (250, GOOD), (201, GOOD)], seed=3)
    short = pd.concat([ok[ok["session"] != 2], history("ok", [(250, GOOD), (200, GOOD)], seed=3).query("session == 2")])
    assert training_status(ok)["trained_1a"].iloc[-1]
    assert not training_status(short.assign(mouse="short"))["trained_1a"].iloc[-1]


def test_zero_contrast_is_required():
    rng = np.random.default_rng(4)
    no_zero = pd.concat([make_session(rng, "m", s, 500, GOOD, contrasts=ALL[ALL != 0]) for s in (1, 2, 3)])
    result = evaluate_criterion(no_zero, TRAINED_1A)
    assert not result["passed"] and result["checks"]["zero_contrast"] is False


def test_median_zero_contrast_rt_rule_of_1b():
    table = history("m", [(500, GOOD)] * 3, seed=5)
    slow = table.assign(response_times=np.where(table["signed_contrast"] == 0, 2.5, 0.4))
    fast = table.assign(response_times=np.where(table["signed_contrast"] == 0, 1.5, 3.0))
    assert training_status(slow)["status"].iloc[-1] == "trained 1a"
    assert training_status(fast)["status"].iloc[-1] == "trained 1b"
    assert training_status(table)["status"].iloc[-1] == "trained 1b"  # no RTs: rule skipped
    assert training_status(table, require_rt=True)["status"].iloc[-1] == "trained 1a"  # ibllib: NaN fails
    assert evaluate_criterion(slow, TRAINED_1B)["median_rt_zero"] == pytest.approx(2.5)


def test_session_summary_columns_and_easy_accuracy():
    table = pd.DataFrame({"mouse": "m", "session": 1, "signed_contrast": [-1, 0.5, 0.25, 0.0],
                          "choice": [0, 0, 1, 1], "reward": [1.0, 0.0, 1.0, np.nan]})
    row = session_summary(table).iloc[0]
    assert row["n_trials"] == 4 and row["perf_easy"] == 0.5 and row["has_zero"]
    assert np.isnan(row["median_rt_zero"])


def test_input_errors():
    with pytest.raises(ValueError, match="reward"):
        training_status(pd.DataFrame({"mouse": ["m"], "session": [1], "signed_contrast": [0.5], "choice": [1]}))
    with pytest.raises(ValueError, match="criterion"):
        sessions_to_trained(history("m", [(50, GOOD)]), criterion="trained_2")
    with pytest.raises(ValueError, match="one mouse"):
        evaluate_criterion(pd.concat([history("a", [(50, GOOD)]), history("b", [(50, GOOD)])]))
