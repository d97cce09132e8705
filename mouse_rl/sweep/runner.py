"""Run a sweep: expand points, simulate each as one batched cohort, collect one table."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from ..outputs import FOLDER_MARKER, OutputSet
from ..simulate import simulate_cohort
from . import checkpoint
from .backends import check_backend, map_points
from .config import SweepConfig, config_dict, load_config
from .points import Point, expand_points
from .summary import cohort_summary, parameter_columns

RESULTS_NAME = "sweep_results"
#: Identifying columns leading every results row.
ID_COLUMNS = ["point_index", "point_id", "seed", "n_mice", "n_sessions", "dtype"]


def _device_ok(device: str) -> str:
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but no CUDA GPU is available (use 'cpu')")
    return str(device)


def run_point(point: Point, device: str = "cpu") -> pd.DataFrame:
    """Simulate one point as a single batched cohort and return its one-row summary.

    Parameters
    ----------
    point : Point
        From :func:`~mouse_rl.sweep.points.expand_points`.
    device : str
        Torch device of the simulation.

    Returns
    -------
    pandas.DataFrame
        One row: :data:`ID_COLUMNS`, every model and task parameter, then
        :data:`~mouse_rl.sweep.summary.METRIC_COLUMNS`.
    """
    dtype = torch.float64 if point.dtype == "float64" else torch.float32
    result = simulate_cohort(
        n_mice=point.mice, n_sessions=point.sessions, params=point.model_params(), task=point.task_config(),
        seed=point.seed, device=device, dtype=dtype, progress=False, log="sessions",
        record_weights="final",
    )
    last = result.weights[result.weights["session"] == point.sessions]
    row = {"point_index": point.index, "point_id": point.point_id, "seed": point.seed, "n_mice": point.mice,
           "n_sessions": point.sessions, "dtype": point.dtype}
    row.update(parameter_columns(point.model, point.task))
    row.update(cohort_summary(None, last, sessions=result.sessions))
    return pd.DataFrame([row])


def _run_point_on(args) -> pd.DataFrame:
    point, device = args
    return run_point(point, device)


def run_sweep(
    config_or_path,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    out=None,
    device: str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Run every point of a sweep and return the results table (one row per point).

    Parameters
    ----------
    config_or_path : str, os.PathLike, Mapping or SweepConfig
        A TOML file (layout in :mod:`mouse_rl.sweep.config`), a parsed
        mapping, or a :class:`SweepConfig`.
    backend : ``"local"`` or ``"ray"`` (see :func:`~mouse_rl.sweep.backends.map_points`).
    address : str, optional
        Ray cluster address; None starts a local Ray instance.
    workers : int, optional
        Local processes (None/1 = sequential) or the local Ray instance's CPUs.
    out : str or os.PathLike, optional
        Output folder. Each finished point is checkpointed atomically to
        ``out/points/<point_id>.parquet``; points with a checkpoint are not
        rerun (so a killed sweep resumes); the table is written to
        ``out/sweep_results.parquet`` and ``.csv`` and the resolved config to
        ``out/sweep_config.json``, as one set (:class:`mouse_rl.outputs.OutputSet`:
        the marker ``out/mouse_rl_run.json`` is written last). None: nothing is written. Checkpoints of
        other sweeps in the same folder are ignored (ids hash every setting).
    device : str
        Torch device of every simulation (``"cpu"``, ``"cuda"``); with Ray,
        ``cuda`` makes every point request one GPU.
    progress : bool
        Show a progress bar over points.

    Returns
    -------
    pandas.DataFrame
        Rows in expansion order (``point_index``), the same whatever the
        backend or the number of interruptions.

    Raises
    ------
    ValueError
        Invalid config (naming the key) or backend options.
    FileNotFoundError
        ``config_or_path`` names a missing file.
    """
    config: SweepConfig = load_config(config_or_path)
    check_backend(backend, address, workers)
    device = _device_ok(device)
    points = expand_points(config)
    rows: dict[int, pd.DataFrame] = {}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.clean_temporary(out)
        (out / FOLDER_MARKER).unlink(missing_ok=True)  # the folder's old result set is no longer current
        for p in points:
            row = checkpoint.read_point(out, p.point_id)
            if row is not None:
                rows[p.index] = _reindexed(row, p)
    todo = [p for p in points if p.index not in rows]

    def on_result(i: int, row: pd.DataFrame) -> None:
        point = todo[i]
        if out is not None:
            checkpoint.write_point(out, point.point_id, row)
        rows[point.index] = row

    ray_options = {"num_gpus": 1} if backend == "ray" and device.startswith("cuda") else None
    map_points(_run_point_on, [(p, device) for p in todo], backend=backend, address=address, workers=workers,
               on_result=on_result, progress=progress, desc=f"sweep ({len(points) - len(todo)} done)",
               ray_options=ray_options)
    table = pd.concat([rows[p.index] for p in points], ignore_index=True)
    if out is not None:
        with OutputSet(out, meta={"command": "sweep"}) as outputs:
            outputs.path("sweep_config.json").write_text(json.dumps(config_dict(config), indent=2) + "\n")
            table.to_parquet(outputs.path(f"{RESULTS_NAME}.parquet"), index=False)
            table.to_csv(outputs.path(f"{RESULTS_NAME}.csv"), index=False)
    return table


def _reindexed(row: pd.DataFrame, point: Point) -> pd.DataFrame:
    """A checkpoint row placed at this sweep's index (the id does not depend on the index)."""
    row = row.copy()
    row["point_index"] = point.index
    return row
