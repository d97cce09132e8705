"""Theory (mean-field) versus simulated cohorts from the same initial weights."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from envs import rng
from envs.task import TaskConfig

from ..network import Weights
from ..params import ModelParams
from ..schema import WEIGHT_COLUMNS
from .classes import STIMULUS_SIDE_NAMES
from .mean_field import MeanFieldResult, flat_weights, mean_field_trajectory

__all__ = ["Comparison", "compare_with_simulation", "compare_deep_shallow", "simulated_session_p_right"]

@dataclass
class Comparison:
    """Per-session theory vs simulation.

    p_right : one row per session and side: ``session, side, simulated, theory, error``
        (session-averaged P(R | side); simulated = mean of the model's ``p_right``).
    weights : one row per session end (0 = initial) and weight column:
        ``session, weight, simulated`` (cohort mean), ``theory``, ``error``.
    max_error_p : max |error| of P(R | side) over sessions and sides.
    max_error_weights : max |error| of the session-end weights.
    theory : the :class:`MeanFieldResult`.
    sim_weights : simulated session-end weight table (all mice).
    meta : sizes and timings (seconds).
    """

    p_right: pd.DataFrame
    weights: pd.DataFrame
    max_error_p: float
    max_error_weights: float
    theory: MeanFieldResult
    sim_weights: pd.DataFrame
    meta: dict


def simulated_session_p_right(trials: pd.DataFrame) -> pd.DataFrame:
    """Sum and count of the model ``p_right`` per (session, side) of a trial table."""
    side = np.sign(trials["signed_contrast"].to_numpy()).astype(int)
    g = pd.DataFrame({"session": trials["session"].to_numpy(), "side": side, "p": trials["p_right"].to_numpy()})
    return g.groupby(["session", "side"])["p"].agg(["sum", "count"])


def compare_with_simulation(
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    n_mice: int = 2000,
    n_sessions: int = 25,
    seed: int = 0,
    device="cpu",
    dtype=torch.float32,
    chunk_size: int = 500,
    closure: str = "unscented",
) -> Comparison:
    """Simulate ``n_mice`` mice with :func:`mouse_rl.simulate_cohort` and compare with the mean-field.

    Both start from the same initial weights (:func:`init_weights` of
    ``params``; the simulated mice only add the ``params.jitter`` noise). The
    simulation runs in chunks of ``chunk_size`` mice with the cohort's own
    per-mouse seeds, so the result equals one ``n_mice`` cohort.

    Parameters
    ----------
    params, task : model and task (scalar hyperparameters).
    n_mice, n_sessions : cohort size and number of sessions.
    seed : cohort seed.
    device, dtype : of the simulation (the theory runs in float64 on ``device``).
    chunk_size : mice per :func:`simulate_cohort` call (bounds memory).
    closure : of :func:`mean_field_trajectory`: ``"unscented"`` (default; the
        cohort's mean and covariance, a Gaussian moment closure, within ~0.015
        of 2000 simulated mice on session P(R | stimulus) for the deep and
        shallow defaults with ``b_R = 0.05``) or ``"none"`` (one noise-free
        mouse: off by up to ~0.09 in sessions 16-25 of the deep network).
    """
    import time

    from ..simulate import mouse_names, simulate_cohort

    params = params or ModelParams()
    task = task or TaskConfig()
    if params.n_mice_hint() not in (None, 1):
        raise ValueError("params: compare_with_simulation takes scalar hyperparameters (one cohort)")
    if int(n_mice) != n_mice or n_mice < 1:
        raise ValueError(f"n_mice: must be a positive integer, got {n_mice!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size: must be a positive integer, got {chunk_size!r}")
    t0 = time.perf_counter()
    theory = mean_field_trajectory(params, task, n_sessions, device=device, dtype=torch.float64,
                                   record_every=task.trials_per_session, closure=closure)
    t_theory = time.perf_counter() - t0
    seeds, names = rng.mouse_seeds(seed, n_mice), mouse_names(n_mice)
    sums, weights = None, []
    t0 = time.perf_counter()
    for start in range(0, n_mice, int(chunk_size)):
        chunk = slice(start, start + int(chunk_size))
        n_chunk = len(seeds[chunk])
        sim = simulate_cohort(n_chunk, n_sessions, params=params, task=task, seeds=seeds[chunk], device=device,
                              dtype=dtype, progress=False)
        part = simulated_session_p_right(sim.trials)
        sums = part if sums is None else sums.add(part, fill_value=0)
        w = sim.weights
        w["mouse"] = w["mouse"].map(dict(zip(mouse_names(n_chunk), names[chunk])))  # chunk-local -> cohort names
        weights.append(w)
        del sim
    t_sim = time.perf_counter() - t0
    sim_p = (sums["sum"] / sums["count"]).unstack("side")
    theory_p = theory.session_p_right_side()[0]  # (S, 3)
    rows = []
    for s in range(1, n_sessions + 1):
        for j, (side, name) in enumerate(STIMULUS_SIDE_NAMES.items()):
            simulated = sim_p.loc[s, side] if side in sim_p.columns else np.nan
            rows.append((s, name, simulated, theory_p[s - 1, j]))
    p_df = pd.DataFrame(rows, columns=["session", "side", "simulated", "theory"])
    p_df["error"] = p_df["simulated"] - p_df["theory"]
    sim_w = pd.concat(weights, ignore_index=True)
    mean_w = sim_w.groupby("session")[WEIGHT_COLUMNS].mean()
    th_w = flat_weights(Weights(theory.session_a[0], theory.session_U[0])).cpu().numpy()
    th_w = pd.DataFrame(th_w, columns=WEIGHT_COLUMNS, index=pd.RangeIndex(0, n_sessions + 1, name="session"))
    w_df = pd.DataFrame({"simulated": mean_w.stack(), "theory": th_w.stack()}).reset_index()
    w_df.columns = ["session", "weight", "simulated", "theory"]
    w_df["error"] = w_df["simulated"] - w_df["theory"]
    return Comparison(
        p_df, w_df, float(np.nanmax(np.abs(p_df["error"]))), float(np.nanmax(np.abs(w_df["error"]))),
        theory, sim_w,
        {"n_mice": n_mice, "n_sessions": n_sessions, "seed": seed, "closure": closure, "seconds_theory": t_theory,
         "seconds_simulation": t_sim},
    )


def compare_deep_shallow(
    params: ModelParams | None = None,
    task: TaskConfig | None = None,
    w0_deep: float = 0.05,
    w0_shallow: float = 1.0,
    **kw,
) -> dict[str, Comparison]:
    """:func:`compare_with_simulation` for the deep (``w0_deep``) and shallow (``w0_shallow``) network.

    Returns ``{"deep": Comparison, "shallow": Comparison}``; other keyword
    arguments go to :func:`compare_with_simulation`.
    """
    params = params or ModelParams()
    return {name: compare_with_simulation(params.replace(w0=w0), task, **kw)
            for name, w0 in (("deep", w0_deep), ("shallow", w0_shallow))}
