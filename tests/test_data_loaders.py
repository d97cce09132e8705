"""Tests of mouse_rl.data: loaders, validation and save/load against known truth."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mouse_rl.data import (
    TRIAL_COLUMNS,
    DataFormatError,
    load_ibl_trials,
    load_liebana2025,
    load_psytrax_npy,
    load_signed_contrast_csv,
    load_trials,
    read_trials,
    validate_session_lengths,
    validate_trials,
    write_trials,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIEBANA = SHARED_DATA / "liebana2025"
needs_real_data = pytest.mark.skipif(
    not LIEBANA.is_dir(), reason=f"real data folder {LIEBANA} absent (../shared beside the repo)"
)


def write_npy(path: Path, c, responses, session_lengths=None, times=None, t_nd=0.1, drop=()):
    data = {
        "inputs": {"c": np.asarray(c, float)},
        "responses": np.asarray(responses, float),
        "times": np.asarray(times if times is not None else np.full(len(c), 0.5), float),
        "t_nd": t_nd,
    }
    if session_lengths is not None:
        data["session_lengths"] = np.asarray(session_lengths, np.int64)
    for key in drop:
        data.pop(key)
    np.save(path, data, allow_pickle=True)
    return path


def tidy(**overrides) -> pd.DataFrame:
    """A valid 4-trial table: two sessions of one mouse."""
    df = pd.DataFrame({
        "mouse": "m1",
        "session": [1, 1, 2, 2],
        "trial": [0, 1, 0, 1],
        "contrastLeft": [0.5, 0.0, 0.0, 0.0],
        "contrastRight": [0.0, 0.25, 0.0, 1.0],
        "signed_contrast": [-0.5, 0.25, 0.0, 1.0],
        "choice": [0, 0, 1, 1],
        "reward": [1.0, 0.0, np.nan, 1.0],
        "feedbackType": [1.0, -1.0, np.nan, 1.0],
    })
    for col, value in overrides.items():
        df[col] = value
    return df


# --- validate_trials: each bad input gives its own error -------------------------------------


def test_valid_table_passes_and_is_returned():
    df = tidy()
    assert validate_trials(df) is df


def test_missing_required_column_is_named_with_columns_present():
    with pytest.raises(DataFormatError, match=r"missing required column 'choice'.*columns present: \[.*'mouse'"):
        validate_trials(tidy().drop(columns="choice"))


def test_nan_contrast_names_column_row_mouse_and_session():
    df = tidy()
    df.loc[2, "signed_contrast"] = np.nan
    with pytest.raises(DataFormatError, match=r"NaN in column\(s\) \['signed_contrast'\].*row 2 \(mouse 'm1', session 2\)"):
        validate_trials(df)


def test_choice_outside_allowed_set_shows_values_and_row():
    with pytest.raises(DataFormatError, match=r"'choice' has values \[-1, 2\].*row 0"):
        validate_trials(tidy(choice=[-1, 0, 2, 1]))


def test_percent_contrast_detected():
    df = tidy(signed_contrast=[-50.0, 25.0, 0.0, 100.0], contrastLeft=[50.0, 0, 0, 0], contrastRight=[0, 25.0, 0, 100.0])
    with pytest.raises(DataFormatError, match=r"contrastLeft.*looks like percent, divide by 100"):
        validate_trials(df)


def test_reward_and_feedback_checked():
    with pytest.raises(DataFormatError, match=r"'reward' has values \[0.5\]"):
        validate_trials(tidy(reward=[1.0, 0.5, np.nan, 1.0]))
    with pytest.raises(DataFormatError, match=r"feedbackType != 2 \* reward - 1"):
        validate_trials(tidy(feedbackType=[1.0, 1.0, np.nan, 1.0]))


def test_session_and_trial_numbering_checked():
    with pytest.raises(DataFormatError, match=r"'session' must be an integer >= 1.*got 0"):
        validate_trials(tidy(session=[0, 0, 1, 1]))
    with pytest.raises(DataFormatError, match=r"duplicate \(mouse, session, trial\)"):
        validate_trials(tidy(trial=[0, 0, 0, 1]))


def test_empty_session_and_wrong_sum_of_session_lengths():
    with pytest.raises(DataFormatError, match=r"session_lengths of mouse 'm1' has an empty session.*\[2\].*\[2, 0, 2\]"):
        validate_trials(tidy(), session_lengths=[2, 0, 2])
    with pytest.raises(DataFormatError, match=r"session_lengths of mouse 'm1' sum to 5 but the mouse has 4 trials"):
        validate_trials(tidy(), session_lengths={"m1": [3, 2]})
    with pytest.raises(DataFormatError, match=r"trials per session \[2, 2\] but session_lengths \[3, 1\]"):
        validate_trials(tidy(), session_lengths=[3, 1])
    with pytest.raises(DataFormatError, match=r"mouse 'm1' has empty session\(s\) \[2\]"):
        validate_trials(tidy(session=[1, 1, 3, 3]), contiguous_sessions=True)
    validate_trials(tidy(), session_lengths=[2, 2], contiguous_sessions=True)


def test_missing_session_lengths():
    with pytest.raises(DataFormatError, match=r"session lengths of mouse 'm1' are missing"):
        validate_session_lengths(None, 4, mouse="m1", source="x")
    with pytest.raises(DataFormatError, match=r"session lengths of mouse 'm1' are missing"):
        validate_trials(tidy(), session_lengths={"other": [4]})


# --- psytrax .npy ------------------------------------------------------------------------------


def test_psytrax_npy_known_values(tmp_path):
    path = write_npy(
        tmp_path / "M01_data.npy",
        c=[-0.5, 0.25, 0.0, 0.5, -0.25],
        responses=[0, 0, 1, 1, 1],
        session_lengths=[2, 3],
        times=[0.1, 0.2, 0.3, 0.4, 0.5],
        t_nd=0.15,
    )
    df = load_psytrax_npy(path)
    assert list(df.columns) == TRIAL_COLUMNS
    assert (df["mouse"] == "M01").all()
    assert df["session"].tolist() == [1, 1, 2, 2, 2]
    assert df["trial"].tolist() == [0, 1, 0, 1, 2]
    assert df["contrastLeft"].tolist() == [0.5, 0.0, 0.0, 0.0, 0.25]
    assert df["contrastRight"].tolist() == [0.0, 0.25, 0.0, 0.5, 0.0]
    assert df["choice"].tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(df["reward"], [1.0, 0.0, np.nan, 1.0, 0.0])
    np.testing.assert_array_equal(df["feedbackType"], [1.0, -1.0, np.nan, 1.0, -1.0])
    np.testing.assert_allclose(df["response_times"], [0.25, 0.35, 0.45, 0.55, 0.65])
    assert load_psytrax_npy(path, mouse="other")["mouse"].eq("other").all()


def test_psytrax_missing_session_lengths_rejected_then_single_block(tmp_path):
    path = write_npy(tmp_path / "DAPX_data.npy", c=[0.5, -0.5, 0.0], responses=[1, 1, 0])
    with pytest.raises(DataFormatError, match=r"DAPX_data.npy.*'session_lengths' is missing.*missing_sessions='single_block'") as err:
        load_psytrax_npy(path)
    assert not isinstance(err.value, KeyError)
    with pytest.warns(UserWarning, match="one unknown-session block"):
        df = load_psytrax_npy(path, missing_sessions="single_block")
    assert df["session"].tolist() == [1, 1, 1] and df["trial"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("key", ["inputs", "responses", "times", "t_nd"])
def test_psytrax_missing_key_named_with_file(tmp_path, key):
    path = write_npy(tmp_path / "M02_data.npy", c=[0.5], responses=[1], session_lengths=[1], drop=[key])
    with pytest.raises(DataFormatError, match=rf"M02_data.npy: key '{key}' is missing"):
        load_psytrax_npy(path)


def test_psytrax_missing_contrast_key_and_bad_arrays(tmp_path):
    path = tmp_path / "M03_data.npy"
    np.save(path, {"inputs": {}, "responses": np.ones(2), "times": np.ones(2), "t_nd": 0.1, "session_lengths": [2]})
    with pytest.raises(DataFormatError, match=r"M03_data.npy: key 'c' is missing from 'inputs'"):
        load_psytrax_npy(path)
    write_npy(path, c=[0.5, 0.5], responses=[1], session_lengths=[2])
    with pytest.raises(DataFormatError, match=r"arrays differ in length"):
        load_psytrax_npy(path)
    write_npy(path, c=[0.5, 0.5, 0.5], responses=[1, 1, 1], session_lengths=[2, 0, 1])
    with pytest.raises(DataFormatError, match=r"session_lengths of mouse 'M03' has an empty session"):
        load_psytrax_npy(path)
    write_npy(path, c=[0.5, 0.5, 0.5], responses=[1, 1, 1], session_lengths=[2, 2])
    with pytest.raises(DataFormatError, match=r"session_lengths of mouse 'M03' sum to 4 but the mouse has 3 trials"):
        load_psytrax_npy(path)
    write_npy(path, c=[50.0, -25.0], responses=[1, 0], session_lengths=[2])
    with pytest.raises(DataFormatError, match=r"looks like percent, divide by 100"):
        load_psytrax_npy(path)
    write_npy(path, c=[0.5, -0.25], responses=[1, 0.5], session_lengths=[2])
    with pytest.raises(DataFormatError, match=r"'choice' has values \[0.5\]"):
        load_psytrax_npy(path)


def test_liebana_folder_skips_or_raises_on_invalid(tmp_path):
    write_npy(tmp_path / "A_data.npy", c=[0.5, -0.5], responses=[1, 1], session_lengths=[1, 1])
    write_npy(tmp_path / "B_data.npy", c=[0.25], responses=[0], session_lengths=[1])
    write_npy(tmp_path / "BAD_data.npy", c=[0.25], responses=[0])
    with pytest.warns(UserWarning, match=r"skipped 1 invalid file\(s\) \['BAD'\]"):
        df = load_liebana2025(tmp_path)
    assert df["mouse"].tolist() == ["A", "A", "B"]
    with pytest.raises(DataFormatError, match="BAD_data.npy.*session_lengths"):
        load_liebana2025(tmp_path, skip_invalid=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_liebana2025(tmp_path, mice=["B"])["mouse"].tolist() == ["B"]
    with pytest.raises(DataFormatError, match=r"no \*_data.npy file for mice \['Z'\]"):
        load_liebana2025(tmp_path, mice=["Z"])
    with pytest.warns(UserWarning, match="missing_sessions='single_block'"):
        load_liebana2025(tmp_path)  # the warning says how to load BAD anyway
    with pytest.warns(UserWarning, match="one unknown-session block"):
        df = load_liebana2025(tmp_path, missing_sessions="single_block")
    assert df["mouse"].tolist() == ["A", "A", "B", "BAD"] and set(df.loc[df.mouse == "BAD", "session"]) == {1}
    with pytest.raises(ValueError, match="missing_sessions must be one of .* got 'maybe'"):
        load_liebana2025(tmp_path, missing_sessions="maybe")


# --- IBL ALF trials ---------------------------------------------------------------------------


def ibl_table(n=6, **overrides) -> pd.DataFrame:
    df = pd.DataFrame({
        "contrastLeft": np.full(n, np.nan),
        "contrastRight": np.resize([1.0, 0.25, 0.0625, 0.0], n),
        "choice": np.full(n, -1),
        "feedbackType": np.full(n, 1.0),
        "session": np.repeat([1, 2], [n // 2, n - n // 2]),
    })
    for col, value in overrides.items():
        df[col] = value
    return df


def test_ibl_all_right_stimuli_and_minus_one_choices_are_all_right():
    df = load_ibl_trials(ibl_table(feedbackType=np.nan), mouse="ibl1")
    assert (df["choice"] == 1).all()
    assert (df["contrastLeft"] == 0.0).all() and (df["signed_contrast"] >= 0).all()
    nonzero = df["signed_contrast"] != 0
    assert (df.loc[nonzero, "reward"] == 1.0).all()
    assert df.loc[~nonzero, "reward"].isna().all()
    assert (load_ibl_trials(ibl_table(), mouse="ibl1")["reward"] == 1.0).all()


def test_ibl_left_choice_and_feedback_mapping():
    df = load_ibl_trials(
        ibl_table(4, contrastLeft=[0.5, np.nan, 0.0, np.nan], contrastRight=[np.nan, 0.5, np.nan, 0.25],
                  choice=[1, 1, 1, -1], feedbackType=[1, -1, -1, 1]),
        mouse="m",
    )
    assert df["choice"].tolist() == [0, 0, 0, 1]
    assert df["signed_contrast"].tolist() == [-0.5, 0.5, 0.0, 0.25]
    assert df["reward"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert df["feedbackType"].tolist() == [1.0, -1.0, -1.0, 1.0]


def test_ibl_nogo_dropped_with_count_and_trials_renumbered():
    table = ibl_table(6, choice=[-1, 0, -1, 0, 0, 1], feedbackType=[1, 1, 1, 1, 1, -1])  # last: Left on a right stimulus
    with pytest.warns(UserWarning, match=r"dropped 3 of 6 rows \(no-go"):
        df = load_ibl_trials(table, mouse="m")
    assert len(df) == 3 and df["session"].tolist() == [1, 1, 2] and df["trial"].tolist() == [0, 1, 0]


def test_ibl_sessions_from_labels_or_single_with_warning():
    table = ibl_table(6).drop(columns="session").assign(session_id=["b", "b", "a", "a", "c", "c"])
    assert load_ibl_trials(table, mouse="m")["session"].tolist() == [1, 1, 2, 2, 3, 3]
    with pytest.warns(UserWarning, match="no session column"):
        df = load_ibl_trials(ibl_table(4).drop(columns="session"), mouse="m")
    assert df["session"].tolist() == [1] * 4 and df["trial"].tolist() == [0, 1, 2, 3]


def test_ibl_response_times_relative_to_stimulus_onset():
    table = ibl_table(2, response_times=[10.5, 20.25], stimOn_times=[10.0, 20.0])
    np.testing.assert_allclose(load_ibl_trials(table, mouse="m")["response_times"], [0.5, 0.25])


def test_ibl_errors():
    with pytest.raises(DataFormatError, match=r"'choice' has values \[2\].*row 1"):
        load_ibl_trials(ibl_table(3, choice=[-1, 2, 1]), mouse="m")
    with pytest.raises(DataFormatError, match=r"NaN in column\(s\) \['contrastLeft', 'contrastRight'.*row 0"):
        load_ibl_trials(ibl_table(2, contrastRight=[np.nan, 0.5]), mouse="m")
    with pytest.raises(DataFormatError, match=r"contrastRight.*looks like percent"):
        load_ibl_trials(ibl_table(2, contrastRight=[100.0, 25.0]), mouse="m")
    with pytest.raises(DataFormatError, match=r"missing required column 'contrastRight'"):
        load_ibl_trials(ibl_table(2).drop(columns="contrastRight"), mouse="m")
    with pytest.warns(UserWarning, match=r"no 'mouse' or 'subject' column"):
        assert (load_ibl_trials(ibl_table(2))["mouse"] == "mouse").all()  # ONE to_df() table


def test_ibl_from_parquet_and_csv_files(tmp_path):
    table = ibl_table(4).assign(subject="SW01")
    table.to_parquet(tmp_path / "t.parquet")
    table.to_csv(tmp_path / "t.csv", index=False)
    a = load_ibl_trials(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(a, load_ibl_trials(tmp_path / "t.csv"))
    assert (a["mouse"] == "SW01").all() and (a["choice"] == 1).all()


# --- signed-contrast CSV -----------------------------------------------------------------------


def signed_table(**overrides):
    df = pd.DataFrame({"signed_contrast": [-0.5, 0.25, 0.0], "choice": [0, 1, 1], "session": [1, 1, 2]})
    for col, value in overrides.items():
        df[col] = value
    return df


def test_signed_csv_from_file_mouse_from_stem(tmp_path):
    signed_table().to_csv(tmp_path / "mouseA.csv", index=False)
    df = load_signed_contrast_csv(tmp_path / "mouseA.csv")
    assert (df["mouse"] == "mouseA").all()
    assert df["contrastLeft"].tolist() == [0.5, 0.0, 0.0] and df["contrastRight"].tolist() == [0.0, 0.25, 0.0]
    np.testing.assert_array_equal(df["reward"], [1.0, 1.0, np.nan])
    assert df["trial"].tolist() == [0, 1, 0]


def test_signed_csv_pm1_needs_choice_convention():
    table = signed_table(choice=[-1, 1, 1])
    with pytest.raises(DataFormatError, match=r"'choice' has values \[-1\].*choice_convention='sign'"):
        load_signed_contrast_csv(table, mouse="m")
    assert load_signed_contrast_csv(table, mouse="m", choice_convention="sign")["choice"].tolist() == [0, 1, 1]
    assert load_signed_contrast_csv(table, mouse="m", choice_convention="ibl")["choice"].tolist() == [1, 0, 0]


def test_signed_csv_given_reward_trial_and_mouse_columns_and_sorting():
    table = signed_table(reward=[1.0, 1.0, 0.0], trial=[1, 0, 0], mouse=["x", "x", "w"])
    df = load_signed_contrast_csv(table)
    assert df[["mouse", "session", "trial"]].values.tolist() == [["w", 2, 0], ["x", 1, 0], ["x", 1, 1]]
    assert df["reward"].tolist() == [0.0, 1.0, 1.0]  # the given reward at c = 0 (derived would be NaN)


def test_signed_csv_errors():
    with pytest.raises(DataFormatError, match=r"missing required column 'session'"):
        load_signed_contrast_csv(signed_table().drop(columns="session"), mouse="m")
    with pytest.raises(DataFormatError, match=r"signed_contrast.*looks like percent, divide by 100"):
        load_signed_contrast_csv(signed_table(signed_contrast=[-50.0, 25.0, 0.0]), mouse="m")
    with pytest.raises(DataFormatError, match=r"NaN in column\(s\) \[.*'signed_contrast'\].*row 1 \(mouse 'm', session 1\)"):
        load_signed_contrast_csv(signed_table(signed_contrast=[-0.5, np.nan, 0.0]), mouse="m")


# --- dispatch and parquet round trip ----------------------------------------------------------


def test_load_trials_dispatch(tmp_path):
    write_npy(tmp_path / "N1_data.npy", c=[0.5], responses=[1], session_lengths=[1])
    assert load_trials(tmp_path / "N1_data.npy")["mouse"].tolist() == ["N1"]
    ibl_table(2).to_csv(tmp_path / "ibl.csv", index=False)
    assert load_trials(tmp_path / "ibl.csv")["choice"].tolist() == [1, 1]
    signed_table().to_parquet(tmp_path / "plain.parquet")
    assert load_trials(tmp_path / "plain.parquet")["choice"].tolist() == [0, 1, 1]
    assert load_trials(tmp_path)["mouse"].tolist() == ["N1"]
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataFormatError, match="unsupported file type"):
        load_trials(tmp_path / "x.json")


def test_write_read_round_trip_and_dispatch(tmp_path):
    df = load_signed_contrast_csv(signed_table(), mouse="m")
    path = write_trials(df, tmp_path / "trials.parquet")
    pd.testing.assert_frame_equal(read_trials(path), df)
    pd.testing.assert_frame_equal(load_trials(path), df)
    with pytest.raises(DataFormatError, match=r"'choice' has values \[2\]"):
        write_trials(df.assign(choice=2), tmp_path / "bad.parquet")


# --- real data (Liebana et al. 2025; ../shared/data/liebana2025) -------------------------------


@pytest.fixture(scope="module")
def liebana():
    with pytest.warns(UserWarning, match=r"skipped 1 invalid file\(s\) \['DAP044'\]"):
        return load_liebana2025(LIEBANA)


@needs_real_data
def test_real_cohort_counts(liebana):
    assert liebana["mouse"].nunique() == 25 and "DAP044" not in set(liebana["mouse"])
    n_sessions = liebana.groupby("mouse")["session"].max().sum()
    # README: "133,545 trials over 672 sessions" = all 26 files' trials but the 25 valid mice's sessions.
    assert len(liebana) == 133_025
    assert n_sessions == 672
    with pytest.warns(UserWarning, match="one unknown-session block"):
        dap044 = load_psytrax_npy(LIEBANA / "DAP044_data.npy", missing_sessions="single_block")
    assert len(dap044) == 520 and len(liebana) + len(dap044) == 133_545
    per_mouse = liebana.groupby("mouse").size()
    assert per_mouse.min() == 2535 and per_mouse.max() == 11411


@needs_real_data
def test_real_dap044_rejected_with_message():
    with pytest.raises(DataFormatError, match=r"DAP044_data.npy: key 'session_lengths' is missing"):
        load_psytrax_npy(LIEBANA / "DAP044_data.npy")
    with pytest.raises(DataFormatError, match="DAP044"):
        load_liebana2025(LIEBANA, skip_invalid=False)


@needs_real_data
def test_real_session_lengths_match_files(liebana):
    for mouse, trials in liebana.groupby("mouse"):
        raw = np.load(LIEBANA / f"{mouse}_data.npy", allow_pickle=True).item()
        lengths = trials.groupby("session").size()
        assert lengths.index.tolist() == list(range(1, len(raw["session_lengths"]) + 1))
        np.testing.assert_array_equal(lengths.to_numpy(), raw["session_lengths"])
        assert lengths.sum() == len(raw["responses"])
        np.testing.assert_array_equal(trials["signed_contrast"], raw["inputs"]["c"])
        np.testing.assert_array_equal(trials["choice"], raw["responses"])


@needs_real_data
def test_real_accuracy_early_and_late(liebana):
    # README ranges are rounded to 2 decimals (DAP039's first two sessions: 0.644).
    stim = liebana[liebana["signed_contrast"] != 0]
    correct = stim["choice"] == (stim["signed_contrast"] > 0).astype(int)
    assert (stim["reward"] == correct).all()
    n_sessions = liebana.groupby("mouse")["session"].transform("max").loc[stim.index]
    early = correct[stim["session"] <= 2].groupby(stim["mouse"]).mean().round(2)
    late = correct[stim["session"] > n_sessions - 2].groupby(stim["mouse"]).mean().round(2)
    assert len(early) == len(late) == 25
    assert early.between(0.43, 0.64).all(), early[~early.between(0.43, 0.64)]
    assert late.between(0.65, 0.92).all(), late[~late.between(0.65, 0.92)]
    assert (late > early).mean() == 1.0
    assert liebana.loc[liebana["signed_contrast"] == 0, "reward"].isna().all()
