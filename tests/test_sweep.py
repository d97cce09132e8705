"""Parameter sweeps: config validation, expansion, backends, checkpoint/resume, CLI."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mouse_rl.cli import main as cli_main
from mouse_rl.sweep import (
    METRIC_COLUMNS,
    RANDOM_PARAMS,
    BackendUnavailableError,
    expand_points,
    load_config,
    map_points,
    parameter_sets,
    parse_config,
    run_point,
    run_sweep,
)
from mouse_rl.sweep import runner as runner_module
from mouse_rl.sweep.checkpoint import point_path

REPO = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None

TINY = {"mice": 4, "sessions": 3, "trials": 40}


def grid_config(grid=None, seeds=(0, 1), **sweep):
    return {"sweep": {"mode": "grid", "seeds": list(seeds), **TINY, **sweep},
            "grid": grid if grid is not None else {"w0": [0.05, 1.0]}}


def random_config(n_samples=5, sample_seed=0, ranges=None, **sweep):
    ranges = ranges or {"eta": {"low": 1e-3, "high": 0.1, "log": True}, "b_R": {"low": 0.0, "high": 0.1}}
    return {"sweep": {"mode": "random", "n_samples": n_samples, "sample_seed": sample_seed, "seeds": [3],
                      **TINY, **sweep},
            "random": ranges}


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"grid": {"w00": [1.0]}}, "grid.w00"),
        ({"grid": {"w0": []}}, "grid.w0"),
        ({"grid": {"w0": 0.1}}, "grid.w0"),
        ({"grid": {"w0": ["big"]}}, "grid.w0[0]"),
        ({"grid": {"positive": [1]}}, "grid.positive[0]"),
        ({"grid": {"w0": [0.1, 0.1]}}, "grid.w0"),
        ({"grid": {"eta": [0.01, 2.0]}}, "eta"),
        ({"grid": {"lapse": [-0.1]}}, "lapse"),
        ({"model": {"beta": "9"}}, "model.beta"),
        ({"model": {"bogus": 1}}, "model"),
        ({"model": {"eta": 0.0}}, "eta"),
        ({"task": {"probabilities": [0.5, 0.5]}}, "probabilities"),
        ({"task": {"trials_per_session": 10}}, "task.trials_per_session"),
        ({"sweep": {"mice": 0}}, "sweep.mice"),
        ({"sweep": {"sessions": 2.5}}, "sweep.sessions"),
        ({"sweep": {"trials": True}}, "sweep.trials"),
        ({"sweep": {"seeds": []}}, "sweep.seeds"),
        ({"sweep": {"seeds": [0], "n_seeds": 2}}, "sweep.seeds"),
        ({"sweep": {"seeds": [-1]}}, "sweep.seeds[0]"),
        ({"sweep": {"mode": "bayes"}}, "sweep.mode"),
        ({"sweep": {"nmice": 3}}, "sweep"),
        ({"sweep": {"dtype": "float16"}}, "sweep.dtype"),
        ({"extra": {}}, "config"),
        ({"sweep": {"mode": "random", "n_samples": 2}, "random": {"eta": {"low": 0.0, "high": 0.1, "log": True}}},
         "random.eta.low"),
        ({"sweep": {"mode": "random", "n_samples": 2}, "random": {"eta": {"low": 0.2, "high": 0.1}}}, "random.eta"),
        ({"sweep": {"mode": "random", "n_samples": 2}, "random": {"eta": {"lo": 0.1, "high": 0.2}}}, "random.eta"),
        ({"sweep": {"mode": "random", "n_samples": 2}, "random": {"encoding": {"low": 0, "high": 1}}},
         "random.encoding"),
        ({"sweep": {"mode": "random"}, "random": {}}, "sweep.n_samples"),
        ({"sweep": {"mode": "random", "n_samples": 2}, "grid": {"w0": [1.0]}}, "grid"),
        ({"grid": {"w0": [1.0]}, "model": {"w0": 0.5}}, "model.w0"),
    ],
)
def test_invalid_config_names_the_key(raw, key):
    with pytest.raises(ValueError) as info:
        expand_points(parse_config(raw))
    assert key in str(info.value)


def test_unknown_parameter_lists_valid_names():
    with pytest.raises(ValueError, match="grid.w00") as info:
        parse_config({"grid": {"w00": [1.0]}})
    message = str(info.value)
    for name in ("eta", "beta", "w0", "b_L", "b_R", "lapse", "contrasts"):
        assert name in message


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(write_toml(tmp_path / "bad.toml", "[sweep\nmode = 1"))


def test_example_config_is_valid():
    config = load_config(REPO / "bench" / "sweep_example.toml")
    points = expand_points(config)
    assert len(points) == 3 * 2 * 2
    assert (config.mice, config.sessions) == (20, 25)


# ---------------------------------------------------------------- expansion


def test_grid_expansion_counts_and_ids():
    raw = grid_config({"w0": [0.05, 0.2, 1.0], "b_R": [0.0, 0.05], "contrasts": [[-0.5, 0.5], [-1.0, 0.0, 1.0]]},
                      seeds=(0, 1, 2))
    raw["task"] = {}
    with pytest.raises(ValueError, match="probabilities"):  # 2 contrasts vs default 5 probabilities
        expand_points(parse_config(raw))
    raw["grid"].pop("contrasts")
    points = expand_points(parse_config(raw))
    assert len(points) == 3 * 2 * 3
    assert [p.index for p in points] == list(range(18))
    ids = [p.point_id for p in points]
    assert len(set(ids)) == len(ids)
    # parameter-major, seed-minor; fixed defaults resolved
    assert [(p.model["w0"], p.model["b_R"], p.seed) for p in points[:4]] == [
        (0.05, 0.0, 0), (0.05, 0.0, 1), (0.05, 0.0, 2), (0.05, 0.05, 0)]
    assert points[0].model["eta"] == 0.0026 and points[0].task["trials_per_session"] == 40
    # ids are stable: same spec -> same id, any setting change -> new id
    again = expand_points(parse_config(raw))
    assert [p.point_id for p in again] == ids
    raw["sweep"]["mice"] = 5
    assert not set(p.point_id for p in expand_points(parse_config(raw))) & set(ids)


def test_n_seeds_and_no_grid():
    config = parse_config({"sweep": {"n_seeds": 3, **TINY}, "model": {"beta": 5}})
    points = expand_points(config)
    assert [p.seed for p in points] == [0, 1, 2]
    assert all(p.model["beta"] == 5.0 for p in points)


def test_random_search_reproducible_and_within_bounds():
    ranges = {"eta": {"low": 1e-3, "high": 0.1, "log": True}, "b_R": {"low": 0.0, "high": 0.1},
              "beta": {"low": 1.0, "high": 50.0, "log": False}}
    first = parameter_sets(parse_config(random_config(200, 7, ranges)))
    again = parameter_sets(parse_config(random_config(200, 7, ranges)))
    other = parameter_sets(parse_config(random_config(200, 8, ranges)))
    assert first == again
    assert first != other
    assert len(first) == 200
    for name, r in ranges.items():
        values = np.array([row[name] for row in first])
        assert values.min() >= r["low"] and values.max() <= r["high"]
    eta = np.log10([row["eta"] for row in first])
    assert (eta < -2).mean() > 0.3  # log-uniform: about half below 10**-2
    # key order in the file does not change the draws
    reordered = dict(reversed(list(ranges.items())))
    assert parameter_sets(parse_config(random_config(200, 7, reordered))) == first
    points = expand_points(parse_config(random_config(4, 7, ranges)))
    assert len(points) == 4 and all(p.seed == 3 for p in points)
    assert set(RANDOM_PARAMS) >= {"eta", "beta", "w0", "b_L", "b_R", "lapse"}


# ---------------------------------------------------------------- running


@pytest.fixture(scope="module")
def local_table():
    return run_sweep(grid_config())


def test_local_sweep_table(local_table):
    table = local_table
    assert len(table) == 4
    assert list(table["point_index"]) == [0, 1, 2, 3]
    assert list(table["w0"]) == [0.05, 0.05, 1.0, 1.0] and list(table["seed"]) == [0, 1, 0, 1]
    for col in METRIC_COLUMNS + ["eta", "beta", "b_R", "lapse", "n_mice", "point_id"]:
        assert col in table.columns
    assert (table[["n_left", "n_balanced", "n_right"]].sum(axis=1) == 4).all()
    assert table["first_session_accuracy"].between(0, 1).all()
    # fewer than 8 sessions: no early/late correlation
    assert table["r_early_bias_late_slope_diff"].isna().all()
    # the shallow network's stimulus gains stay near 1, the deep one's near 0.05
    assert (table.loc[table["w0"] == 1.0, "final_a_L_mean"] > 0.5).all()
    assert (table.loc[table["w0"] == 0.05, "final_a_L_mean"] < 0.5).all()
    # a point alone gives the same row as inside the sweep
    point = expand_points(parse_config(grid_config()))[3]
    pd.testing.assert_frame_equal(run_point(point), table.iloc[[3]].reset_index(drop=True))


def test_summary_with_eight_sessions_has_correlations():
    table = run_sweep({"sweep": {"seeds": [0], "mice": 6, "sessions": 8, "trials": 30}})
    assert np.isfinite(table["r_early_bias_late_slope_diff"].iloc[0])
    assert np.isfinite(table["early_bias_mean"].iloc[0])


def test_process_pool_matches_sequential(local_table):
    pooled = run_sweep(grid_config(), workers=2)
    pd.testing.assert_frame_equal(pooled, local_table)


def test_map_points_order_and_callback():
    seen = []
    out = map_points(abs, [-3, 1, -2], on_result=lambda i, r: seen.append((i, r)))
    assert out == [3, 1, 2] and seen == [(0, 3), (1, 1), (2, 2)]
    assert map_points(abs, []) == []
    with pytest.raises(ValueError, match="backend"):
        map_points(abs, [1], backend="dask")
    with pytest.raises(ValueError, match="workers"):
        map_points(abs, [1], workers=0)
    with pytest.raises(ValueError, match="address"):
        map_points(abs, [1], address="auto")


def test_ray_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(BackendUnavailableError, match=r"pip install -e '\.\[ray\]'"):
        map_points(abs, [1], backend="ray")


# ---------------------------------------------------------------- checkpoint / resume


def test_resume_after_deleting_table_and_a_point(tmp_path, local_table, monkeypatch):
    out = tmp_path / "sweep"
    first = run_sweep(grid_config(), out=out)
    pd.testing.assert_frame_equal(first, local_table)
    saved = pd.read_parquet(out / "sweep_results.parquet")
    csv = pd.read_csv(out / "sweep_results.csv")
    assert len(csv) == 4 and list(csv["point_id"]) == list(saved["point_id"])
    points = expand_points(parse_config(grid_config()))
    assert all(point_path(out, p.point_id).is_file() for p in points)

    (out / "sweep_results.parquet").unlink()
    point_path(out, points[2].point_id).unlink()
    calls = []
    real = runner_module.run_point
    monkeypatch.setattr(runner_module, "run_point", lambda p, d="cpu": calls.append(p.index) or real(p, d))
    second = run_sweep(grid_config(), out=out)
    assert calls == [2]  # only the missing point was simulated again
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep_results.parquet"), saved)
    pd.testing.assert_frame_equal(second, first)
    assert not list((out / "points").glob(".*"))  # no temporary files left


def test_cli_killed_sweep_resumes_to_identical_table(tmp_path):
    """Kill ``mouse-rl sweep`` once its first point is checkpointed; the rerun completes the same table."""
    config = write_toml(tmp_path / "kill.toml", """
