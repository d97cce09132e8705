"""Up-front size checks: refuse absurd sizes with an estimate of memory and time, before any work.

Estimates are deliberately rough (measured on a 2-core CPU, torch 2.13):
a simulated trial table costs ~400 bytes per mouse-trial in memory (peak,
including the parquet write) and the batched simulation runs ~3 x 10^6
mouse-trials/s; the mean-field theory costs ~1 ms per trial step. A run is
refused when its memory estimate exceeds the memory available now, or (theory)
when it would take more than :data:`MAX_THEORY_STEPS` trial steps.
"""
from __future__ import annotations

import os

#: Peak bytes per simulated mouse-trial (trial table + logs + parquet write).
SIMULATION_BYTES_PER_TRIAL = 400
#: Extra bytes per mouse-trial when the weights of every trial are logged.
WEIGHT_BYTES_PER_TRIAL = 250
#: Autograd bytes per mouse-trial and restart of a batched fit, and per trial step of its graph.
FIT_BYTES_PER_TRIAL, FIT_BYTES_PER_STEP = 400, 50_000
#: Bytes of the interpreter, torch and pandas themselves.
BASE_BYTES = 500 * 2**20
#: Simulation throughput used for time estimates (mouse-trials per second, CPU).
SIMULATION_RATE = 3e6
#: Peak bytes per mouse-session of ``simulate --log sessions`` (summary row + weight snapshot + parquet write).
SESSION_ROW_BYTES = 1000
#: Longest simulation ``simulate --log sessions`` accepts (its memory does not grow with --trials).
MAX_SIMULATION_SECONDS = 7 * 86400
#: Mean-field theory: seconds per trial step, and the most steps a run may take.
THEORY_SECONDS_PER_STEP = 1e-3
MAX_THEORY_STEPS = 10**7


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo, else free pages), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def human_seconds(s: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"


def check_memory(needed: float, what: str, hint: str, extra: str = "") -> None:
    """Raise ValueError if ``needed`` bytes exceed the memory available now."""
    available = available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"{what} needs about {human_bytes(needed)} of memory{extra} but {human_bytes(available)} "
            f"is available; {hint}"
        )


def _count(option: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{option}: must be a positive integer, got {value!r}")
    return int(value)


def check_cohort_size(n_mice, n_sessions, trials, *, options=("--mice", "--sessions", "--trials"),
                      record_weights: str = "session", copies: int = 1, fit_restarts: int = 0) -> None:
    """Refuse a simulated cohort (and optional batched fit of it) that cannot fit in memory.

    ``copies`` cohorts run at once (sweep workers); ``fit_restarts`` > 0 adds
    the autograd graph of a batched fit with that many restarts.
    """
    n_mice, n_sessions, trials = (_count(o, v) for o, v in zip(options, (n_mice, n_sessions, trials)))
    mouse_trials = n_mice * n_sessions * trials
    per_trial = SIMULATION_BYTES_PER_TRIAL + (WEIGHT_BYTES_PER_TRIAL if record_weights == "trial" else 0)
    needed = mouse_trials * per_trial * copies
    if fit_restarts:
        needed += mouse_trials * FIT_BYTES_PER_TRIAL * fit_restarts + n_sessions * trials * FIT_BYTES_PER_STEP
    what = (f"{' x '.join(f'{o} {v:,}' for o, v in zip(options, (n_mice, n_sessions, trials)))} "
            f"= {mouse_trials:,} mouse-trials" + (f" x {copies} at once" if copies > 1 else ""))
    check_memory(BASE_BYTES + needed, what, f"reduce {'/'.join(options)}",
                 extra=f" (and roughly {human_seconds(mouse_trials * copies / SIMULATION_RATE)} of CPU time)")


def check_session_log_size(n_mice, n_sessions, trials, options=("--mice", "--sessions", "--trials")) -> None:
    """``simulate --log sessions``: refuse a run whose per-session rows (and weight snapshots) cannot fit in
    memory, or whose simulation would take more than :data:`MAX_SIMULATION_SECONDS`."""
    n_mice, n_sessions, trials = (_count(o, v) for o, v in zip(options, (n_mice, n_sessions, trials)))
    rows, mouse_trials = n_mice * n_sessions, n_mice * n_sessions * trials
    seconds = mouse_trials / SIMULATION_RATE
    what = f"{' x '.join(f'{o} {v:,}' for o, v in zip(options, (n_mice, n_sessions, trials)))}"
    if seconds > MAX_SIMULATION_SECONDS:
        raise ValueError(f"{what} = {mouse_trials:,} mouse-trials would take roughly {human_seconds(seconds)} of "
                         f"CPU time (at most {human_seconds(MAX_SIMULATION_SECONDS)} is allowed); reduce "
                         f"{'/'.join(options)}")
    check_memory(BASE_BYTES + rows * SESSION_ROW_BYTES, f"{what} = {rows:,} mouse-sessions",
                 f"reduce {'/'.join(options[:2])}")


def check_copies_size(n_trials: int, copies: int, option: str = "--copies") -> None:
    """Refuse ``copies`` free-running copies of ``n_trials`` fitted trials that cannot fit in memory."""
    total = n_trials * copies
    check_memory(BASE_BYTES + total * SIMULATION_BYTES_PER_TRIAL,
                 f"{option} {copies:,} x {n_trials:,} trials = {total:,} simulated trials",
                 f"reduce {option}", extra=f" (and roughly {human_seconds(total / SIMULATION_RATE)} of CPU time)")


def check_theory_size(n_sessions, trials, per: str = "session", options=("--sessions", "--trials")) -> None:
    """Refuse a mean-field run of more than :data:`MAX_THEORY_STEPS` trial steps, or one that cannot fit in memory."""
    n_sessions, trials = (_count(o, v) for o, v in zip(options, (n_sessions, trials)))
    steps = n_sessions * trials
    if trials > MAX_THEORY_STEPS:
        raise ValueError(f"{options[1]}: {trials:,} trials per session is more than the {MAX_THEORY_STEPS:,} "
                         f"mean-field trial steps a run may take (roughly "
                         f"{human_seconds(MAX_THEORY_STEPS * THEORY_SECONDS_PER_STEP)})")
    if steps > MAX_THEORY_STEPS:
        raise ValueError(
            f"{options[0]}: {options[0]} {n_sessions:,} x {options[1]} {trials:,} = {steps:,} mean-field trial steps "
            f"would take roughly {human_seconds(steps * THEORY_SECONDS_PER_STEP)}; at most {MAX_THEORY_STEPS:,} "
            f"steps ({MAX_THEORY_STEPS // trials:,} sessions of {trials} trials) are allowed"
        )
    rows = steps if per == "trial" else n_sessions
    check_memory(BASE_BYTES + rows * 1000, f"{options[0]} {n_sessions:,} with one row per {per}",
                 f"reduce {options[0]} or use --per session")
