"""Expand a :class:`~mouse_rl.sweep.config.SweepConfig` into points (parameters x seed).

A :class:`Point` is one batched cohort run: fully resolved model and task
parameters, cohort size, and the cohort seed. Its :attr:`Point.point_id` is a
stable hash of all of these, so a rerun of the same sweep finds the points it
already finished, and a changed setting never reuses a stale result.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from envs.task import TaskConfig

from ..params import ModelParams
from .config import MODEL_KINDS, SweepConfig


@dataclass(frozen=True)
class Point:
    """One simulation of a sweep.

    Attributes
    ----------
    index : position in the sweep's expansion order (rows of the results table).
    model : every :class:`ModelParams` field, resolved (fixed + varied values).
    task : every :class:`TaskConfig` field, resolved.
    seed : cohort seed passed to :func:`mouse_rl.simulate.simulate_cohort`.
    mice, sessions : cohort size and sessions per mouse.
    dtype : ``"float32"`` or ``"float64"``.
    varied : names of the parameters the sweep varies.
    """

    index: int
    model: dict
    task: dict
    seed: int
    mice: int
    sessions: int
    dtype: str
    varied: tuple[str, ...] = ()

    @property
    def spec(self) -> dict:
        """Everything that determines the simulation (hashed into :attr:`point_id`)."""
        return {"model": self.model, "task": self.task, "seed": self.seed, "mice": self.mice,
                "sessions": self.sessions, "dtype": self.dtype}

    @property
    def point_id(self) -> str:
        """Stable 16-hex-digit hash of :attr:`spec` (independent of :attr:`index`)."""
        return point_hash(self.spec)

    def model_params(self) -> ModelParams:
        return ModelParams(**self.model)

    def task_config(self) -> TaskConfig:
        return TaskConfig(**self.task)


def point_hash(spec: dict) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``spec``."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value):
    """Python scalars / lists only (stable JSON, picklable, parquet friendly)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _resolve(config: SweepConfig, values: dict) -> tuple[dict, dict]:
    model = {**ModelParams().to_dict(), **config.model}
    task = {**asdict(TaskConfig()), "trials_per_session": config.trials, **config.task}
    for name, value in values.items():
        (model if name in MODEL_KINDS else task)[name] = value
    model = {k: _plain(v) for k, v in model.items()}
    task = {k: _plain(v) for k, v in task.items()}
    return model, task


def _check_point(config: SweepConfig, model: dict, task: dict, values: dict) -> None:
    where = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "fixed parameters"
    try:
        ModelParams(**model)
        TaskConfig(**{**task, "contrasts": tuple(task["contrasts"]), "probabilities": tuple(task["probabilities"])})
    except ValueError as err:
        section = config.mode
        raise ValueError(f"{section}.{err} (at point {where})") from None


def parameter_sets(config: SweepConfig) -> list[dict]:
    """The varied-parameter values of every point, before crossing with seeds.

    Grid mode: the Cartesian product of the ``[grid]`` lists (first key
    slowest). Random mode: ``n_samples`` independent draws from a
    ``numpy.random.default_rng(sample_seed)``; parameters are drawn in sorted
    name order, so the draws do not depend on the order of keys in the file.
    """
    if config.mode == "grid":
        names = list(config.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*config.grid.values())]
    gen = np.random.default_rng(config.sample_seed)
    names = sorted(config.random)
    columns = {}
    for name in names:
        r = config.random[name]
        u = gen.random(config.n_samples)
        if r.log:
            lo, hi = math.log(r.low), math.log(r.high)
            x = np.exp(lo + u * (hi - lo))
        else:
            x = r.low + u * (r.high - r.low)
        columns[name] = np.clip(x, r.low, r.high)  # guard exp/log rounding at the ends
    ordered = list(config.random)
    return [{name: float(columns[name][i]) for name in ordered} for i in range(config.n_samples)]


def expand_points(config: SweepConfig) -> list[Point]:
    """Cross the parameter sets with the seeds: ``len(parameter_sets) * len(seeds)`` points.

    Order: parameter set major, seed minor. Every point is validated by
    :class:`ModelParams` / :class:`TaskConfig`; an illegal value raises a
    ValueError naming the field and the point.
    """
    points = []
    for values in parameter_sets(config):
        model, task = _resolve(config, values)
        _check_point(config, model, task, values)
        for seed in config.seeds:
            points.append(Point(len(points), model, task, int(seed), config.mice, config.sessions,
                                config.dtype, config.varied))
    ids = [p.point_id for p in points]
    if len(set(ids)) != len(ids):  # only possible with duplicate random draws
        raise ValueError("sweep has duplicate points (identical parameters and seed); "
                         "widen the [random] ranges or change sweep.sample_seed")
    return points
