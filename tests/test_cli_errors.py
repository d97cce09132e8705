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
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed")
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


# ---------------------------------------------------------------- hostile-user regressions


def _trial_csv(path, n_mice: int, n_sessions: int, trials: int = 20):
    table = simulate_cohort(n_mice, n_sessions, trials, seed=1).trials
    table[["mouse", "session", "trial", "signed_contrast", "choice", "reward"]].to_csv(path, index=False)
    return path


@pytest.fixture
def no_sessions_npy(tmp_path):
    """A .npy like DAP044: no session_lengths key."""
    path = tmp_path / "NOSESS_data.npy"
    np.save(path, {"inputs": {"c": np.array([-0.5, 0.5, 0.25])}, "responses": np.array([0.0, 1.0, 1.0]),
                   "times": np.array([0.3, 0.3, 0.4]), "t_nd": 0.1}, allow_pickle=True)
    return path


@pytest.mark.parametrize("argv, needles", [
    (["simulate", "--mice", "abc"], ("mouse-rl simulate: error: argument --mice", "'abc'", "mouse-rl simulate --help")),
    (["simulate", "--log", "everything"], ("--log", "'everything'")),
    (["simulate", "--out", "x.parquet", "--jitter", "3"], ("mouse-rl simulate: error: unrecognized arguments: --jitter 3",)),
    (["fit"], ("mouse-rl fit: error:", "required")),
    (["nosuchcommand"], ("mouse-rl: error:", "'nosuchcommand'")),
])
def test_usage_errors_are_one_line(capsys, argv, needles):
    """argparse printed the whole usage (20+ lines for simulate) before its error; now one line, exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_simulate_threads_beyond_numba_maximum_warns_and_runs(capsys, tmp_path):
    import numba

    most = numba.config.NUMBA_NUM_THREADS
    with pytest.warns(UserWarning, match=rf"--threads 1000: numba allows at most {most} threads.*using {most}"):
        code = main([*SIM, "--threads", "1000", "--out", str(tmp_path / "x.parquet")])
    assert code == 0 and (tmp_path / "x.parquet").exists()


def test_simulate_threads_warning_reaches_stderr(capsys, tmp_path, monkeypatch):
    """Outside pytest a warning is shown on stderr through warnings.formatwarning (one line, set by the boundary)."""
    import sys
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, err = run_cli(capsys, *SIM, "--threads", "1000", "--out", tmp_path / "x.parquet")
    assert code == 0
    assert "mouse-rl simulate: warning: --threads 1000: numba allows at most" in err, err


@pytest.mark.parametrize("argv, needles", [
    (["--out", "cohort.weights.parquet"], ("--out", ".weights.parquet")),
    (["--out", "c.parquet", "--checkpoint", "c.parquet"], ("--checkpoint", "output of the run")),
    (["--out", "c.parquet", "--checkpoint", "c.weights.parquet"], ("--checkpoint", "output of the run")),
    (["--log", "sessions", "--mice", "2", "--sessions", "100000000", "--trials", "1"], ("--sessions 100,000,000", "memory")),
])
def test_simulate_refuses_clobbering_names_and_huge_session_logs(capsys, tmp_path, argv, needles):
    argv = [str(tmp_path / a) if a.endswith(".parquet") else a for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.parquet")]
    assert_one_line_error(*run_cli(capsys, "simulate", "--quiet", *argv), *needles)
    assert not list(tmp_path.iterdir())


def test_theory_names_trials_when_one_session_is_too_long(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "theory", "--per", "trial", "--trials", "100000000", "--out",
                                   tmp_path / "t.parquet"), "--trials: 100,000,000 trials per session")


def test_fit_population_refuses_one_mouse(capsys, tmp_path, npy_file):
    assert_one_line_error(*run_cli(capsys, "fit", npy_file, "--population", "--out", tmp_path / "o"),
                          "--population", "at least 2 mice, got 1 (M01)", "drop --population")
    assert not (tmp_path / "o" / "fit_results.parquet").exists()


def test_fit_population_warns_on_two_mice(capsys, tmp_path):
    data = _trial_csv(tmp_path / "two.csv", 2, 2)
    with pytest.warns(UserWarning, match=r"--population with 2 mice: the population covariance of 7 parameters "
                                         r"is estimated from 2 mice.*use at least 8 mice"):
        code = main(["fit", str(data), "--population", "--population-iter", "1", "--restarts", "1", "--max-iter",
                     "2", "--no-plots", "--quiet", "--out", str(tmp_path / "o")])
    assert code == 0 and (tmp_path / "o" / "population.csv").exists()


def test_missing_session_lengths_error_names_the_cli_option(capsys, tmp_path, no_sessions_npy):
    code, err = run_cli(capsys, "fit", no_sessions_npy, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "session_lengths", "Rerun with --single-block")
    assert "load_psytrax_npy" not in err and "missing_sessions" not in err
    code, err = run_cli(capsys, "forecast", no_sessions_npy, "--out", tmp_path / "f")  # forecast has no such option
    assert_one_line_error(code, err, "session_lengths", "leave this file out")
    assert "--single-block" not in err and "load_psytrax_npy" not in err


def test_dap044_error_names_the_cli_option(capsys, tmp_path, liebana_dir):
    code, err = run_cli(capsys, "fit", liebana_dir / "DAP044_data.npy", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "DAP044_data.npy", "--single-block")
    assert "load_psytrax_npy" not in err


def test_liebana_folder_with_single_block_and_mice(tmp_path, npy_file, no_sessions_npy):
    """In a folder, the skip warning names --single-block; --single-block loads the file; --mice reads only those."""
    from mouse_rl.cli.fit import load_many

    folder = tmp_path  # holds M01_data.npy (valid) and NOSESS_data.npy (no session_lengths)
    with pytest.warns(UserWarning, match="Rerun with --single-block") as record:
        df = load_many([folder])
    assert set(df["mouse"]) == {"M01"} and not any("load_psytrax_npy" in str(w.message) for w in record)
    with pytest.warns(UserWarning, match="one unknown-session block"):
        df = load_many([folder], single_block=True)
    assert set(df["mouse"]) == {"M01", "NOSESS"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NOSESS is not read, so nothing is skipped
        assert set(load_many([folder], mice=["M01"])["mouse"]) == {"M01"}


@pytest.mark.parametrize("argv, needles", [
    (["--workers", "3"], ("--workers 3", "--backend local/ray", "ignored")),
    (["--address", "10.0.0.1"], ("--address 10.0.0.1", "--backend local/ray")),
    (["--backend", "local", "--address", "10.0.0.1"], ("--address 10.0.0.1", "--backend ray")),
    (["--engine", "compile"], ("--engine compile", "--method lbfgs/adam")),
    (["--predictive", "plugin"], ("--predictive plugin", "--cv")),
    (["--samples", "5"], ("--samples 5", "--cv")),
    (["--cv", "time", "--predictive", "plugin", "--samples", "5"], ("--samples 5", "--predictive laplace")),
    (["--population-iter", "3"], ("--population-iter 3", "--population")),
    (["--restarts", "100000"], ("--restarts", "<= 1,000", "100000")),
    (["--max-iter", "100000000", "--method", "adam"], ("--max-iter", "100000000")),
    (["--max-iter", "0"], ("--max-iter: must be >= 1, got 0",)),
    (["--workers", "0", "--backend", "local"], ("--workers: must be >= 1, got 0",)),
])
def test_fit_refuses_options_it_would_ignore_and_absurd_sizes(capsys, tmp_path, npy_file, argv, needles):
    assert_one_line_error(*run_cli(capsys, "fit", npy_file, *argv, "--out", tmp_path / "o"), *needles)
    assert not (tmp_path / "o").exists()


def test_recover_refuses_engine_with_newton(capsys):
    assert_one_line_error(*run_cli(capsys, "recover", "--engine", "compile"), "--engine compile", "lbfgs/adam")


@pytest.mark.parametrize("argv, needles", [
    (["--normalise"], ("--normalise", "--recordings")),
    (["--null", "circular"], ("--null circular", "--recordings")),
    (["--n-null", "500"], ("--n-null 500", "--recordings")),
    (["--n-null", "100000000"], ("--n-null", "100000000")),
])
def test_dopamine_refuses_regression_options_without_recordings(capsys, tmp_path, cohort_file, argv, needles):
    assert_one_line_error(*run_cli(capsys, "dopamine", cohort_file, *argv, "--out", tmp_path / "d"), *needles)


def test_forecast_names_context_horizon_and_copies(capsys, tmp_path):
    data = _trial_csv(tmp_path / "c.csv", 2, 3, trials=10)
    assert_one_line_error(*run_cli(capsys, "forecast", data, "--horizon", "100", "--out", tmp_path / "f"),
                          "--folds 5", "--horizon 100", "0 of 2 mice")
    assert_one_line_error(*run_cli(capsys, "forecast", data, "--folds", "2", "--context", "1", "--horizon", "1",
                                   "--copies", "1000000000", "--out", tmp_path / "f"), "--copies 1,000,000,000", "memory")


def test_check_copies_refused_when_they_cannot_fit():
    from mouse_rl.cli.limits import check_copies_size

    check_copies_size(1000, 50)
    with pytest.raises(ValueError, match=r"--copies 100,000,000 x 270 trials .* memory"):
        check_copies_size(270, 100_000_000)


@pytest.mark.parametrize("argv, needles", [
    (["DIR"], ("config", "is a folder")),
    (["CONFIG", "--workers", "0"], ("--workers: must be >= 1, got 0",)),
    (["CONFIG", "--address", "10.0.0.1"], ("--address 10.0.0.1", "--backend ray")),
])
def test_sweep_options_named(capsys, tmp_path, argv, needles):
    config = tmp_path / "s.toml"
    config.write_text("[sweep]\nmice = 2\nsessions = 1\ntrials = 5\n")
    (tmp_path / "adir").mkdir()
    argv = [str(config) if a == "CONFIG" else str(tmp_path / "adir") if a == "DIR" else a for a in argv]
    assert_one_line_error(*run_cli(capsys, "sweep", *argv, "--out", tmp_path / "o"), *needles)


def test_check_on_a_corrupt_fit_trials_parquet(capsys, tmp_path, npy_file):
    fits = tmp_path / "fits"
    assert main(["fit", str(npy_file), "--out", str(fits), "--restarts", "1", "--max-iter", "2", "--no-plots",
                 "--quiet"]) == 0
    capsys.readouterr()
    (fits / "fit_trials.parquet").write_text("junk")
    assert_one_line_error(*run_cli(capsys, "check", fits, "--no-plots"), "fits:", "fit_trials.parquet",
                          "rerun `mouse-rl fit`")


def test_check_refuses_writing_into_the_fit_folder_and_non_finite_parameters(capsys, tmp_path, npy_file):
    import json

    import numpy as np

    fits = tmp_path / "fits"
    assert main(["fit", str(npy_file), "--out", str(fits), "--restarts", "1", "--max-iter", "2", "--no-plots",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out  # a learner side too few sessions decide is printed as a word
    record = (fits / "mouse_rl_run.json").read_text()
    assert_one_line_error(*run_cli(capsys, "check", fits, "--no-plots", "--copies", "2", "--out", fits / "."),
                          "--out", "is the fit folder")
    assert (fits / "mouse_rl_run.json").read_text() == record and json.loads(record)["command"] == "fit"
    with np.load(fits / "fit_laplace.npz", allow_pickle=False) as z:
        saved = dict(z)
    saved["u"][0, 0] = np.nan
    np.savez(fits / "fit_laplace.npz", **saved)
    assert_one_line_error(*run_cli(capsys, "check", fits, "--no-plots", "--copies", "2"), "fits:",
                          "non-finite fitted parameters")


def test_noisy_population_refuses_one_mouse_before_writing(capsys, tmp_path, npy_file):
    assert_one_line_error(*run_cli(capsys, "fit", npy_file, "--out", tmp_path / "o", "--model", "noisy-network",
                                   "--noisy-population", "beta"), "--noisy-population", "at least 3 mice, got 1")
    assert not (tmp_path / "o").exists()


def test_sigma_per_column_refused_with_u_frozen(capsys, tmp_path, npy_file):
    assert_one_line_error(*run_cli(capsys, "fit", npy_file, "--out", tmp_path / "o", "--model", "noisy-network",
                                   "--sigma-per", "column", "--frozen", "U"), "--sigma-per column", "--frozen U")


def test_recover_on_tiny_data_has_no_bare_numpy_warnings(capsys):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["recover", "--mice", "3", "--sessions", "1", "--trials", "1", "--restarts", "1",
                     "--max-iter", "2"]) == 0
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "encountered in" in m], messages


@pytest.mark.parametrize("command", ["simulate", "theory"])
def test_trials_zero_names_the_option(capsys, tmp_path, command):
    assert_one_line_error(*run_cli(capsys, command, "--trials", "0", "--out", tmp_path / "x.parquet"),
                          "--trials: must be >= 1", "got 0")


@pytest.mark.parametrize("argv, needle", [(["--noise", "linear"], "--noise linear"), (["--frozen", "a"], "--frozen a"),
                                          (["--sigma-per", "column"], "--sigma-per column"),
                                          (["--noisy-start", "psytrack"], "--noisy-start psytrack"),
                                          (["--noisy-population", "beta"], "--noisy-population beta"),
                                          (["--give-up", "0", "-1"], "--give-up 0 -1")])
def test_noisy_only_options_are_refused_for_the_network(tmp_path, capsys, argv, needle):
    from mouse_rl.cli import main

    assert main(["fit", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "--model noisy-network only" in err
