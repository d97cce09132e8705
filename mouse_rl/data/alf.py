"""Loaders for IBL ALF session folders, subject folders and ONE caches.

Layouts read (no ``one-api`` needed; they are what ONE downloads):

* a **session folder** ``.../<subject>/<YYYY-MM-DD>/<NNN>/`` with the trials
  object in ``alf/`` (or ``alf/<collection>/``, e.g. ``alf/task_00``), either as
  one file per attribute (``_ibl_trials.choice.npy``,
  ``_ibl_trials.contrastLeft.npy``, ...; 2-D attributes such as ``intervals``
  become ``intervals_0``, ``intervals_1``, as ONE's ``to_df`` does) or as the
  table ``_ibl_trials.table.pqt`` (attributes found in both: the table wins;
  per-attribute files not in the table are added). ALF revision folders
  (``alf/#2023-01-01#/``) override the base files, latest revision first.
* a **subject folder** ``.../<subject>/`` holding ``<YYYY-MM-DD>/<NNN>/`` sessions;
* a **ONE cache** root: every ``<subject>/<YYYY-MM-DD>/<NNN>/`` session found
  below it (``<lab>/Subjects/<subject>/...`` or ``Subjects/<lab>/<subject>/...``
  alike), optionally for one subject.

Conventions, shared with :func:`mouse_rl.data.load_ibl_trials` (which does the
final conversion, so a flat table of the same trials loads identically): IBL
``choice`` -1 = rightward report -> 1 (Right), +1 -> 0 (Left), 0 = no-go ->
dropped with a count (:class:`UserWarning`); contrasts NaN on the unused side ->
0.0; ``feedbackType`` +1/-1 -> ``reward`` 1/0 (known at zero contrast too);
``response_times`` made relative to ``stimOn_times`` (s).

Kept beside :data:`mouse_rl.data.TRIAL_COLUMNS`: ``probabilityLeft`` (IBL's
probability of a left stimulus: 0.5 in training, the block's 0.2/0.8 in the
biased task; NaN where absent), ``date`` (``YYYY-MM-DD``), ``session_number``
(the ``NNN`` folder), ``session_start_time`` (ISO string from the task
settings file, where found) and ``session_path``.

Session order: by date, then start time (where known), then folder number;
sessions are numbered 1..S per subject in that order. A
:class:`UserWarning` flags ties (two sessions with the same date and start
time) and gaps (more than ``max_gap_days`` between consecutive sessions), and
names session folders skipped for lacking trials.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mouse_rl.data._tidy import TRIAL_COLUMNS
from mouse_rl.data.ibl import load_ibl_trials
from mouse_rl.data.validation import DataFormatError

__all__ = [
    "read_alf_trials",
    "load_alf_session",
    "load_alf_subject",
    "load_one_cache",
    "find_sessions",
    "EXTRA_COLUMNS",
]

#: Columns kept beside :data:`mouse_rl.data.TRIAL_COLUMNS`.
EXTRA_COLUMNS = ["probabilityLeft", "date", "session_number", "session_start_time", "session_path"]
_OBJECT = "trials"
_NPY = re.compile(r"^_(?P<ns>[A-Za-z0-9]+)_trials\.(?P<attr>[A-Za-z0-9_]+)(?:\.[^.]+)*\.npy$")
_TABLE = re.compile(r"^_(?P<ns>[A-Za-z0-9]+)_trials\.table(?:\.[^.]+)*\.pqt$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^\d{1,3}$")
_REVISION = re.compile(r"^#.+#$")
_SETTINGS_GLOBS = ("raw_behavior_data/_iblrig_taskSettings.raw*.json", "raw_task_data_*/_iblrig_taskSettings.raw*.json")
_START_KEYS = ("SESSION_START_TIME", "SESSION_DATETIME")


def _trials_dirs(alf: Path) -> list[Path]:
    """``alf`` then its revision folders, oldest first (later ones override)."""
    revisions = sorted(p for p in alf.iterdir() if p.is_dir() and _REVISION.match(p.name))
    return [alf, *revisions]


def _has_trials(folder: Path) -> bool:
    return folder.is_dir() and any(_NPY.match(p.name) or _TABLE.match(p.name) for p in folder.iterdir())


def _collection(session_path: Path, collection: str | None) -> Path:
    """The folder holding the trials object: ``alf``, ``alf/<collection>`` or the path itself."""
    session_path = Path(session_path)
    if collection is not None:
        folder = session_path / collection
        if not folder.is_dir():
            raise FileNotFoundError(f"{session_path}: no collection folder {collection!r}")
        return folder
    if _has_trials(session_path):
        return session_path
    alf = session_path / "alf"
    if not alf.is_dir():
        raise FileNotFoundError(f"{session_path}: no 'alf' folder and no _ibl_trials.* files")
    if any(_has_trials(d) for d in _trials_dirs(alf)):
        return alf
    found = sorted(p for p in alf.iterdir() if p.is_dir() and not _REVISION.match(p.name)
                   and any(_has_trials(d) for d in _trials_dirs(p)))
    if len(found) == 1:
        return found[0]
    if found:
        raise DataFormatError(f"{session_path}: trials in several collections {[p.name for p in found]}; "
                              "pass collection='alf/<name>'")
    raise FileNotFoundError(f"{session_path}: no _ibl_trials.* files under {alf}")


def read_alf_trials(session_path, collection: str | None = None, form: str = "auto") -> pd.DataFrame:
    """Read one session's ALF trials object as a DataFrame in IBL's own conventions.

    Parameters
    ----------
    session_path : str or pathlib.Path
        Session folder (with ``alf/``), or the folder holding the trials files.
    collection : str, optional
        Sub-folder of ``session_path`` with the trials (default: ``alf``, or its
        single sub-collection that has trials).
    form : {"auto", "table", "npy"}
        "auto" reads the table and any per-attribute files; "table" /
        "npy" read only that form.

    Returns
    -------
    pandas.DataFrame
        One row per trial, one column per attribute (``choice``,
        ``contrastLeft``, ``feedbackType``, ``probabilityLeft``, ...), values
        as stored.
    """
    if form not in ("auto", "table", "npy"):
        raise ValueError(f"form: must be 'auto', 'table' or 'npy', got {form!r}")
    folder = _collection(Path(session_path), collection)
    table_file, npy_files = None, {}
    for d in _trials_dirs(folder):
        for p in sorted(d.iterdir()):
            if _TABLE.match(p.name):
                table_file = p
            elif (m := _NPY.match(p.name)) is not None:
                npy_files[m["attr"]] = p
    columns: dict[str, np.ndarray] = {}
    n = None
    if table_file is not None and form in ("auto", "table"):
        table = pd.read_parquet(table_file)
        columns.update({c: table[c].to_numpy() for c in table.columns})
        n = len(table)
    elif form == "table":
        raise FileNotFoundError(f"{folder}: no _ibl_trials.table.pqt")
    if form in ("auto", "npy"):
        for attr, p in npy_files.items():
            if attr in columns or attr == "table":
                continue
            arr = np.load(p, allow_pickle=False)
            parts = {attr: arr} if arr.ndim == 1 else {f"{attr}_{i}": arr[:, i] for i in range(arr.shape[1])}
            for name, values in parts.items():
                if name in columns:
                    continue
                if n is not None and len(values) != n:
                    warnings.warn(f"{p}: {len(values)} values but the trials object has {n} trials; "
                                  f"attribute {name!r} skipped", UserWarning, stacklevel=2)
                    continue
                n = len(values) if n is None else n
                columns[name] = values
    if not columns:
        raise FileNotFoundError(f"{folder}: no trials attributes found (form={form!r})")
    return pd.DataFrame(columns)


def _start_time(session_path: Path) -> str | None:
    for pattern in _SETTINGS_GLOBS:
        for p in sorted(session_path.glob(pattern)):
            try:
                settings = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            for key in _START_KEYS:
                if settings.get(key):
                    return str(pd.Timestamp(settings[key]).isoformat())
    return None


def _session_identity(session_path: Path, mouse: str | None) -> tuple[str, str | None, int | None]:
    parts = Path(session_path).absolute().parts
    date = parts[-2] if len(parts) >= 3 and _DATE.match(parts[-2]) and _NUMBER.match(parts[-1]) else None
    number = int(parts[-1]) if date else None
    if mouse is None:
        if date is None:
            raise DataFormatError(f"{session_path}: not a <subject>/<YYYY-MM-DD>/<NNN> folder; pass mouse=...")
        mouse = parts[-3]
    return str(mouse), date, number


def _raw_session(session_path: Path, mouse: str | None, collection, form) -> pd.DataFrame:
    raw = read_alf_trials(session_path, collection=collection, form=form)
    name, date, number = _session_identity(session_path, mouse)
    return raw.assign(mouse=name, date=date, session_number=number,
                      session_start_time=_start_time(session_path), session_path=str(session_path))


def find_sessions(root) -> list[Path]:
    """Every ``<subject>/<YYYY-MM-DD>/<NNN>`` folder at or below ``root`` (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    found = [p for p in root.rglob("*") if p.is_dir() and _NUMBER.match(p.name) and _DATE.match(p.parent.name)]
    if _NUMBER.match(root.name) and _DATE.match(root.parent.name):
        found.append(root)
    return sorted(set(found))


def _order(meta: pd.DataFrame, max_gap_days: float, source: str) -> pd.Series:
    """Session number (1..S per mouse) from date, start time and folder number; warn on ties and gaps."""
    meta = meta.copy()
    meta["_date"] = pd.to_datetime(meta["date"], errors="coerce")
    meta["_start"] = pd.to_datetime(meta["session_start_time"], errors="coerce")
    meta = meta.sort_values(["mouse", "_date", "_start", "session_number", "session_path"], na_position="last")
    for name, g in meta.groupby("mouse", sort=False):
        key = g[["_date", "_start"]].astype(str)
        ties = g.loc[key.duplicated(keep=False) & g["_start"].notna()]
        if not ties.empty:
            warnings.warn(f"{source}: mouse {name!r} has sessions with the same date and start time "
                          f"{ties['session_path'].tolist()}; ordered by folder number", UserWarning, stacklevel=3)
        gaps = g["_date"].diff().dt.days
        for i in np.flatnonzero(gaps.to_numpy() > max_gap_days):
            warnings.warn(f"{source}: mouse {name!r} has a gap of {int(gaps.iloc[i])} days before the session "
                          f"of {g['date'].iloc[i]} (more than max_gap_days={max_gap_days:g})", UserWarning, stacklevel=3)
    return meta.groupby("mouse", sort=False).cumcount().add(1).reindex(meta.index)


def _to_trial_table(raws: list[pd.DataFrame], max_gap_days: float, source: str,
                    reward_rule: str = "stimulus") -> pd.DataFrame:
    meta = pd.DataFrame([r.iloc[0][["mouse", "date", "session_number", "session_start_time", "session_path"]]
                         for r in raws]).reset_index(drop=True)
    order = _order(meta, max_gap_days, source)
    frames = [r.assign(session=int(order[i])) for i, r in enumerate(raws)]
    raw = pd.concat(frames, ignore_index=True)
    if "choice" not in raw.columns:
        raise DataFormatError(f"{source}: the trials object has no 'choice' attribute")
    nogo = pd.to_numeric(raw["choice"], errors="coerce") == 0
    if nogo.any():
        warnings.warn(f"{source}: dropped {int(nogo.sum())} of {len(raw)} rows (no-go trials, choice == 0)",
                      UserWarning, stacklevel=3)
        raw = raw.loc[~nogo].reset_index(drop=True)
    raw = raw.sort_values(["mouse", "session"], kind="stable").reset_index(drop=True)
    raw["trial"] = raw.groupby(["mouse", "session"]).cumcount()
    flat = raw.drop(columns=["trial", "date"])
    table = load_ibl_trials(flat, max_gap_days=np.inf, reward_rule=reward_rule)  # ordering and gaps: done above
    if "probabilityLeft" not in raw.columns:
        raw["probabilityLeft"] = np.nan
    extras = raw[["mouse", "session", "trial", *EXTRA_COLUMNS]].astype({"mouse": str, "probabilityLeft": float})
    extras["session_number"] = extras["session_number"].astype("Int64")
    table = table.drop(columns=[c for c in table.columns if c not in TRIAL_COLUMNS])
    out = table.merge(extras, on=["mouse", "session", "trial"], how="left", validate="one_to_one")
    out = out[TRIAL_COLUMNS + EXTRA_COLUMNS]
    out.attrs = table.attrs
    return out


def load_alf_session(session_path, mouse: str | None = None, collection: str | None = None,
                     form: str = "auto", reward_rule: str = "stimulus") -> pd.DataFrame:
    """Load one ALF session folder as a trial table (session 1).

    ``mouse`` defaults to the ``<subject>`` of a ``<subject>/<date>/<NNN>``
    path. ``collection`` and ``form`` as in :func:`read_alf_trials`;
    ``reward_rule`` as in :func:`mouse_rl.data.load_ibl_trials`. Returns
    :data:`mouse_rl.data.TRIAL_COLUMNS` plus :data:`EXTRA_COLUMNS`.
    """
    session_path = Path(session_path)
    return _to_trial_table([_raw_session(session_path, mouse, collection, form)], np.inf, str(session_path),
                           reward_rule)


def _load_many(sessions: list[Path], source: str, collection, form, max_gap_days: float,
               reward_rule: str = "stimulus") -> pd.DataFrame:
    raws, skipped = [], []
    for path in sessions:
        try:
            raws.append(_raw_session(path, None, collection, form))
        except FileNotFoundError:
            skipped.append(str(path))
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} session folder(s) without trials: {skipped}",
                      UserWarning, stacklevel=3)
    if not raws:
        raise FileNotFoundError(f"{source}: no session with ALF trials found")
    return _to_trial_table(raws, max_gap_days, source, reward_rule)


