"""Issue 13, property-based fuzzing of the loaders: random bytes and random tables give either a valid
trial table or a DataFormatError / CheckpointError naming the file, never another exception."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mouse_rl.checkpoint import CheckpointError, load_checkpoint
from mouse_rl.data import (
    DataFormatError, load_ibl_trials, load_psytrax_npy, load_signed_contrast_csv, load_trials, validate_trials,
)

#: Examples per property (``MOUSE_RL_FUZZ_EXAMPLES=2000`` for a long local run).
FUZZ = settings(max_examples=int(os.environ.get("MOUSE_RL_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _write(suffix: str, data: bytes) -> Path:
    fh = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    fh.write(data)
    fh.close()
    return Path(fh.name)


def _object_npy_header() -> bytes:
    buf = io.BytesIO()
    np.save(buf, {"x": 1}, allow_pickle=True)
    data = buf.getvalue()
    return data[: data.index(b"\n") + 1]  # magic + header of a 0-d object array


#: A real psytrax-like file, for mutations.
_GOOD = io.BytesIO()
np.save(_GOOD, {"inputs": {"c": np.array([-0.5, 0.0, 0.5])}, "responses": np.array([0.0, 1.0, 1.0]),
                "times": np.full(3, 0.2), "t_nd": 0.1, "session_lengths": np.array([3])}, allow_pickle=True)
GOOD_NPY = _GOOD.getvalue()


def assert_valid_table(df: pd.DataFrame) -> None:
    validate_trials(df)
    assert set(df["choice"].unique()) <= {0, 1}
    assert ((df["contrastLeft"] >= 0) & (df["contrastLeft"] <= 1)).all()
    assert not ((df["contrastLeft"] > 0) & (df["contrastRight"] > 0)).any()


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), st.binary(max_size=2000).map(lambda b: _object_npy_header() + b)))
def test_random_bytes_as_npy(data):
    path = _write(".npy", data)
    try:
        load_psytrax_npy(path, mouse="m")
    except DataFormatError as err:
        assert str(path) in str(err)
    finally:
        path.unlink()


@FUZZ
@given(position=st.integers(0, len(GOOD_NPY) - 1), value=st.integers(0, 255), cut=st.booleans())
def test_mutated_npy(position, value, cut):
    data = bytearray(GOOD_NPY)
    data[position] = value
    path = _write(".npy", bytes(data[:position] if cut else data))
    try:
        assert_valid_table(load_psytrax_npy(path, mouse="m"))
    except DataFormatError as err:
        assert str(path) in str(err)
    finally:
        path.unlink()


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes_as_checkpoint(data):
    path = _write(".ckpt", data)
    try:
        load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
    finally:
        path.unlink()


@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".csv", ".parquet"]))
def test_random_bytes_as_table_file(data, suffix):
    path = _write(suffix, data)
    try:
        assert_valid_table(load_trials(path))
    except DataFormatError as err:
        assert str(path) in str(err)
    finally:
        path.unlink()


CELL = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
                 st.sampled_from([0.0, 0.25, 0.5, 1.0, -0.5, -1.0, 100.0]), st.text(max_size=3))
SIGNED_COLUMNS = ["signed_contrast", "choice", "session", "reward", "trial", "mouse", "response_times"]
IBL_COLUMNS = ["contrastLeft", "contrastRight", "choice", "feedbackType", "session", "subject", "stimOn_times"]


@st.composite
def tables(draw, columns):
    n = draw(st.integers(0, 8))
    chosen = draw(st.lists(st.sampled_from(columns), unique=True, min_size=1))
    data = {}
    for col in chosen:
        if draw(st.booleans()):  # mostly sensible values, so validation gets past the first checks
            pool = {"choice": [-1, 0, 1], "session": [1, 2], "trial": [0, 1, 2], "reward": [0.0, 1.0, np.nan],
                    "feedbackType": [-1, 1], "mouse": ["a", "b"], "subject": ["a", "b"]}.get(
                col, [0.0, 0.25, 0.5, -0.5, np.nan])
            data[col] = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
        else:
            data[col] = draw(st.lists(CELL, min_size=n, max_size=n))
    return pd.DataFrame(data)


@FUZZ
@given(table=tables(SIGNED_COLUMNS), convention=st.sampled_from(["01", "sign", "ibl"]),
       rule=st.sampled_from(["stimulus", "recorded"]))
def test_random_signed_tables(table, convention, rule):
    try:
        df = load_signed_contrast_csv(table, mouse=None if "mouse" in table else "m", choice_convention=convention,
                                      reward_rule=rule)
    except DataFormatError:
        return
    assert_valid_table(df)


@FUZZ
@given(table=tables(IBL_COLUMNS), rule=st.sampled_from(["stimulus", "recorded"]))
def test_random_ibl_tables(table, rule):
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = load_ibl_trials(table, mouse="m", reward_rule=rule)
    except DataFormatError:
        return
    assert_valid_table(df)
