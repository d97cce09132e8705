"""Issue 13, security and integrity: no code runs from data or checkpoints, names stay inside --out,
outputs are written as one set, sweep workers die with their parent, reproducibility as the README says."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl import ModelParams, simulate_cohort
from mouse_rl.checkpoint import CheckpointError, load_checkpoint, save_atomic
from mouse_rl.cli import main
from mouse_rl.data import DataFormatError, load_liebana2025, load_psytrax_npy, load_trials
from mouse_rl.data.safe_npy import read_npy
from mouse_rl.outputs import FOLDER_MARKER, OutputSet, marker_for_file, read_marker
from mouse_rl.safe_names import confined_path, safe_filename, unique_filenames


class _Touch:
    """Unpickling this object runs ``touch MARKER`` (what a hostile file would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _valid_npy_dict(n: int = 4) -> dict:
    return {"inputs": {"c": np.array([-0.5, 0.5, 0.0, 0.25][:n])}, "responses": np.array([0.0, 1.0, 1.0, 0.0][:n]),
            "times": np.full(n, 0.3), "t_nd": 0.1, "session_lengths": np.array([n])}


# ---------------------------------------------------------------- malicious .npy


def test_malicious_npy_does_not_run_code(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "EVIL_data.npy"
    np.save(path, {**_valid_npy_dict(), "t_nd": _Touch(marker)}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"EVIL_data.npy: refused to load posix.system|refused to load"):
        load_psytrax_npy(path)
    with pytest.raises(DataFormatError):
        load_trials(path)
    assert not marker.exists()


def test_malicious_npy_in_a_folder_is_skipped_without_running(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "EVIL_data.npy", _Touch(marker), allow_pickle=True)
    np.save(folder / "M01_data.npy", _valid_npy_dict(), allow_pickle=True)
    with pytest.warns(UserWarning, match="EVIL"):
        df = load_liebana2025(folder)
    assert set(df["mouse"]) == {"M01"}
    (folder / "M01_data.npy").unlink()
    with pytest.warns(UserWarning, match="EVIL"):
        assert main(["fit", str(folder), "--out", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err
    assert "EVIL" in err and "Traceback" not in err
    assert not marker.exists()


def test_restricted_unpickler_reads_plain_numpy_content(tmp_path):
    value = {"a": np.arange(3.0), "b": {"c": np.array([1, 2])}, "s": np.float64(0.5), "l": [1, "x"], "t": (1, 2.0)}
    np.save(tmp_path / "ok.npy", value, allow_pickle=True)
    got = read_npy(tmp_path / "ok.npy")
    np.testing.assert_array_equal(got["a"], value["a"])
    assert got["s"] == 0.5 and got["l"] == [1, "x"] and got["t"] == (1, 2.0)
    np.save(tmp_path / "plain.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    np.testing.assert_array_equal(read_npy(tmp_path / "plain.npy"), np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY", b"not a numpy file at all", None])
def test_empty_truncated_random_npy_are_clear_errors(tmp_path, content):
    path = tmp_path / "M_data.npy"
    if content is None:  # a valid file cut in half
        np.save(path, _valid_npy_dict(), allow_pickle=True)
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=r"M_data.npy: "):
        load_psytrax_npy(path)


def test_nan_t_nd_is_an_error(tmp_path):
    path = tmp_path / "M_data.npy"
    np.save(path, {**_valid_npy_dict(), "t_nd": float("nan")}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"'t_nd'.*finite.*nan"):
        load_psytrax_npy(path)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_loads_without_pickle_and_resumes(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    kwargs = dict(n_mice=3, n_sessions=3, trials_per_session=20, seed=2, record_weights="trial")
    full = simulate_cohort(**kwargs)
    simulate_cohort(**{**kwargs, "n_sessions": 3}, checkpoint=ckpt, checkpoint_every=2)
    raw = torch.load(ckpt, weights_only=True)  # tensors and plain values only
    assert raw["global_trial"] == 40 and isinstance(raw["snapshots"][0], dict)
    assert isinstance(load_checkpoint(ckpt)["snapshots"][0], pd.DataFrame)
    resumed = simulate_cohort(**kwargs, checkpoint=ckpt)
    pd.testing.assert_frame_equal(resumed.trials, full.trials)
    pd.testing.assert_frame_equal(resumed.weights, full.weights)


def test_malicious_checkpoint_does_not_run_code(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "cohort.ckpt"
    torch.save({"fingerprint": {}, "payload": _Touch(marker)}, ckpt)
    with pytest.raises(CheckpointError, match="corrupt or not a mouse_rl checkpoint"):
        simulate_cohort(2, 2, 10, checkpoint=ckpt)
    out = tmp_path / "cohort.parquet"
    args = ["simulate", "--mice", "2", "--sessions", "2", "--trials", "10", "--out", str(out), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cohort.ckpt" in err and "--restart" in err and "Traceback" not in err
    assert not marker.exists() and not out.exists()
    assert main(args + ["--restart"]) == 0
    assert out.exists() and not ckpt.exists() and not marker.exists()


def _good_state(tmp_path) -> tuple[Path, dict]:
    ckpt = tmp_path / "c.ckpt"
    simulate_cohort(2, 3, 10, seed=0, checkpoint=ckpt)
    return ckpt, load_checkpoint(ckpt)


def _corrupt(tmp_path, variant: str) -> Path:
    ckpt, state = _good_state(tmp_path)
    data = ckpt.read_bytes()
    if variant == "empty":
        ckpt.write_bytes(b"")
    elif variant == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif variant == "random":
        ckpt.write_bytes(np.random.default_rng(0).bytes(2000))
    elif variant == "not a dict":
        torch.save([1, 2, 3], ckpt)
    elif variant == "old pickle format":
        torch.save({**state, "snapshots": state["snapshots"]}, ckpt)  # DataFrames pickled as objects
    elif variant == "nan weights":
        save_atomic({**state, "a": torch.full_like(state["a"], float("nan"))}, ckpt)
    elif variant == "wrong shape":
        save_atomic({**state, "U": state["U"][:1]}, ckpt)
    elif variant == "missing key":
        save_atomic({k: v for k, v in state.items() if k != "signed_contrast"}, ckpt)
    elif variant == "bad counter":
        save_atomic({**state, "global_trial": 7}, ckpt)
    elif variant == "another run":
        save_atomic({**state, "fingerprint": {**state["fingerprint"], "seeds": [1, 2]}}, ckpt)
    return ckpt


CORRUPT = ["empty", "truncated", "random", "not a dict", "old pickle format", "nan weights", "wrong shape",
           "missing key", "bad counter", "another run"]


@pytest.mark.parametrize("variant", CORRUPT)
def test_corrupt_checkpoint_is_a_checkpoint_error(tmp_path, variant):
    ckpt = _corrupt(tmp_path, variant)
    with pytest.raises(CheckpointError, match=r"checkpoint: .*c\.ckpt.*(--restart|delete)"):
        simulate_cohort(2, 3, 10, seed=0, checkpoint=ckpt)


# ---------------------------------------------------------------- file names from data


def test_safe_filenames_and_confinement(tmp_path):
    assert safe_filename("DAP007") == "DAP007"
    assert safe_filename("../../x") == "x" and safe_filename("/abs/path") == "abs_path"
    assert safe_filename("..") == "unnamed" and safe_filename("a\x00b\nc") == "a_b_c"
    assert len(safe_filename("m" * 1000)) <= 100
    stems = unique_filenames(["../../x", "x", "/abs/path", "X", "x"])
    assert len(set(s.lower() for s in stems.values())) == 4
    assert confined_path(tmp_path, "a.png") == tmp_path / "a.png"
    for bad in ("../a.png", "/etc/passwd", "sub/../../a.png"):
        with pytest.raises(ValueError, match="outside"):
            confined_path(tmp_path, bad)


def test_fit_plot_names_stay_inside_out(tmp_path):
    trials = simulate_cohort(2, 2, 25, seed=0).trials[["mouse", "session", "trial", "signed_contrast", "choice",
                                                        "reward"]]
    trials = trials.assign(mouse=trials["mouse"].map({"sim0000": "../../escaped", "sim0001": str(tmp_path / "abs")}))
    trials.to_csv(tmp_path / "ids.csv", index=False)
    out = tmp_path / "deep" / "out"
    assert main(["fit", str(tmp_path / "ids.csv"), "--out", str(out), "--restarts", "1", "--max-iter", "2",
                 "--quiet"]) == 0
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(
        [f"{safe_filename(str(tmp_path / 'abs'))}.png", "escaped.png"])
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "abs.png").exists()


# ---------------------------------------------------------------- outputs as one set


def test_output_set_commits_together_or_not_at_all(tmp_path):
    with OutputSet(tmp_path, meta={"command": "t"}) as outputs:
        (outputs / "a.txt").write_text("old a")
        outputs.path("sub/b.txt").write_text("old b")
    record = read_marker(tmp_path / FOLDER_MARKER)
    assert record["files"] == {"a.txt": 5, "sub/b.txt": 5} and record["command"] == "t"
    with pytest.raises(KeyboardInterrupt):
        with OutputSet(tmp_path) as outputs:
            (outputs / "a.txt").write_text("new a")
            raise KeyboardInterrupt  # killed before the commit
    assert (tmp_path / "a.txt").read_text() == "old a" and read_marker(tmp_path / FOLDER_MARKER) is not None
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "a.txt").write_text("changed by hand")
    assert read_marker(tmp_path / FOLDER_MARKER) is None  # the marker no longer describes the files


def test_simulate_writes_trials_and_weights_as_one_set(tmp_path):
    out = tmp_path / "c.parquet"
    assert main(["simulate", "--mice", "2", "--sessions", "1", "--trials", "10", "--out", str(out), "--quiet"]) == 0
    record = json.loads(marker_for_file(out).read_text())
    assert set(record["files"]) == {"c.parquet", "c.weights.parquet"} and read_marker(marker_for_file(out))
    assert not list(tmp_path.glob(".*"))


# ---------------------------------------------------------------- sweep workers die with their parent

_PARENT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {helper_dir!r})
from mouse_rl.sweep.backends import map_points
import helper_work
map_points(helper_work.work, [{a!r}, {b!r}], workers=2)
"""
_HELPER = """
import os, time
from pathlib import Path
def work(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_workers_die_when_parent_is_killed(tmp_path):
    (tmp_path / "helper_work.py").write_text(textwrap.dedent(_HELPER))
    a, b = tmp_path / "a.pid", tmp_path / "b.pid"
    script = _PARENT.format(helper_dir=str(tmp_path), a=str(a), b=str(b))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (a.exists() and b.exists() and a.read_text() and b.read_text()):
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        workers = [int(a.read_text()), int(b.read_text())]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)  # returns only once nobody holds the output pipes any more
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers), "orphan workers survived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for f in (a, b):
            if f.exists() and f.read_text() and _alive(int(f.read_text())):
                os.kill(int(f.read_text()), signal.SIGKILL)


# ---------------------------------------------------------------- README reproducibility sentence


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_cohort_equals_mice_run_alone_as_readme_says(dtype, tol):
    params = ModelParams(eta=0.05, lapse=0.05, b_R=0.1)
    cohort = simulate_cohort(12, 3, 60, seed=5, params=params, dtype=dtype, record_weights="trial")
    for i in (0, 7, 11):
        alone = simulate_cohort(1, 3, 60, seeds=[cohort.seeds[i]], params=params, dtype=dtype,
                                record_weights="trial").trials
        part = cohort.trials[cohort.trials["mouse"] == f"sim{i:04d}"].reset_index(drop=True)
        for col in ("choice", "reward", "signed_contrast"):
            np.testing.assert_array_equal(alone[col].to_numpy(), part[col].to_numpy())
        numeric = [c for c in alone.columns if c != "mouse"]
        diff = np.abs(alone[numeric].to_numpy(float) - part[numeric].to_numpy(float)).max()
        assert diff <= tol


def test_a_file_that_is_not_a_checkpoint_is_named_plainly(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes.txt is not a mouse_rl checkpoint \(not a torch.save archive\)"):
        load_checkpoint(notes)