def load_alf_subject(subject_path, collection: str | None = None, form: str = "auto",
                     max_gap_days: float = 7, reward_rule: str = "stimulus") -> pd.DataFrame:
    """Load every ``<YYYY-MM-DD>/<NNN>`` session of one subject folder, numbered chronologically.

    ``max_gap_days`` (days): warn when consecutive sessions are further apart.
    """
    subject_path = Path(subject_path)
    sessions = [p for p in find_sessions(subject_path) if p.parent.parent.resolve() == subject_path.resolve()]
    if not sessions:
        raise FileNotFoundError(f"{subject_path}: no <YYYY-MM-DD>/<NNN> session folders")
    return _load_many(sessions, str(subject_path), collection, form, max_gap_days, reward_rule)


def load_one_cache(root, subject: str | None = None, collection: str | None = None, form: str = "auto",
                   max_gap_days: float = 7, reward_rule: str = "stimulus") -> pd.DataFrame:
    """Load all sessions (of ``subject``, or of every subject) found in a ONE cache folder.

    The subject of a session is the folder above its date folder. Sessions are
    numbered chronologically per subject (see the module docstring).
    """
    sessions = find_sessions(root)
    if subject is not None:
        sessions = [p for p in sessions if p.parent.parent.name == subject]
    if not sessions:
        what = f"of subject {subject!r} " if subject is not None else ""
        raise FileNotFoundError(f"{root}: no session folders {what}(<subject>/<YYYY-MM-DD>/<NNN>)")
    return _load_many(sessions, str(root), collection, form, max_gap_days, reward_rule)
