"""Fit many mice on a sweep backend (local processes or a Ray cluster): chunks of mice, one batched fit each."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .fitting import FitResult, fit_mice


def _fit_chunk(item) -> FitResult:
    trials, kwargs = item
    return fit_mice(trials, progress=False, **kwargs)


def fit_mice_distributed(trials: pd.DataFrame, n_chunks: int, backend: str = "local", address: str | None = None,
                         workers: int | None = None, **fit_kwargs) -> FitResult:
    """:func:`fit_mice` with the mice split into ``n_chunks`` groups fitted in parallel.

    Each chunk is one batched fit on a worker of :func:`mouse_rl.sweep.backends.map_points`
    (``backend="local"`` with ``workers`` processes, or ``"ray"`` at ``address``).
    Every mouse is fitted on its own (per-mouse Newton, restart design shared
    by all mice), so the result equals one big fit, mouse by mouse.
    """
    from ..sweep.backends import map_points

    if int(n_chunks) != n_chunks or n_chunks < 1:
        raise ValueError(f"n_chunks: must be a positive integer, got {n_chunks!r}")
    mice = pd.unique(trials["mouse"])
    groups = [g for g in np.array_split(np.asarray(mice, dtype=object), n_chunks) if len(g)]
    items = [(trials[trials["mouse"].isin(g)], fit_kwargs) for g in groups]
    results = map_points(_fit_chunk, items, backend=backend, address=address, workers=workers)
    seconds = sum(r.options.get("seconds", 0.0) for r in results)
    return FitResult(
        params=pd.concat([r.params for r in results], ignore_index=True),
        trials=pd.concat([r.trials for r in results], ignore_index=True),
        restarts=pd.concat([r.restarts for r in results], ignore_index=True),
        transform=results[0].transform,
        options={**results[0].options, "seconds": seconds, "chunks": len(results), "backend": backend},
        u=None if any(r.u is None for r in results) else np.concatenate([r.u for r in results]),
        hessian=None if any(r.hessian is None for r in results) else np.concatenate([r.hessian for r in results]),
    )
