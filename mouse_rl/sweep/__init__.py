"""Parameter sweeps of the simulated cohort, on a local or Ray backend.

* :func:`run_sweep` -- expand a TOML sweep (grid or random search) into
  points (parameters x seed), simulate each point as one batched cohort,
  reduce it to a summary row and collect one results table, checkpointing
  every finished point so an interrupted sweep resumes.
* :func:`load_config` / :class:`SweepConfig` -- the validated sweep file.
* :func:`expand_points` / :class:`Point` -- the points and their stable ids.
* :func:`cohort_summary` -- the per-point metrics.
* :func:`map_points` -- generic ``func`` over items on the local (sequential
  or process pool) or Ray backend; also used to fit many mice.
"""
from .backends import BACKENDS, BackendUnavailableError, map_points
from .config import PARAM_KINDS, RANDOM_PARAMS, SweepConfig, load_config, parse_config
from .points import Point, expand_points, parameter_sets
from .runner import RESULTS_NAME, run_point, run_sweep
from .summary import METRIC_COLUMNS, cohort_summary

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "map_points",
    "PARAM_KINDS",
    "RANDOM_PARAMS",
    "SweepConfig",
    "load_config",
    "parse_config",
    "Point",
    "expand_points",
    "parameter_sets",
    "RESULTS_NAME",
    "run_point",
    "run_sweep",
    "METRIC_COLUMNS",
    "cohort_summary",
]
