"""Issue 13, silent wrong results in loaders, validation and sweep configs are now clear errors."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mouse_rl.data import (
    DataFormatError, load_ibl_trials, load_signed_contrast_csv, load_trials, read_trials, validate_trials,
)
from mouse_rl.sweep.config import parse_config
from mouse_rl.sweep.points import expand_points


def ibl(n=6, **overrides) -> pd.DataFrame:
    df = pd.DataFrame({"contrastLeft": [0.5, np.nan, 0.25, np.nan, 0.5, np.nan][:n],
                       "contrastRight": [np.nan, 0.5, np.nan, 0.25, np.nan, 1.0][:n],
                       "choice": [1, -1, 1, -1, -1, 1][:n],  # IBL: +1 = Left, -1 = Right
                       "feedbackType": [1, 1, 1, 1, -1, -1][:n], "session": 1})
    return df.assign(**overrides)


def test_ibl_table_with_01_choices_is_refused():
    table = ibl(choice=[0, 1, 0, 1, 1, 0])
    with pytest.raises(DataFormatError, match=r"'choice' holds only \[0, 1\].*never -1.*0 = Left / 1 = Right"):
        load_ibl_trials(table, mouse="m")


def test_ibl_feedback_contradicting_stimulus_and_choice():
    assert load_ibl_trials(ibl(), mouse="m")["reward"].tolist() == [1, 1, 1, 1, 0, 0]
    flipped = ibl(feedbackType=[-1, -1, -1, -1, 1, 1])
    with pytest.raises(DataFormatError, match=r"'reward' contradicts stimulus and choice on 6 of 6.*reward_rule"):
        load_ibl_trials(flipped, mouse="m")
    df = load_ibl_trials(flipped, mouse="m", reward_rule="recorded")  # the user says the rule was different
    assert df["reward"].tolist() == [0, 0, 0, 0, 1, 1]
    validate_trials(df)  # the rule travels with the table (attrs) to later validation
    with pytest.raises(DataFormatError, match="contradicts"):
        validate_trials(df, reward_rule="stimulus")
    with pytest.raises(ValueError, match="reward_rule"):
        load_ibl_trials(ibl(), mouse="m", reward_rule="whatever")


def test_csv_reward_contradicting_stimulus_and_choice(tmp_path):
    table = pd.DataFrame({"signed_contrast": [-0.5, 0.25, 0.0], "choice": [0, 1, 1], "session": 1,
                          "reward": [0.0, 0.0, 1.0]})
    with pytest.raises(DataFormatError, match=r"contradicts stimulus and choice on 2 of 2"):
        load_signed_contrast_csv(table, mouse="m")
    table.to_csv(tmp_path / "m.csv", index=False)
    assert load_trials(tmp_path / "m.csv", reward_rule="recorded")["reward"].tolist() == [0.0, 0.0, 1.0]


def test_two_sided_ibl_contrasts_are_refused():
    with pytest.raises(DataFormatError, match=r"stimulus on both sides.*contrastLeft 0.5, contrastRight 0.5"):
        load_ibl_trials(ibl(contrastLeft=[0.5, 0.5, 0.25, np.nan, 0.5, np.nan],
                            contrastRight=[np.nan, 0.5, np.nan, 0.25, np.nan, 1.0]), mouse="m")


def test_infinite_contrast_is_not_called_percent():
    table = pd.DataFrame({"signed_contrast": [-0.5, np.inf], "choice": [0, 1], "session": 1})
    with pytest.raises(DataFormatError, match="infinite") as info:
        load_signed_contrast_csv(table, mouse="m")
    assert "percent" not in str(info.value)
    assert "(value inf)" in str(info.value)  # the number, not numpy's repr


def test_nan_mouse_id_is_reported_as_mouse():
    table = pd.DataFrame({"signed_contrast": [-0.5, 0.5], "choice": [0, 1], "session": 1, "mouse": ["a", None]})
    with pytest.raises(DataFormatError, match=r"'mouse' id is missing or empty"):
        load_signed_contrast_csv(table)


def test_empty_and_unreadable_tables(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"empty.csv: the file is empty"):
        load_trials(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("signed_contrast,choice,session\n")
    with pytest.raises(DataFormatError, match="no trials"):
        load_trials(tmp_path / "header.csv")
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataFormatError, match=r"fake.parquet: not a readable parquet file"):
        load_trials(tmp_path / "fake.parquet")
    pd.DataFrame({"x": []}).to_parquet(tmp_path / "none.parquet")
    with pytest.raises(DataFormatError, match="no trials"):
        read_trials(tmp_path / "none.parquet")


def test_model_columns_must_be_finite():
    table = pd.DataFrame({"mouse": "m", "session": 1, "trial": [0, 1], "signed_contrast": [0.5, -0.5],
                          "choice": [1, 0], "reward": [1.0, 1.0], "p_right": [0.5, 1.5]})
    with pytest.raises(DataFormatError, match=r"'p_right' must be a probability"):
        validate_trials(table, required=["mouse"])
    with pytest.raises(DataFormatError, match=r"'delta_tot' must be a finite number"):
        validate_trials(table.assign(p_right=0.5, delta_tot=[0.1, np.inf]), required=["mouse"])


def test_sweep_grid_over_two_contrasts_with_matching_probabilities():
    raw = {"sweep": {"mice": 2, "sessions": 1, "trials": 10},
           "grid": {"contrasts": [[-0.5, 0.5], [-0.25, 0.25]]}, "task": {"probabilities": [0.5, 0.5]}}
    points = expand_points(parse_config(raw))
    assert [p.task["contrasts"] for p in points] == [[-0.5, 0.5], [-0.25, 0.25]]
    raw["grid"]["contrasts"].append([-0.5, 0.0, 0.5])  # a point that does not match is still refused
    with pytest.raises(ValueError, match=r"probabilities.*at point contrasts"):
        expand_points(parse_config(raw))


@pytest.mark.parametrize("raw, key", [({}, "config"), ({"sweep": {}}, "config"),
                                      ({"sweep": {"seeds": [2**32]}}, "sweep.seeds[0]"),
                                      ({"sweep": {"n_seeds": 2**32 + 1}}, "sweep.n_seeds")])
def test_sweep_empty_config_and_seed_range(raw, key):
    with pytest.raises(ValueError, match=rf"^{re.escape(key)}: "):
        parse_config(raw)


def test_boolean_choice_column_reads_as_0_1_and_all_nan_is_named_once(tmp_path):
    table = pd.DataFrame({"mouse": "m", "session": 1, "trial": range(4), "signed_contrast": [-0.5, 0.5, 0.25, 0.0],
                          "choice": [False, True, False, True]})
    table.to_parquet(tmp_path / "bool.parquet")
    got = load_trials(tmp_path / "bool.parquet")
    assert got["choice"].tolist() == [0, 1, 0, 1] and got["choice"].dtype == np.int64
    table.assign(choice=np.nan).to_parquet(tmp_path / "nan.parquet")
    with pytest.raises(DataFormatError, match=r"'choice' has values \[nan\] outside"):
        load_trials(tmp_path / "nan.parquet")
