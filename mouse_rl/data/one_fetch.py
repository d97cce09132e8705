"""Download one IBL subject's trials through ONE (the optional ``one-api`` package) and load them.

``one-api`` is an optional extra (``pip install 'mouse-rl[ibl]'``); nothing
else in mouse_rl needs it. :func:`fetch_subject` asks ONE for the subject's
sessions, downloads each session's ``trials`` object (``alf`` collection) into
the ONE cache folder, then reads them with
:func:`mouse_rl.data.alf.load_one_cache`'s machinery (chronological session
numbers, no-go trials dropped with a count, ``probabilityLeft`` kept) and
writes the trial table beside them.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

__all__ = ["DEFAULT_BASE_URL", "connect", "fetch_subject"]

#: IBL's public database (ONE's documented public server).
DEFAULT_BASE_URL = "https://openalyx.internationalbrainlab.org"
INSTALL_HINT = "fetch-ibl needs the optional one-api package: pip install 'mouse-rl[ibl]' (or pip install ONE-api)"


def connect(cache_dir, base_url: str = DEFAULT_BASE_URL, mode: str = "auto"):
    """A ``one.api.ONE`` instance with its cache in ``cache_dir`` (raises ImportError with an install hint).

    ``mode``: ``"local"`` (only what is cached in ``cache_dir``, no server), ``"remote"`` (ask ``base_url``),
    or ``"auto"`` (ONE's own default with ``base_url``: ``"auto"`` in ONE 2, ``"remote"`` in ONE 3).
    """
    if mode not in ("auto", "local", "remote"):
        raise ValueError(f"mode: must be 'auto', 'local' or 'remote', got {mode!r}")
    try:
        from one.api import ONE
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    if mode == "local":
        return ONE(cache_dir=str(cache_dir), mode="local")
    kwargs = dict(cache_dir=str(cache_dir), base_url=base_url, silent=True)
    return ONE(**kwargs) if mode == "auto" else ONE(mode=mode, **kwargs)


def _missing_errors() -> tuple:
    errors = [FileNotFoundError, LookupError]
    try:
        from one.alf.exceptions import ALFError
        errors.append(ALFError)
    except ImportError:
        pass
    return tuple(errors)


def fetch_subject(subject: str, out, one=None, *, collection: str = "alf", base_url: str = DEFAULT_BASE_URL,
                  mode: str = "auto", max_gap_days: float = 7) -> tuple[pd.DataFrame, Path]:
    """Fetch every session with a trials object of ``subject`` into ``out`` and load them as one trial table.

    Parameters
    ----------
    subject : str
        IBL subject nickname (e.g. ``"SWC_043"``).
    out : str or pathlib.Path
        Folder: the ONE cache (ALF files land in ``<lab>/Subjects/<subject>/<date>/<NNN>/alf/``) and
        the output ``<subject>_trials.parquet``.
    one : optional
        A ``one.api.ONE``-like object (``search``, ``load_object``, ``eid2path``); default :func:`connect`.
    collection : str
        ALF collection of the trials object.
    base_url, mode : ONE server and mode (see :func:`connect`).
    max_gap_days : float
        Warn when consecutive sessions are further apart (days).

    Returns
    -------
    (trials, path)
        The trial table (:func:`mouse_rl.data.alf.load_one_cache` columns) and the parquet file written.
    """
    from mouse_rl.data.alf import _load_many
    from mouse_rl.data.loaders import write_trials

    if not isinstance(subject, str) or not subject.strip() or any(c in subject for c in "/\\"):
        raise ValueError(f"subject: must be a subject nickname (no path separators), got {subject!r}")
    out = Path(out)
    one = connect(out, base_url, mode) if one is None else one
    out.mkdir(parents=True, exist_ok=True)
    eids = list(one.search(subject=subject))
    if not eids:
        raise FileNotFoundError(f"subject {subject!r}: ONE found no sessions (mode={mode!r})")
    paths, skipped = [], []
    for eid in eids:
        try:
            one.load_object(eid, "trials", collection=collection, download_only=True)
        except _missing_errors():
            skipped.append(str(eid))
            continue
        paths.append(Path(one.eid2path(eid)))
    if skipped:
        warnings.warn(f"subject {subject!r}: {len(skipped)} of {len(eids)} sessions have no trials object in "
                      f"collection {collection!r}; skipped {skipped[:5]}", UserWarning, stacklevel=2)
    if not paths:
        raise FileNotFoundError(f"subject {subject!r}: none of its {len(eids)} sessions has a trials object")
    trials = _load_many(sorted(paths), f"subject {subject!r}", collection, "auto", max_gap_days)
    path = write_trials(trials, out / f"{subject}_trials.parquet")
    return trials, path
