"""Strategy graph (saddle escapes between fixed points) and predicted learning stages."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from envs.task import TaskConfig

from ..network import Weights
from ..params import ModelParams
from .fixed_points import FixedPoint, find_fixed_points
from .mean_field import N_WEIGHTS, flat_weights, mean_field_trajectory, pathway_coords, weights_from_flat

__all__ = ["StrategyGraph", "strategy_graph", "predict_stages", "run_lengths"]


def run_lengths(codes: np.ndarray, step: int = 1) -> pd.DataFrame:
    """Run-length encode strategy codes ``(N, R)`` recorded every ``step`` trials (vectorised).

    Returns one row per (init, stage): ``init, stage, strategy, start, length``
    in units of records.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes: expected shape (N, R), got {codes.shape}")
    N, R = codes.shape
    start = np.ones((N, R), dtype=bool)
    start[:, 1:] = codes[:, 1:] != codes[:, :-1]
    init, pos = np.nonzero(start)
    nxt = np.append(pos[1:], R)
    nxt[np.append(init[1:] != init[:-1], True)] = R
    first = np.r_[0, np.flatnonzero(init[1:] != init[:-1]) + 1]
    stage = np.arange(len(init)) - np.repeat(first, np.diff(np.r_[first, len(init)]))
    return pd.DataFrame({"init": init, "stage": stage, "strategy": codes[init, pos],
                         "start": pos, "length": nxt - pos})


def predict_stages(
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    init: Weights | None = None,
    n_sessions: int = 25,
    threshold: float | None = None,
    device="cpu",
    dtype=torch.float64,
) -> pd.DataFrame:
    """Strategy stages visited by the plain mean-field trajectory (``closure="none"``: one noise-free mouse), classified every trial.

    Parameters
    ----------
    params, task, init, n_sessions, device, dtype
        As :func:`~mouse_rl.theory.mean_field_trajectory` (batched over init/mice).
    threshold : float, optional
        Association threshold of :func:`mouse_rl.strategy.strategy_of` (Q units).

    Returns
    -------
    pandas.DataFrame
        One row per initial condition and stage: ``init, stage, strategy,
        strategy_name, start_trial, end_trial`` (exclusive, global trial from
        0), ``n_trials``, ``n_sessions`` (= n_trials / trials per session),
        ``start_session`` (fractional, from 1) and ``final`` (stage still
        running at the end).
    """
    from ..strategy import STRATEGY_NAMES

    task = task or TaskConfig()
    res = mean_field_trajectory(params, task, n_sessions, init, device, dtype, record_every=1, closure="none")
    codes = res.strategies(threshold).cpu().numpy()
    df = run_lengths(codes)
    T = task.trials_per_session
    out = pd.DataFrame({
        "init": df["init"], "stage": df["stage"], "strategy": df["strategy"],
        "strategy_name": np.asarray(STRATEGY_NAMES, dtype=object)[df["strategy"].to_numpy()],
        "start_trial": df["start"], "end_trial": df["start"] + df["length"], "n_trials": df["length"],
    })
    out["n_sessions"] = out["n_trials"] / T
    out["start_session"] = out["start_trial"] / T + 1
    out["final"] = out["end_trial"] == codes.shape[1]
    return out


@dataclass
class StrategyGraph:
    """Fixed points (nodes) and saddle escapes (edges).

    fixed_points : list of :class:`FixedPoint`.
    edges : one row per escape run: ``source`` (index into fixed_points),
        ``source_strategy``, ``target_strategy`` (strategy codes), ``direction``
        (index of the unstable direction), ``sign`` (+1/-1), ``escape_trials``
        (trials until the target strategy was first reached; NaN if never).
    """

    fixed_points: list
    edges: pd.DataFrame

    def strategy_edges(self, include_self: bool = False) -> set:
        """Set of ``(source_code, target_code)`` pairs."""
        e = self.edges.dropna(subset=["target_strategy"])
        pairs = {(int(a), int(b)) for a, b in zip(e["source_strategy"], e["target_strategy"])}
        return pairs if include_self else {p for p in pairs if p[0] != p[1]}

    def draw(self, ax=None, visited=None, title: str | None = "strategy graph"):
        """Draw nodes = strategies, arrows = escapes; ``visited`` = list of code sequences (sample mice)."""
        from .plots import plot_strategy_graph

        return plot_strategy_graph(self, ax=ax, visited=visited, title=title)


def strategy_graph(
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    fixed_points: list[FixedPoint] | None = None,
    eps: float = 0.05,
    n_sessions: int = 40,
    min_dwell: int | None = None,
    threshold: float | None = None,
    **find_kw,
) -> StrategyGraph:
    """Directed graph of saddle escapes.

    Each unstable fixed point is perturbed by ``+-eps`` along each unstable
    direction (and along its projection on each pathway, to split degenerate
    eigenspaces), weights made non-negative (the reflecting boundary), and
    the mean-field is integrated for ``n_sessions`` sessions (all runs in one
    batch). The target is the first strategy different from the source that
    persists ``min_dwell`` trials (default: one session); if none, the
    strategy at the end.

    Parameters
    ----------
    params, task : model and task (scalar hyperparameters).
    fixed_points : precomputed :func:`find_fixed_points` output (else computed with ``find_kw``).
    eps : perturbation size (weight units).
    n_sessions : integration horizon (sessions).
    min_dwell : persistence required of a target (trials).
    threshold : strategy threshold (Q units).
    """

    params = params or ModelParams()
    task = task or TaskConfig()
    if not eps > 0:
        raise ValueError(f"eps: must be > 0, got {eps!r}")
    fps = find_fixed_points(params, task, **find_kw) if fixed_points is None else fixed_points
    T = task.trials_per_session
    min_dwell = T if min_dwell is None else int(min_dwell)
    starts, meta = [], []
    for i, fp in enumerate(fps):
        if not fp.unstable:
            continue
        dirs = []
        for v in fp.unstable_vectors:
            dirs.append(v)
            for j in range(len(fp.a)):
                coords = list(pathway_coords(j))
                part = np.zeros(N_WEIGHTS)
                part[coords] = v[coords]
                if 0.1 < np.linalg.norm(part) < 0.999:
                    dirs.append(part / np.linalg.norm(part))
        w = flat_weights(fp.weights).numpy()
        for d, v in enumerate(dirs):
            for sign in (1, -1):
                starts.append(np.abs(w + sign * eps * v))
                meta.append((i, fp.strategy, d, sign))
    cols = ["source", "source_strategy", "direction", "sign", "target_strategy", "escape_trials"]
    if not starts:
        return StrategyGraph(fps, pd.DataFrame(columns=cols))
    init = weights_from_flat(torch.as_tensor(np.array(starts)))
    res = mean_field_trajectory(params, task, n_sessions, init, record_every=1, closure="none")
    codes = (res.strategies(threshold)).cpu().numpy()
    runs = run_lengths(codes)
    rows = []
    for k, (i, code, d, sign) in enumerate(meta):
        r = runs[(runs["init"] == k) & (runs["strategy"] != code)]
        long = r[(r["length"] >= min_dwell) | (r["start"] + r["length"] == codes.shape[1])]
        if len(long):
            target, when = int(long["strategy"].iloc[0]), float(long["start"].iloc[0])
        else:
            target, when = int(codes[k, -1]), np.nan
        rows.append((i, code, d, sign, target, when))
    edges = pd.DataFrame(rows, columns=cols)
    return StrategyGraph(fps, edges)
