"""Format dispatch (:func:`load_trials`) and parquet save/load of trial tables."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mouse_rl.data._tidy import TRIAL_COLUMNS
from mouse_rl.data.ibl import load_ibl_trials
from mouse_rl.data.psytrax import load_liebana2025, load_psytrax_npy
from mouse_rl.data.signed_csv import load_signed_contrast_csv
from mouse_rl.data.files import CSV_SUFFIXES, PARQUET_SUFFIXES, read_table_file
from mouse_rl.data.validation import REWARD_RULE_ATTR, DataFormatError, check_reward_rule, validate_trials

__all__ = [
    "TRIAL_COLUMNS",
    "load_ibl_trials",
    "load_liebana2025",
    "load_psytrax_npy",
    "load_signed_contrast_csv",
    "load_trials",
    "read_trials",
    "write_trials",
]

#: Parquet schema metadata that marks a file written by :func:`write_trials`.
_META_KEY, _META_VALUE = b"mouse_rl.table", b"trials"


def _is_ibl(columns) -> bool:
    # IBL ALF tables have one-sided contrasts but never our signed_contrast.
    return "contrastLeft" in columns and "signed_contrast" not in columns


def folder_kind(path: Path) -> str:
    """What a folder holds: ``"liebana"`` (``*_data.npy``), ``"release"`` (the release CSV), ``"alf_session"``
    (one ALF session: ``<subject>/<date>/<NNN>`` or a folder with ``alf/`` or ``_ibl_trials.*``),
    ``"alf_subject"`` (``<date>/<NNN>`` sessions directly below), ``"one_cache"`` (sessions deeper down)."""
    from mouse_rl.data.alf import _DATE, _NUMBER, _has_trials, find_sessions
    from mouse_rl.data.liebana_release import RELEASE_FILENAME

    if any(path.glob("*_data.npy")):
        return "liebana"
    if (path / RELEASE_FILENAME).is_file():
        return "release"
    if (_NUMBER.match(path.name) and _DATE.match(path.parent.name)) or _has_trials(path) \
            or (path / "alf").is_dir():
        return "alf_session"
    sessions = find_sessions(path)
    if sessions and all(p.parent.parent.resolve() == path.resolve() for p in sessions):
        return "alf_subject"
    if sessions:
        return "one_cache"
    raise DataFormatError(
        f"{path}: no trials found in this folder; expected *_data.npy files (Liebana et al. 2025), "
        "an IBL ALF session (<subject>/<YYYY-MM-DD>/<NNN> with alf/_ibl_trials.*), a subject folder of such "
        "sessions, a ONE cache, or the Liebana et al. release CSV")


def load_trials(path_or_df, **kwargs) -> pd.DataFrame:
    """Load trials from any supported source, choosing the loader by extension, folder layout and columns.

    Parameters
    ----------
    path_or_df : str, pathlib.Path or pandas.DataFrame
        * a folder of ``*_data.npy`` (:func:`load_liebana2025`) or a ``.npy``
          (:func:`load_psytrax_npy`);
        * an IBL ALF session folder (:func:`~mouse_rl.data.alf.load_alf_session`),
          a subject folder of ``<YYYY-MM-DD>/<NNN>`` sessions
          (:func:`~mouse_rl.data.alf.load_alf_subject`) or a ONE cache root
          (:func:`~mouse_rl.data.alf.load_one_cache`): sessions numbered by
          date and start time, with ``probabilityLeft``;
        * the Liebana et al. release CSV (a ``.csv`` with ``expRef``, or a folder
          holding it; :func:`load_liebana_release`, the paper's exclusions on);
        * a parquet file written by :func:`write_trials` (:func:`read_trials`);
        * a ``.parquet``/``.csv`` or DataFrame with ``contrastLeft`` and no
          ``signed_contrast`` (IBL trials table, e.g. ONE's ``to_df()`` or the
          subject trials table: :func:`load_ibl_trials`, sessions ordered by
          ``session_start_time``/``date`` where present), otherwise
          :func:`load_signed_contrast_csv`.
    **kwargs
        Passed to the chosen loader (e.g. ``reward_rule="recorded"`` for a
        table whose task rewarded by another rule; ignored for ``.npy`` data,
        whose rewards are derived from stimulus and choice).

    Returns
    -------
    pandas.DataFrame
        The trial table (columns :data:`TRIAL_COLUMNS`).
    """
    from mouse_rl.data.alf import load_alf_session, load_alf_subject, load_one_cache
    from mouse_rl.data.liebana_release import load_liebana_release

    if isinstance(path_or_df, pd.DataFrame):
        if "expRef" in path_or_df.columns:
            check_reward_rule(kwargs.pop("reward_rule", "stimulus"))  # its feedback follows the stimulus side
            return load_liebana_release(path_or_df, **kwargs)
        loader = load_ibl_trials if _is_ibl(path_or_df.columns) else load_signed_contrast_csv
        return loader(path_or_df, **kwargs)
    path = Path(path_or_df)
    if path.is_dir():
        kind = folder_kind(path)
        if kind == "release":
            check_reward_rule(kwargs.pop("reward_rule", "stimulus"))  # its feedback follows the stimulus side
            return load_liebana_release(path, **kwargs)
        if kind != "liebana":
            return {"alf_session": load_alf_session, "alf_subject": load_alf_subject,
                    "one_cache": load_one_cache}[kind](path, **kwargs)
    if path.is_dir() or path.name.lower().endswith(".npy"):
        # psytrax files store no reward: it is derived from stimulus and choice, whatever the rule
        check_reward_rule(kwargs.pop("reward_rule", "stimulus"))
        if path.is_dir():
            return load_liebana2025(path, **kwargs)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    name = path.name.lower()
    if name.endswith(".npy"):
        return load_psytrax_npy(path, **kwargs)
    if not name.endswith(PARQUET_SUFFIXES + CSV_SUFFIXES):
        raise DataFormatError(f"{path}: unsupported file type; expected a folder, .npy, .parquet or .csv")
    columns = read_table_file(path, "trial table", columns_only=True).columns
    if name.endswith(PARQUET_SUFFIXES) and _written_by_us(path):
        return read_trials(path, **kwargs)
    if "expRef" in columns:
        check_reward_rule(kwargs.pop("reward_rule", "stimulus"))  # its feedback follows the stimulus side
        return load_liebana_release(path, **kwargs)
    loader = load_ibl_trials if _is_ibl(columns) else load_signed_contrast_csv
    return loader(path, **kwargs)


def _written_by_us(path: Path) -> bool:
    import pyarrow.parquet as pq

    return (pq.read_schema(path).metadata or {}).get(_META_KEY) == _META_VALUE


def write_trials(df: pd.DataFrame, path) -> Path:
    """Validate a trial table and write it to parquet (pyarrow), without the index.

    Parameters
    ----------
    df : pandas.DataFrame
        Trial table (see :func:`validate_trials`); extra columns are kept.
    path : str or pathlib.Path
        Output ``.parquet`` file.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    validate_trials(df, str(path))
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: _META_VALUE})
    pq.write_table(table, path)
    return path


def read_trials(path, *, reward_rule: str = "stimulus") -> pd.DataFrame:
    """Read a parquet trial table (e.g. from :func:`write_trials`) and validate it.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.parquet`` file.
    reward_rule : {"stimulus", "recorded"}
        See :func:`~mouse_rl.data.validation.validate_trials`.

    Returns
    -------
    pandas.DataFrame
        The table as stored.
    """
    path = Path(path)
    df = read_table_file(path, "trial table")
    if len(df) == 0:
        raise DataFormatError(f"{path}: no trials (the table has no rows)")
    validate_trials(df, str(path), reward_rule=reward_rule)
    if reward_rule != "stimulus":
        df.attrs[REWARD_RULE_ATTR] = reward_rule
    return df