[sweep]
mode = "grid"
seeds = [0, 1]
mice = 4
sessions = 2
trials = 400

[grid]
w0 = [0.05, 0.2, 1.0]
""")
    reference = run_sweep(config)
    n_points = len(reference)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mouse_rl.cli", "sweep", str(config), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "points").glob("*.parquet")):
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no point finished within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = list((out / "points").glob("*.parquet"))
    assert 1 <= len(done) < n_points, "the sweep was not interrupted"
    assert not (out / "sweep_results.parquet").exists()

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"wrote {n_points} points" in rerun.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep_results.parquet"), reference)


def test_cli_reports_config_errors(tmp_path, capsys):
    config = write_toml(tmp_path / "bad.toml", '[sweep]\nmice = 2\n[grid]\nwo = [0.1]\n')
    assert cli_main(["sweep", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "grid.wo" in err and "unknown parameter" in err
    assert cli_main(["sweep", str(tmp_path / "nope.toml"), "--quiet"]) == 2


# ---------------------------------------------------------------- ray


@pytest.fixture(scope="module")
def ray_local():
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install -e '.[ray]')")
def test_ray_backend_matches_local(ray_local, local_table, tmp_path):
    table = run_sweep(grid_config(), backend="ray", out=tmp_path / "ray")
    pd.testing.assert_frame_equal(table, local_table)
    assert len(list((tmp_path / "ray" / "points").glob("*.parquet"))) == 4
    assert map_points(abs, [-1, -2, 3], backend="ray") == [1, 2, 3]


def test_kinds_are_read_from_the_dataclasses():
    from dataclasses import fields

    from envs.task import TaskConfig
    from mouse_rl.params import PARAMS, ModelParams
    from mouse_rl.sweep.config import MODEL_KINDS, TASK_KINDS

    assert list(MODEL_KINDS) == [f.name for f in fields(ModelParams)]
    assert list(TASK_KINDS) == [f.name for f in fields(TaskConfig) if f.name != "trials_per_session"]
    assert all(MODEL_KINDS[name] == "float" for name in PARAMS)
    assert (MODEL_KINDS["encoding"], MODEL_KINDS["positive"], TASK_KINDS["contrasts"]) == ("str", "bool", "float_list")
    assert set(RANDOM_PARAMS) == {n for n, k in {**MODEL_KINDS, **TASK_KINDS}.items() if k == "float"}


def test_summary_from_session_summaries_equals_summary_from_trials():
    """A sweep point logs per-session summaries only; its metrics must be those of the full trial table."""
    from mouse_rl import ModelParams, simulate_cohort
    from mouse_rl.sweep.summary import cohort_summary

    kw = dict(n_mice=40, n_sessions=9, trials_per_session=60, seed=3, params=ModelParams(eta=0.03, b_R=0.05))
    full = simulate_cohort(**kw)
    last = full.weights[full.weights["session"] == 9]
    from_trials = cohort_summary(full.trials, last)
    from_sessions = cohort_summary(None, last, sessions=simulate_cohort(log="sessions", **kw).sessions)
    assert from_trials.keys() == from_sessions.keys()
    for key, value in from_trials.items():
        assert from_sessions[key] == pytest.approx(value, nan_ok=True, rel=1e-12), key
    assert np.isfinite(from_trials["r_early_bias_late_slope_diff"])
