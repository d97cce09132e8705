"""Tests of mouse_rl.analysis and mouse_rl.strategy against hand-computed truth."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mouse_rl.analysis import (
    BIAS_ONLY,
    EXPERT,
    L_ONLY,
    R_ONLY,
    STRATEGY_NAMES,
    MissingTrialsWarning,
    cohort_correlations,
    early_late_metrics,
    label_learner_side,
    plot_early_late,
    plot_learning_curves,
    plot_psychometrics,
    psychometric,
    session_metrics,
    stimulus_strength,
    strategy_from_behaviour,
    strategy_from_weights_table,
    strategy_of,
    wilson_interval,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "liebana2025"


def make_trials(blocks):
    """blocks: list of (mouse, session, [(signed_contrast, choice), ...])."""
    rows = []
    for mouse, session, pairs in blocks:
        for t, (c, ch) in enumerate(pairs):
            rows.append({"mouse": mouse, "session": session, "trial": t,
                         "contrastLeft": max(-c, 0.0), "contrastRight": max(c, 0.0),
                         "signed_contrast": c, "choice": ch,
                         "reward": np.nan, "feedbackType": np.nan})
    return pd.DataFrame(rows)


# session 1: 4 left trials (1 Right choice), 2 zero (1 Right), 4 right at c=.25 (3 Right)
S1 = ([(-0.5, 0)] * 3 + [(-0.5, 1)] + [(0.0, 1), (0.0, 0)]
      + [(0.25, 1)] * 3 + [(0.25, 0)])
# session 2: 4 left (0 Right), 4 zero (3 Right), 2 right (2 Right)
S2 = [(-0.25, 0)] * 4 + [(0.0, 1)] * 3 + [(0.0, 0)] + [(0.5, 1)] * 2


@pytest.fixture
def hand_trials():
    # rows deliberately out of order; reward all NaN so it cannot be used
    return make_trials([("m2", 2, S2), ("m2", 1, S1)]).sample(frac=1.0, random_state=0)


# ---------------------------------------------------------------- session_metrics
def test_session_metrics_hand_computed(hand_trials):
    out = session_metrics(hand_trials)
    assert list(out["session"]) == [1, 2]
    s1, s2 = out.iloc[0], out.iloc[1]
    assert s1["n_trials"] == 10 and s2["n_trials"] == 10
    # session 1: 6 of 8 non-zero trials correct
    assert s1["accuracy"] == pytest.approx(0.75)
    assert s1[["p_right_left", "p_right_zero", "p_right_right"]].tolist() == pytest.approx([0.25, 0.5, 0.75])
    assert s1[["bias", "left_slope", "right_slope", "slope_diff"]].tolist() == pytest.approx([0, 0.25, 0.25, 0])
    # session 2: all 6 non-zero trials correct, P(R|0) = 3/4
    assert s2["accuracy"] == pytest.approx(1.0)
    assert s2[["p_right_left", "p_right_zero", "p_right_right"]].tolist() == pytest.approx([0, 0.75, 1])
    assert s2[["bias", "left_slope", "right_slope", "slope_diff"]].tolist() == pytest.approx([0.25, 0.75, 0.25, -0.5])


def test_session_metrics_use_model():
    trials = make_trials([("a", 1, [(-0.5, 0), (-0.5, 0), (0.0, 1), (0.5, 1)])])
    trials["p_right"] = [0.2, 0.4, 0.6, 0.9]
    out = session_metrics(trials, use_model=True).iloc[0]
    # p_correct = 0.8, 0.6, 0.9 -> mean 2.3 / 3
    assert out["accuracy"] == pytest.approx(2.3 / 3)
    assert out["p_right_left"] == pytest.approx(0.3)
    assert out["bias"] == pytest.approx(0.1)
    assert out["left_slope"] == pytest.approx(0.3)
    assert out["right_slope"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="p_right"):
        session_metrics(trials.drop(columns="p_right"), use_model=True)


def test_session_metrics_no_zero_contrast_warns():
    trials = make_trials([("mx", 7, [(-0.5, 0), (0.5, 0)]), ("mx", 8, S1)])
    with pytest.warns(MissingTrialsWarning, match=r"midpoint.*mouse 'mx' session 7"):
        out = session_metrics(trials)
    s7 = out.iloc[0]
    assert s7["accuracy"] == pytest.approx(0.5)
    assert s7[["p_right_left", "p_right_right"]].tolist() == [0.0, 0.0]
    # no zero contrast: P(R|0) replaced by the midpoint (0 + 0) / 2; the side split is undefined
    assert s7["metric_definition"] == "midpoint"
    assert s7[["bias", "left_slope", "right_slope"]].tolist() == pytest.approx([-0.5, 0.0, 0.0])
    assert np.isnan(s7[["p_right_zero", "slope_diff"]].astype(float)).all()
    assert out.iloc[1].notna().all() and out.iloc[1]["metric_definition"] == "zero"


def test_strategy_defined_before_zero_contrast_appears():
    """An IBL-like early session (100 % and 50 % only, 85 % correct) is 'expert' by the midpoint definition."""
    from mouse_rl.strategy import strategy_from_behaviour

    rows = [(c, int(c > 0) if i % 20 else int(c < 0)) for i in range(40) for c in (-1.0, -0.5, 0.5, 1.0)]
    trials = make_trials([("ibl", 1, rows), ("ibl", 2, [(-1.0, 0), (0.0, 1), (0.0, 0), (1.0, 1)]), ("ibl", 3, [(1.0, 1)])])
    with pytest.warns(MissingTrialsWarning):
        out = session_metrics(trials)
    labels = strategy_from_behaviour(out)
    assert out["metric_definition"].tolist() == ["midpoint", "zero", "undefined"]
    assert out.iloc[0]["accuracy"] == pytest.approx(0.95) and out.iloc[0]["bias"] == pytest.approx(0.0)
    assert labels["strategy_name"].tolist()[:2] == ["expert", "expert"] and pd.isna(labels["strategy_name"].iloc[2])
    assert labels["strategy_definition"].tolist() == ["midpoint", "zero", "undefined"]
    assert np.isnan(out.iloc[2][["bias", "left_slope", "right_slope"]].astype(float)).all()


def test_session_metrics_complete_table_does_not_warn(hand_trials):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session_metrics(hand_trials)


@pytest.mark.parametrize("column", ["mouse", "session", "signed_contrast", "choice"])
def test_session_metrics_missing_column(hand_trials, column):
    with pytest.raises(ValueError, match=column):
        session_metrics(hand_trials.drop(columns=column))


def test_session_metrics_empty_and_bad_choice(hand_trials):
    with pytest.raises(ValueError, match="empty"):
        session_metrics(hand_trials.iloc[:0])
    bad = hand_trials.copy()
    bad.loc[bad.index[0], "choice"] = -1  # IBL sign convention leaking in
    with pytest.raises(ValueError, match="choice"):
        session_metrics(bad)


# ---------------------------------------------------------------- psychometric
def test_wilson_interval_closed_form():
    z = 1.959963984540054
    # k = 0: lower 0, upper z^2 / (n + z^2)
    low, high = wilson_interval(0, 5)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(z**2 / (5 + z**2))
    # k = 1, n = 4 (textbook value 0.0456 .. 0.6994)
    low, high = wilson_interval(1, 4)
    assert (float(low), float(high)) == pytest.approx((0.04559, 0.69936), abs=1e-4)
    # k = n / 2: symmetric about 1/2, half-width z sqrt(n/4 + z^2/4) / (n + z^2)
    low, high = wilson_interval(10, 20)
    half = z * np.sqrt(20 / 4 + z**2 / 4) / (20 + z**2)
    assert (float(low), float(high)) == pytest.approx((0.5 - half, 0.5 + half))


def test_psychometric_hand_computed(hand_trials):
    out = psychometric(hand_trials)
    assert list(out.columns) == ["mouse", "session", "signed_contrast", "n", "p_right",
                                 "ci_low", "ci_high"]
    s1 = out[out["session"] == 1].set_index("signed_contrast")
    assert s1.loc[-0.5, "n"] == 4 and s1.loc[-0.5, "p_right"] == pytest.approx(0.25)
    assert s1.loc[0.0, "n"] == 2 and s1.loc[0.0, "p_right"] == pytest.approx(0.5)
    assert s1.loc[0.25, "p_right"] == pytest.approx(0.75)
    assert (s1.loc[-0.5, "ci_low"], s1.loc[-0.5, "ci_high"]) == pytest.approx((0.04559, 0.69936), abs=1e-4)
    pooled = psychometric(hand_trials, by=())
    assert pooled.set_index("signed_contrast").loc[0.0, "n"] == 6
    assert pooled.set_index("signed_contrast").loc[0.0, "p_right"] == pytest.approx(4 / 6)
    assert (out["ci_low"] <= out["p_right"]).all() and (out["p_right"] <= out["ci_high"]).all()


# ---------------------------------------------------------------- early / late
def synthetic_sessions():
    rows = []
    for s in range(1, 13):
        rows.append({"mouse": "A", "session": s, "accuracy": 0.5 + 0.03 * (s - 1),
                     "bias": 0.01 * s, "left_slope": 0.1, "right_slope": 0.4})
        rows.append({"mouse": "B", "session": s, "accuracy": 0.6,
                     "bias": -0.2 if s <= 8 else 0.1, "left_slope": 0.3, "right_slope": 0.3})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1)


def test_early_late_hand_computed():
    out = early_late_metrics(synthetic_sessions()).set_index("mouse")
    a, b = out.loc["A"], out.loc["B"]
    assert a["n_sessions"] == 12
    assert a["early_bias"] == pytest.approx(0.06)  # mean of .04 .. .08
    assert a["late_bias"] == pytest.approx(0.10)  # sessions 8..12
    assert a["late_accuracy"] == pytest.approx(np.mean([0.5 + 0.03 * (s - 1) for s in range(8, 13)]))
    assert a["first_session_accuracy"] == pytest.approx(0.5)
    assert a["sessions_to_70"] == 8  # 0.5 + 0.03 * 7 = 0.71
    assert a["late_slope_diff"] == pytest.approx(0.3)
    assert a["learner_side"] == "right" and a["late_strategy"] == "R-only"
    assert b["early_bias"] == pytest.approx(-0.2)
    assert b["late_bias"] == pytest.approx((-0.2 + 4 * 0.1) / 5)
    assert np.isnan(b["sessions_to_70"])
    assert b["learner_side"] == "balanced" and b["late_strategy"] == "expert"


def test_early_late_too_few_sessions_names_mouse():
    short = pd.DataFrame({"mouse": "shorty", "session": range(1, 7), "accuracy": 0.6,
                          "bias": 0.0, "left_slope": 0.1, "right_slope": 0.1})
    table = pd.concat([synthetic_sessions(), short])
    with pytest.raises(ValueError, match="shorty"):
        early_late_metrics(table)
    with pytest.raises(ValueError, match="left_slope"):
        early_late_metrics(synthetic_sessions().drop(columns="left_slope"))


def test_cohort_correlations_match_numpy():
    rng = np.random.default_rng(3)
    early = rng.normal(size=12)
    table = pd.DataFrame({"mouse": range(12), "early_bias": early,
                          "late_slope_diff": 0.7 * early + rng.normal(size=12),
                          "late_bias": -0.5 * early + rng.normal(size=12)})
    out = cohort_correlations(table).set_index("y")
    assert out.loc["late_slope_diff", "r"] == pytest.approx(np.corrcoef(early, table["late_slope_diff"])[0, 1])
    assert out.loc["late_bias", "r"] == pytest.approx(np.corrcoef(early, table["late_bias"])[0, 1])
    assert (out["n"] == 12).all() and ((out["p"] > 0) & (out["p"] < 1)).all()


def test_label_learner_side():
    values = np.array([-0.3, -0.1, 0.0, 0.1, 0.11, np.nan])
    labels = label_learner_side(values)
    assert list(labels[:5]) == ["left", "balanced", "balanced", "balanced", "right"]
    assert pd.isna(labels[5])
    assert label_learner_side(0.2) == "right"
    assert label_learner_side(0.2, threshold=0.25) == "balanced"
    series = label_learner_side(pd.Series([-0.5, 0.5], index=["x", "y"]))
    assert series.to_dict() == {"x": "left", "y": "right"}


def test_learner_side_vocabulary_has_one_owner():
    """Issue 14: LEARNER_SIDES lives in analysis.metrics; the sweep summary and the demo import it."""
    from mouse_rl.analysis import metrics
    from mouse_rl.cli import demo
    from mouse_rl.sweep import summary

    assert set(label_learner_side(np.array([-1.0, 0.0, 1.0]))) == set(metrics.LEARNER_SIDES)
    assert summary.LEARNER_SIDES is metrics.LEARNER_SIDES and demo.LEARNER_SIDES is metrics.LEARNER_SIDES
    assert [f"n_{side}" for side in metrics.LEARNER_SIDES] == [c for c in summary.METRIC_COLUMNS
                                                              if c in ("n_left", "n_balanced", "n_right")]


# ---------------------------------------------------------------- strategy
def hand_weights():
    """Weights for bias-only, L-only, R-only, expert (in that order)."""
    a = np.array([[0.05, 0.05, 1.0], [1.0, 0.05, 1.0], [0.05, 1.0, 1.0], [1.0, 0.9, 1.0]])
    U = np.full((4, 2, 3), 0.2)
    U[:, :, 2] = [0.1, 0.3]  # bias column: irrelevant to strategy
    U[1, 0, 0], U[1, 1, 0] = 0.8, 0.2  # w_L = 0.6
    U[2, 1, 1], U[2, 0, 1] = 0.7, 0.1  # w_R = 0.6
    U[3, 0, 0], U[3, 1, 0] = 0.6, 0.1  # w_L = 0.5
    U[3, 1, 1], U[3, 0, 1] = 0.5, 0.1  # w_R = 0.9 * 0.4 = 0.36
    return a, U


def test_strategy_of_hand_picked_numpy_and_torch():
    torch = pytest.importorskip("torch")
    a, U = hand_weights()
    w_left, w_right = stimulus_strength(a, U)
    assert w_left == pytest.approx([0, 0.6, 0, 0.5])
    assert w_right == pytest.approx([0, 0, 0.6, 0.36])
    codes = strategy_of(a, U)
    assert codes.tolist() == [BIAS_ONLY, L_ONLY, R_ONLY, EXPERT] == [0, 1, 2, 3]
    assert [STRATEGY_NAMES[c] for c in codes] == ["bias-only", "L-only", "R-only", "expert"]
    # a threshold above 0.36 drops the expert's right association
    assert strategy_of(a, U, threshold=0.4).tolist() == [0, 1, 2, 1]
    # torch, batched with two leading dims, same codes
    at, Ut = torch.tensor(a).reshape(2, 2, 3), torch.tensor(U).reshape(2, 2, 2, 3)
    codes_t = strategy_of(at, Ut)
    assert isinstance(codes_t, torch.Tensor) and codes_t.dtype == torch.int64
    assert codes_t.shape == (2, 2) and codes_t.flatten().tolist() == codes.tolist()
    if torch.cuda.is_available():
        assert strategy_of(at.cuda(), Ut.cuda()).cpu().flatten().tolist() == codes.tolist()


def test_strategy_from_weights_table():
    a, U = hand_weights()
    df = pd.DataFrame(np.hstack([a, U.reshape(4, 6)]),
                      columns=["a_L", "a_R", "a_b", "U_LL", "U_LR", "U_Lb", "U_RL", "U_RR", "U_Rb"])
    df.insert(0, "mouse", ["m0", "m1", "m2", "m3"])
    out = strategy_from_weights_table(df)
    assert out["strategy"].tolist() == [0, 1, 2, 3]
    assert out["strategy_name"].tolist() == list(STRATEGY_NAMES)
    assert out["mouse"].tolist() == ["m0", "m1", "m2", "m3"]
    with pytest.raises(ValueError, match="U_RR"):
        strategy_from_weights_table(df.drop(columns="U_RR"))


def test_strategy_from_behaviour():
    table = pd.DataFrame({"mouse": "m", "session": [1, 2, 3, 4, 5],
                          "left_slope": [0.05, 0.5, 0.1, 0.3, np.nan],
                          "right_slope": [0.1, 0.0, 0.45, 0.25, 0.3]})
    out = strategy_from_behaviour(table)
    assert out["strategy"].iloc[:4].tolist() == [BIAS_ONLY, L_ONLY, R_ONLY, EXPERT]
    assert pd.isna(out["strategy"].iloc[4]) and pd.isna(out["strategy_name"].iloc[4])
    assert out["strategy_name"].iloc[1] == "L-only"


# ---------------------------------------------------------------- plots
def test_plots_return_figures_without_pyplot_state(hand_trials):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    before = plt.get_fignums()
    sessions = session_metrics(hand_trials)
    rng = np.random.default_rng(0)
    early_late = pd.DataFrame({"early_bias": rng.normal(size=8),
                               "late_slope_diff": rng.normal(scale=0.3, size=8)})
    figs = [plot_learning_curves(sessions), plot_psychometrics(hand_trials),
            plot_psychometrics(hand_trials, sessions=[1, (1, 2)]), plot_early_late(early_late)]
    for fig in figs:
        assert isinstance(fig, Figure)
        fig.savefig(io.BytesIO(), format="png")
    assert figs[-1].axes[0].get_title().startswith("r = ")
    assert plt.get_fignums() == before


# ---------------------------------------------------------------- real data
@pytest.mark.skipif(not (DATA / "DAP007_data.npy").exists(), reason="shared real data absent")
def test_real_mouse_dap007_accuracy_range():
    d = np.load(DATA / "DAP007_data.npy", allow_pickle=True).item()
    c = np.asarray(d["inputs"]["c"], dtype=float)
    lengths = np.asarray(d["session_lengths"])
    session = np.repeat(np.arange(1, len(lengths) + 1), lengths)
    trial = np.concatenate([np.arange(n) for n in lengths])
    trials = pd.DataFrame({"mouse": "DAP007", "session": session, "trial": trial,
                           "contrastLeft": np.maximum(-c, 0), "contrastRight": np.maximum(c, 0),
                           "signed_contrast": c, "choice": d["responses"].astype(int)})
    sessions = session_metrics(trials)
    assert len(sessions) == len(lengths)
    assert 0.43 <= sessions["accuracy"].iloc[:2].mean() <= 0.64
    assert 0.65 <= sessions["accuracy"].iloc[-2:].mean() <= 0.92
    summary = early_late_metrics(sessions).iloc[0]
    assert summary["late_accuracy"] > summary["first_session_accuracy"]


def test_late_slopes_skip_sessions_without_zero_contrast():
    """A late session without zero contrast (midpoint definition) does not pull late_slope_diff towards 0."""
    from mouse_rl.analysis import early_late_metrics

    one_sided = [(-0.5, 0), (-0.5, 0), (0.0, 0), (0.0, 0), (0.5, 0), (0.5, 1)]  # left learned, bias to Left
    blocks = [("m", s, one_sided) for s in range(1, 9)] + [("m", 9, [(-0.5, 0), (0.5, 1)])]
    with pytest.warns(MissingTrialsWarning):
        st = session_metrics(make_trials(blocks))
    el = early_late_metrics(st, early=(4, 8), late_n=5)
    assert el["late_slope_diff"].iloc[0] == pytest.approx(0.5)  # the zero-contrast sessions' 0.5 - 0
    assert el["late_bias"].iloc[0] == pytest.approx((4 * -0.5 + 0.0) / 5)  # bias: every late session
