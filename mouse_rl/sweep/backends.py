"""Run a function over many items: sequentially, in local processes, or on Ray.

:func:`map_points` is generic (sweeps use it for simulation points; fitting
commands can use it for mice): ``func`` and the items must be picklable
(``func`` a module-level function) for every backend but sequential.

Backends
--------
``"local"``
    ``workers`` None or 1: sequential in this process. ``workers > 1``: a
    :class:`concurrent.futures.ProcessPoolExecutor` (spawned processes, one
    torch thread each).
``"ray"``
    Each item is one ``ray.remote`` task. Connects to ``address`` (e.g.
    ``"auto"`` or ``"ray://head:10001"``), or starts a local Ray instance
    with ``num_cpus=workers``; reuses an already initialised Ray session.
    Ray is optional: ``pip install -e '.[ray]'``.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from .parent_watch import die_with_parent

BACKENDS = ("local", "ray")


class BackendUnavailableError(ImportError):
    """The requested backend's package is not installed."""


def check_backend(backend: str, address: str | None = None, workers: int | None = None) -> None:
    """Validate backend options (raises ValueError naming the option)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {BACKENDS}, got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise ValueError(f"workers: must be a positive integer, got {workers!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address: only used with backend 'ray', got backend {backend!r}")


def import_ray():
    """Import ray lazily, with an install hint when it is missing."""
    try:
        import ray
    except ImportError as err:
        raise BackendUnavailableError(
            "backend 'ray' needs the ray package, which is not installed: pip install -e '.[ray]'"
        ) from err
    return ray


def _init_worker(parent: int | None = None) -> None:
    """Exit with the parent process (:mod:`.parent_watch`); one compute thread per worker (they share the cores)."""
    if parent is not None:
        die_with_parent(parent)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _run_sequential(func, items, on_done):
    for i, item in enumerate(items):
        on_done(i, func(item))


def _run_pool(func, items, workers, on_done):
    ctx = multiprocessing.get_context("spawn")  # fork after torch threads may deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(func, item): i for i, item in enumerate(items)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_done(pending.pop(fut), fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _apply(func, item):
    """Module-level trampoline: ``ray.remote`` needs a Python function, ``func`` may be any callable."""
    return func(item)


def _run_ray(func, items, address, workers, on_done, ray_options=None):
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
        started = True
    try:
        remote = ray.remote(_apply)
        if ray_options:
            remote = remote.options(**ray_options)
        func_ref = ray.put(func)
        refs = {remote.remote(func_ref, item): i for i, item in enumerate(items)}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    on_done(refs.pop(ref), ray.get(ref))
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


def map_points(
    func: Callable[[Any], Any],
    items: Iterable[Any],
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    on_result: Callable[[int, Any], None] | None = None,
    progress: bool = False,
    desc: str = "points",
    ray_options: dict | None = None,
) -> list:
    """Apply ``func`` to every item on the chosen backend.

    Parameters
    ----------
    func : callable
        ``func(item) -> result``; module-level (picklable) for process and Ray backends.
    items : iterable
        Inputs (picklable for process and Ray backends).
    backend : ``"local"`` or ``"ray"``.
    address : str, optional
        Ray cluster address (``"auto"``, ``"ray://host:10001"``); None starts a local Ray.
    workers : int, optional
        Local: number of processes (None or 1 = sequential). Ray without
        ``address``: ``num_cpus`` of the local instance.
    on_result : callable, optional
        ``on_result(index, result)``, called in this process as each item
        finishes (completion order), e.g. to checkpoint it.
    progress : bool
        Show a tqdm bar over items.
    desc : str
        Label of the progress bar.
    ray_options : dict, optional
        Resources of each Ray task, e.g. ``{"num_gpus": 1}`` (``ray.remote(...).options``).

    Returns
    -------
    list
        Results in the order of ``items``.

    Raises
    ------
    ValueError
        Bad backend options.
    BackendUnavailableError
        ``backend="ray"`` without ray installed.
    Exception
        The first exception raised by ``func``; results finished before it
        have already been passed to ``on_result``.
    """
    check_backend(backend, address, workers)
    items: Sequence = list(items)
    results: list = [None] * len(items)
    if not items:
        return results
    bar = tqdm(total=len(items), desc=desc, unit="point", disable=not progress)

    def on_done(i, result):
        results[i] = result
        if on_result is not None:
            on_result(i, result)
        bar.update(1)

    try:
        if backend == "ray":
            _run_ray(func, items, address, workers, on_done, ray_options)
        elif workers is None or workers == 1:
            _run_sequential(func, items, on_done)
        else:
            _run_pool(func, items, int(workers), on_done)
    finally:
        bar.close()
    return results
