"""Issue 13, the CLI error boundary: every failure a user can cause is one line, exit 2, no traceback."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl import simulate_cohort
from mouse_rl.cli import main

NO_GPU = not torch.cuda.is_available()


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mouse-rl ") and ": error: " in lines[0], err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def cohort_file(tmp_path_factory):
    """A small simulated trial table with model columns (for `dopamine`)."""
    path = tmp_path_factory.mktemp("cohort") / "c.parquet"
    result = simulate_cohort(3, 2, 20, seed=0)
    result.trials.to_parquet(path, index=False)
    result.weights.to_parquet(path.with_suffix(".weights.parquet"), index=False)
    return path


@pytest.fixture
def npy_file(tmp_path):
    path = tmp_path / "M01_data.npy"
    np.save(path, {"inputs": {"c": np.array([-0.5, 0.5])}, "responses": np.array([0.0, 1.0]),
                   "times": np.array([0.3, 0.3]), "t_nd": 0.1, "session_lengths": np.array([2])}, allow_pickle=True)
    return path


SIM = ["simulate", "--mice", "2", "--sessions", "1", "--trials", "5", "--quiet"]


@pytest.mark.parametrize("argv", [
    SIM + ["--device", "foo"],
    ["theory", "--sessions", "1", "--device", "foo"],
    ["recover", "--device", "foo"],
    ["sweep", "CONFIG", "--device", "foo"],
    ["fit", "NPY", "--device", "foo"],
])
def test_unknown_device_in_every_command(capsys, tmp_path, npy_file, argv):
    config = tmp_path / "s.toml"
    config.write_text("[sweep]\nmice = 2\n")
    argv = [str(config) if a == "CONFIG" else str(npy_file) if a == "NPY" else a for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / ("x.parquet" if argv[0] in ("simulate", "theory") else "o"))]
    assert_one_line_error(*run_cli(capsys, *argv), "--device", "'foo'")


@pytest.mark.skipif(not NO_GPU, reason="a CUDA GPU is present")
@pytest.mark.parametrize("command", ["fit", "theory", "recover"])
def test_cuda_without_gpu(capsys, tmp_path, npy_file, command):
    argv = {"fit": ["fit", npy_file, "--out", tmp_path / "o"], "theory": ["theory", "--out", tmp_path / "t.parquet"],
            "recover": ["recover"]}[command]
    assert_one_line_error(*run_cli(capsys, *argv, "--device", "cuda"), "--device", "CUDA")


def test_out_of_the_wrong_kind_before_any_work(capsys, tmp_path, npy_file, cohort_file):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for argv in (["fit", npy_file], ["recover"], ["dopamine", cohort_file], ["demo"], ["sweep", cohort_file]):
        assert_one_line_error(*run_cli(capsys, *argv, "--out", a_file), "--out", "existing file")
    for argv in (SIM, ["theory"]):
        assert_one_line_error(*run_cli(capsys, *argv, "--out", tmp_path), "--out", "existing folder")
    assert_one_line_error(*run_cli(capsys, *SIM, "--out", a_file / "x.parquet"), "--out", "is a file")


@pytest.mark.parametrize("argv, needle", [
    (SIM[:1] + ["--mice", "1000000000", "--quiet"], "--mice"),
    (SIM[:1] + ["--sessions", "100000000", "--trials", "100000", "--quiet"], "--sessions"),
    (["recover", "--mice", "100000000", "--sessions", "100"], "--mice"),
    (["demo", "--mice", "1000000000"], "--mice"),
    (["theory", "--sessions", "100000000"], "--sessions 100,000,000"),
])
def test_absurd_sizes_refused_up_front_with_an_estimate(capsys, tmp_path, argv, needle):
    out = tmp_path / ("x.parquet" if argv[0] in ("simulate", "theory") else "o")
    code, err = run_cli(capsys, *argv, "--out", out)
    assert_one_line_error(code, err, needle)
    assert ("memory" in err) or ("would take" in err)
    assert not out.exists()


def test_absurd_sweep_and_empty_sweep(capsys, tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("[sweep]\nmice = 100000000\n")
    assert_one_line_error(*run_cli(capsys, "sweep", big, "--out", tmp_path / "o", "--workers", "2"),
                          "sweep.mice", "memory")
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing\n")
    assert_one_line_error(*run_cli(capsys, "sweep", empty, "--out", tmp_path / "o"), "empty")
    assert not (tmp_path / "o" / "sweep_results.parquet").exists()


@pytest.mark.parametrize("argv, needles", [
    (["recover", "--free", "omega"], ("--free", "omega")),
    (["recover", "--max-iter", "0"], ("--max-iter", "0")),
    (["recover", "--restarts", "0"], ("--restarts",)),
])
def test_recover_options_checked_before_the_fit(capsys, tmp_path, argv, needles):
    assert_one_line_error(*run_cli(capsys, *argv, "--out", tmp_path / "o"), *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("seed", ["4294967296", "-1"])
def test_seed_out_of_range(capsys, tmp_path, cohort_file, seed):
    assert_one_line_error(*run_cli(capsys, *SIM, "--seed", seed, "--out", tmp_path / "x.parquet"), "--seed", seed)
    assert_one_line_error(*run_cli(capsys, "dopamine", cohort_file, "--seed", seed, "--out", tmp_path / "d"),
                          "--seed", seed)


def test_fit_ray_backend_without_ray(capsys, tmp_path, npy_file):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    assert_one_line_error(*run_cli(capsys, "fit", npy_file, "--backend", "ray", "--out", tmp_path / "o"), "ray")


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00", b"garbage " * 50])
def test_fit_on_broken_npy(capsys, tmp_path, content):
    path = tmp_path / "BAD_data.npy"
    path.write_bytes(content)
    assert_one_line_error(*run_cli(capsys, "fit", path, "--out", tmp_path / "o"), "BAD_data.npy")


# ---------------------------------------------------------------- dopamine


@pytest.mark.parametrize("argv, needles", [
    (["--n-null", "-1"], ("--n-null", "-1")),
    (["--gain-threshold", "nan"], ("--gain-threshold", "nan")),
    (["--bins", "0"], ("--bins",)),
])
def test_dopamine_options(capsys, tmp_path, cohort_file, argv, needles):
    assert_one_line_error(*run_cli(capsys, "dopamine", cohort_file, *argv, "--out", tmp_path / "d"), *needles)


@pytest.mark.parametrize("change, needles", [
    (lambda t: t.assign(contrastLeft=t["contrastLeft"] * 100, contrastRight=t["contrastRight"] * 100,
                        signed_contrast=t["signed_contrast"] * 100), ("percent",)),
    (lambda t: t.assign(choice=5), ("'choice'", "5")),
    (lambda t: t.assign(session=0), ("'session'", "0")),
    (lambda t: t.assign(q_stim_L=np.nan), ("q_stim_L", "nan")),
])
def test_dopamine_validates_its_trial_table(capsys, tmp_path, cohort_file, change, needles):
    bad = tmp_path / "bad.parquet"
    change(pd.read_parquet(cohort_file)).to_parquet(bad, index=False)
    assert_one_line_error(*run_cli(capsys, "dopamine", bad, "--out", tmp_path / "d"), "bad.parquet", *needles)
    assert not (tmp_path / "d" / "readouts.parquet").exists()


def test_dopamine_empty_recordings_and_unreadable_files(capsys, tmp_path, cohort_file):
    empty = tmp_path / "rec.csv"
    empty.write_text("mouse,session,trial,da_DMS\n")
    assert_one_line_error(*run_cli(capsys, "dopamine", cohort_file, "--recordings", empty, "--out", tmp_path / "d"),
                          "rec.csv", "no recorded trials")
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    assert_one_line_error(*run_cli(capsys, "dopamine", blank, "--out", tmp_path / "d"), "blank.csv", "empty")
    fake = tmp_path / "fake.parquet"
    fake.write_text("this is not parquet")
    assert_one_line_error(*run_cli(capsys, "dopamine", fake, "--out", tmp_path / "d"), "fake.parquet",
                          "not a readable parquet file")


def test_dopamine_writes_a_marked_set(capsys, tmp_path, cohort_file):
    assert main(["dopamine", str(cohort_file), "--out", str(tmp_path / "d"), "--n-null", "0"]) == 0
    assert (tmp_path / "d" / "mouse_rl_run.json").exists() and (tmp_path / "d" / "readouts.parquet").exists()


# ---------------------------------------------------------------- the boundary itself


def test_debug_flag_and_env_show_the_traceback(capsys, tmp_path, monkeypatch):
    argv = [*SIM, "--device", "foo", "--out", tmp_path / "x.parquet"]
    code, err = run_cli(capsys, *argv, "--debug")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("mouse-rl simulate: error:")
    code, err = run_cli(capsys, "--debug", *argv)
    assert code == 2 and "Traceback" in err
    monkeypatch.setenv("MOUSE_RL_DEBUG", "1")
    code, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" in err


def test_internal_errors_are_one_line_with_exit_1(capsys, tmp_path, monkeypatch):
    import mouse_rl.cli.simulate as simulate_cli

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setattr(simulate_cli, "run", broken)
    code, err = run_cli(capsys, *SIM, "--out", tmp_path / "x.parquet")
    assert code == 1 and "internal error (TypeError: a bug)" in err and "--debug" in err and "Traceback" not in err


def test_warnings_are_one_line(tmp_path):
    import warnings

    from mouse_rl.cli.errors import run_guarded

    original = warnings.formatwarning
    shown = []
    assert run_guarded("fit", lambda: shown.append(warnings.formatwarning("dropped 1 of 3\nrows", UserWarning,
                                                                            "x.py", 1))) == 0
    assert shown == ["mouse-rl fit: warning: dropped 1 of 3 rows\n"]
    assert warnings.formatwarning is original  # restored after the command
    with pytest.warns(UserWarning, match="still recorded"):  # recording (pytest.warns) is unaffected
        run_guarded("fit", lambda: warnings.warn("still recorded", UserWarning))
