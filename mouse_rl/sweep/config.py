"""Sweep configuration: parse and validate a TOML sweep file at the boundary.

A sweep file has the tables

``[sweep]``
    ``mode = "grid" | "random"``; ``seeds = [0, 1, 2]`` or ``n_seeds = 3``
    (seeds ``0 .. n_seeds - 1``; default ``[0]``); ``mice``, ``sessions``,
    ``trials`` (cohort size, sessions per mouse, trials per session);
    random mode only: ``n_samples`` and ``sample_seed`` (default 0, the seed
    of the parameter draws); optional ``dtype = "float32" | "float64"``.
``[grid]`` (grid mode)
    parameter name -> non-empty list of values; the sweep is the Cartesian
    product, in the order the keys are written.
``[random]`` (random mode)
    parameter name -> ``{low = .., high = .., log = true|false}``; each of
    ``n_samples`` points draws every parameter independently (log-uniform
    when ``log``).
``[model]`` / ``[task]``
    fixed overrides of :class:`mouse_rl.params.ModelParams` and
    :class:`envs.task.TaskConfig` fields shared by all points.

Parameter names are the field names of ``ModelParams`` (``eta``, ``beta``,
``w0``, ``k``, ``s0``, ``b_L``, ``b_R``, ``lapse``, ``encoding``,
``positive``, ``zero_reward``, ``jitter``) and ``TaskConfig``
(``contrasts``, ``probabilities``, ``repeat_after_error``,
``zero_reward_p_right``; trials per session is ``[sweep] trials``). The
kind of value each takes is read from the two dataclasses
(:data:`MODEL_KINDS`, :data:`TASK_KINDS`).
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from envs.task import TaskConfig

from ..params import PARAMS, ModelParams

MODES = ("grid", "random")
DTYPES = ("float32", "float64")

#: Kind of value a sweep accepts for a dataclass field, by the field's annotation.
_KIND_OF_ANNOTATION = {"float": "float", "bool": "bool", "str": "str", "tuple": "float_list"}


def _field_kinds(cls, skip=()) -> dict[str, str]:
    """Field name -> kind of value of the fields of dataclass ``cls`` (the registry's parameters are floats)."""
    kinds = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        annotation = f.type if isinstance(f.type, str) else f.type.__name__
        kinds[f.name] = "float" if f.name in PARAMS else _KIND_OF_ANNOTATION[annotation]
    return kinds


#: Model parameters and the kind of value each takes.
MODEL_KINDS: dict[str, str] = _field_kinds(ModelParams)
#: Task parameters and the kind of value each takes (trials per session lives in [sweep]).
TASK_KINDS: dict[str, str] = _field_kinds(TaskConfig, skip=("trials_per_session",))
PARAM_KINDS: dict[str, str] = {**MODEL_KINDS, **TASK_KINDS}
#: Parameters that a random search can draw (continuous scalars).
RANDOM_PARAMS = tuple(name for name, kind in PARAM_KINDS.items() if kind == "float")

SWEEP_KEYS = ("mode", "n_samples", "sample_seed", "seeds", "n_seeds", "mice", "sessions", "trials", "dtype")
TABLES = ("sweep", "grid", "random", "model", "task")
RANDOM_KEYS = ("low", "high", "log")
#: Largest cohort seed: per-mouse random streams are uint32, a larger seed would alias a smaller one.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class RandomRange:
    """Bounds of one randomly searched parameter (``log``: log-uniform)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep specification (see the module docstring for the TOML layout).

    Attributes
    ----------
    mode : ``"grid"`` or ``"random"``.
    seeds : cohort seeds; every parameter point is run once per seed.
    mice, sessions, trials : cohort size, sessions per mouse, trials per session.
    grid : parameter name -> tuple of values (grid mode).
    random : parameter name -> :class:`RandomRange` (random mode).
    n_samples : number of random parameter draws (random mode).
    sample_seed : seed of the random parameter draws.
    model, task : fixed overrides of ``ModelParams`` / ``TaskConfig`` fields.
    dtype : ``"float32"`` or ``"float64"``.
    """

    mode: str = "grid"
    seeds: tuple[int, ...] = (0,)
    mice: int = 30
    sessions: int = 25
    trials: int = 220
    grid: dict = field(default_factory=dict)
    random: dict = field(default_factory=dict)
    n_samples: int = 0
    sample_seed: int = 0
    model: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    dtype: str = "float32"

    @property
    def varied(self) -> tuple[str, ...]:
        """Names of the parameters that vary across points."""
        return tuple(self.grid if self.mode == "grid" else self.random)


def _fail(key: str, message: str):
    raise ValueError(f"{key}: {message}")


def _table(table: Any, where: str) -> Mapping:
    """``table`` if it is a TOML table (a mapping), else a ValueError naming ``where``."""
    if not isinstance(table, Mapping):
        _fail(where, f"must be a table, got {type(table).__name__}")
    return table


def _varied(table: Any, where: str):
    """``(name, value, key)`` of each parameter of a ``[grid]`` / ``[random]`` table, names checked."""
    for name, value in _table(table, where).items():
        _check_param_name(name, where)
        yield name, value, f"{where}.{name}"


def _check_keys(table: Mapping, allowed, where: str, what: str = "key") -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        _fail(where, f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                     f"valid: {', '.join(allowed)}")


def _int(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, f"must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        _fail(key, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        _fail(key, f"must be <= {maximum}, got {value}")
    return int(value)


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, f"must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        _fail(key, f"must be finite, got {value!r}")
    return float(value)


def check_value(name: str, value: Any, key: str) -> Any:
    """Type-check one value of parameter ``name`` (``key`` names it in errors) and normalise it."""
    kind = PARAM_KINDS[name]
    if kind == "float":
        return _float(value, key)
    if kind == "bool":
        if not isinstance(value, bool):
            _fail(key, f"must be true or false, got {value!r} ({type(value).__name__})")
        return value
    if kind == "str":
        if not isinstance(value, str):
            _fail(key, f"must be a string, got {value!r} ({type(value).__name__})")
        return value
    if not isinstance(value, (list, tuple)) or not value:
        _fail(key, f"must be a non-empty list of numbers, got {value!r}")
    return tuple(_float(v, f"{key}[{i}]") for i, v in enumerate(value))


def _check_param_name(name: str, where: str) -> None:
    if name not in PARAM_KINDS:
        _fail(f"{where}.{name}", f"unknown parameter {name!r}; valid: {', '.join(PARAM_KINDS)}")


def _parse_fixed(table: Mapping, where: str, kinds: Mapping[str, str]) -> dict:
    _table(table, where)
    if where == "task" and "trials_per_session" in table:
        _fail("task.trials_per_session", "set trials per session with [sweep] trials")
    _check_keys(table, list(kinds), where, "parameter")
    return {name: check_value(name, value, f"{where}.{name}") for name, value in table.items()}


def _parse_grid(table: Mapping) -> dict:
    grid = {}
    for name, values, key in _varied(table, "grid"):
        if not isinstance(values, list):
            _fail(key, f"must be a list of values, got {values!r} ({type(values).__name__})")
        if not values:
            _fail(key, "empty list; give at least one value")
        checked = tuple(check_value(name, v, f"{key}[{i}]") for i, v in enumerate(values))
        if len(set(checked)) != len(checked):
            _fail(key, f"duplicate values in {values!r}")
        grid[name] = checked
    return grid


def _parse_random(table: Mapping) -> dict:
    ranges = {}
    for name, spec, key in _varied(table, "random"):
        if name not in RANDOM_PARAMS:
            _fail(key, f"only continuous parameters can be drawn at random: {', '.join(RANDOM_PARAMS)}")
        if not isinstance(spec, Mapping):
            _fail(key, f"must be a table {{low = .., high = .., log = false}}, got {spec!r}")
        _check_keys(spec, RANDOM_KEYS, key)
        for required in ("low", "high"):
            if required not in spec:
                _fail(f"{key}.{required}", "missing")
        low, high = _float(spec["low"], f"{key}.low"), _float(spec["high"], f"{key}.high")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            _fail(f"{key}.log", f"must be true or false, got {log!r}")
        if not low <= high:
            _fail(key, f"need low <= high, got low={low}, high={high}")
        if log and low <= 0:
            _fail(f"{key}.low", f"must be > 0 for a log-uniform range, got {low}")
        ranges[name] = RandomRange(low, high, log)
    return ranges


def _parse_seeds(sweep: Mapping) -> tuple[int, ...]:
    if "seeds" in sweep and "n_seeds" in sweep:
        _fail("sweep.seeds", "give either seeds or n_seeds, not both")
    if "n_seeds" in sweep:
        return tuple(range(_int(sweep["n_seeds"], "sweep.n_seeds", 1, SEED_MAX + 1)))
    seeds = sweep.get("seeds", [0])
    if not isinstance(seeds, list):
        _fail("sweep.seeds", f"must be a list of integers, got {seeds!r}")
    if not seeds:
        _fail("sweep.seeds", "empty list; give at least one seed")
    out = tuple(_int(s, f"sweep.seeds[{i}]", 0, SEED_MAX) for i, s in enumerate(seeds))
    if len(set(out)) != len(out):
        _fail("sweep.seeds", f"duplicate seeds in {seeds}")
    return out


def parse_config(raw: Mapping) -> SweepConfig:
    """Validate a parsed TOML mapping and return a :class:`SweepConfig`.

    Raises
    ------
    ValueError
        Naming the offending key (``table.key``) for unknown tables, keys or
        parameter names (listing the valid ones), empty lists, wrong types,
        or values that :class:`ModelParams` / :class:`TaskConfig` reject.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"sweep config must be a mapping of tables, got {type(raw).__name__}")
    _check_keys(raw, TABLES, "config", "table")
    if not any(raw.get(table) for table in TABLES):
        raise ValueError("config: the sweep file is empty (no [sweep], [grid], [random], [model] or [task] "
                         "settings); see bench/sweep_example.toml for the layout")
    sweep = _table(raw.get("sweep", {}), "sweep")
    _check_keys(sweep, SWEEP_KEYS, "sweep")
    mode = sweep.get("mode", "grid")
    if mode not in MODES:
        _fail("sweep.mode", f"must be one of {MODES}, got {mode!r}")
    default = SweepConfig()
    dtype = sweep.get("dtype", default.dtype)
    if dtype not in DTYPES:
        _fail("sweep.dtype", f"must be one of {DTYPES}, got {dtype!r}")
    kwargs = dict(
        mode=mode,
        seeds=_parse_seeds(sweep),
        mice=_int(sweep.get("mice", default.mice), "sweep.mice", 1),
        sessions=_int(sweep.get("sessions", default.sessions), "sweep.sessions", 1),
        trials=_int(sweep.get("trials", default.trials), "sweep.trials", 1),
        model=_parse_fixed(raw.get("model", {}), "model", MODEL_KINDS),
        task=_parse_fixed(raw.get("task", {}), "task", TASK_KINDS),
        dtype=dtype,
    )
    if mode == "grid":
        if "random" in raw:
            _fail("random", 'a [random] table needs mode = "random"')
        for key in ("n_samples", "sample_seed"):
            if key in sweep:
                _fail(f"sweep.{key}", 'only used with mode = "random"')
        kwargs["grid"] = _parse_grid(raw.get("grid", {}))
        varied = kwargs["grid"]
    else:
        if "grid" in raw:
            _fail("grid", 'a [grid] table needs mode = "grid"')
        if "n_samples" not in sweep:
            _fail("sweep.n_samples", 'required with mode = "random"')
        kwargs["n_samples"] = _int(sweep["n_samples"], "sweep.n_samples", 1)
        kwargs["sample_seed"] = _int(sweep.get("sample_seed", 0), "sweep.sample_seed", 0)
        kwargs["random"] = _parse_random(raw.get("random", {}))
        varied = kwargs["random"]
    for name in varied:
        fixed = "model" if name in MODEL_KINDS else "task"
        if name in kwargs[fixed]:
            _fail(f"{fixed}.{name}", f"{name!r} is both fixed in [{fixed}] and varied in [{mode}]")
    config = SweepConfig(**kwargs)
    _check_fixed_values(config)
    return config


def _check_fixed_values(config: SweepConfig) -> None:
    """Let ModelParams / TaskConfig validate the fixed overrides (varied values are checked per point).

    Task fields depend on each other (one probability per contrast), so when
    a task field is varied the fixed task fields are checked together with
    the varied ones, point by point, in :func:`~mouse_rl.sweep.points.expand_points`.
    """
    try:
        ModelParams(**config.model)
    except ValueError as err:
        raise ValueError(f"model.{err}") from None
    if any(name in TASK_KINDS for name in config.varied):
        return
    try:
        TaskConfig(**{**config.task, "trials_per_session": config.trials})
    except ValueError as err:
        raise ValueError(f"task.{err}") from None


def load_config(source) -> SweepConfig:
    """Load a sweep from a TOML file path, a TOML string's parsed dict, or a :class:`SweepConfig`.

    Parameters
    ----------
    source : str, os.PathLike, Mapping or SweepConfig
        A path to a ``.toml`` file, an already parsed mapping, or a config.

    Returns
    -------
    SweepConfig
    """
    if isinstance(source, SweepConfig):
        return source
    if isinstance(source, Mapping):
        return parse_config(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {str(path)!r} not found")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: invalid TOML: {err}") from None
    return parse_config(raw)


def config_dict(config: SweepConfig) -> dict:
    """JSON-ready description of a config (written beside the results)."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "random":
            value = {k: vars(v) for k, v in value.items()}
        elif f.name == "grid":
            value = {k: list(v) for k, v in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
