"""Write a command's final files as one set: temporary names, then renames, then a run marker.

A reader should never see a new trial table beside a stale weight table. An
:class:`OutputSet` hands out temporary paths (``.NAME.<token>.tmp`` beside
each final file); :meth:`OutputSet.commit` then removes the run marker,
renames every temporary file to its final name and writes the marker last
(atomically). The marker (JSON: the files, their sizes, a run id) exists only
while the set on disk is complete and from one run; a run killed before or
during the commit leaves the old files without a marker, or the old set
untouched, never a marker over a mix.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from .safe_names import confined_path

#: Parquet page compression of the dictionary-encoded columns of :func:`write_parquet`.
DICTIONARY_COMPRESSION = "snappy"

#: Marker of a complete output folder.
FOLDER_MARKER = "mouse_rl_run.json"


def marker_for_file(path) -> Path:
    """The marker of a single-file output (``cohort.parquet`` -> ``cohort.parquet.run.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".run.json")


class OutputSet:
    """Final files of one run, written under temporary names and committed together.

    Parameters
    ----------
    folder : str or pathlib.Path
        Where the files go (created if missing).
    marker : str or pathlib.Path, optional
        Marker file (default ``folder / FOLDER_MARKER``).
    meta : dict, optional
        JSON-ready description of the run stored in the marker (e.g. the command).

    Use as a context manager: on a clean exit the set is committed, on an
    exception the temporary files are removed and the old set stays as it was.
    """

    def __init__(self, folder, marker=None, meta: dict | None = None):
        self.folder = Path(folder)
        self.marker = Path(marker) if marker is not None else self.folder / FOLDER_MARKER
        self.meta = dict(meta or {})
        self.run_id = uuid.uuid4().hex[:12]
        self._pending: dict[Path, Path] = {}

    def path(self, name: str) -> Path:
        """Temporary path to write the final file ``folder / name`` to (``name`` may have sub-folders)."""
        final = confined_path(self.folder, name)
        if final in self._pending:
            return self._pending[final]
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
        tmp = final.with_name(f".{final.name}.{self.run_id}.tmp")
        self._pending[final] = tmp
        return tmp

    def __truediv__(self, name: str) -> Path:
        """``outputs / name`` is :meth:`path`, so an OutputSet can stand in for its folder."""
        return self.path(name)

    @property
    def files(self) -> list[Path]:
        """Final paths of the files in the set."""
        return list(self._pending)

    def commit(self) -> list[Path]:
        """Rename every written temporary file to its final name, then write the marker."""
        missing = [str(final) for final, tmp in self._pending.items() if not tmp.exists()]
        if missing:
            raise RuntimeError(f"output set: nothing was written for {missing}")
        self.marker.unlink(missing_ok=True)
        sizes = {}
        for final, tmp in self._pending.items():
            os.replace(tmp, final)
            sizes[os.path.relpath(final, self.folder)] = final.stat().st_size
        record = {"run_id": self.run_id, "complete": True, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "files": sizes, **self.meta}
        tmp = self.marker.with_name(f".{self.marker.name}.{self.run_id}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.marker)
        return self.files

    def discard(self) -> None:
        """Remove the temporary files (the previous set, if any, is left as it was)."""
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def read_marker(marker) -> dict | None:
    """The marker's record if the set it describes is complete on disk (every file, same sizes), else None."""
    marker = Path(marker)
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    folder = marker.parent
    files = record.get("files", {}) if isinstance(record, dict) else {}
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return record


def write_parquet(table, path, dictionary=()) -> None:
    """Write a DataFrame to parquet (no index); ``pandas.read_parquet`` gives ``table`` back.

    Columns named in ``dictionary`` (few distinct values: keys, stimuli, choices) are dictionary-encoded
    and snappy-compressed; every other column (e.g. the model's float read-outs, whose mantissas do not
    compress) is stored plain and uncompressed. Where every column is numeric, boolean or text
    (``str``), the table goes to pyarrow directly: the schema and pandas metadata of
    ``pyarrow.Table.from_pandas``, the numeric columns handed over without a copy or a NaN -> null
    scan (a NaN is stored as NaN and read back as NaN). Other tables go through ``DataFrame.to_parquet``
    with the same options.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    low = [name for name in table.columns if name in set(dictionary)]
    options = dict(use_dictionary=low,
                   compression={name: (DICTIONARY_COMPRESSION if name in low else "none") for name in table.columns})
    plain = [not isinstance(dt, pd.api.extensions.ExtensionDtype) and dt.kind in "biuf" for dt in table.dtypes]
    text = [isinstance(dt, pd.StringDtype) for dt in table.dtypes]
    if not all(p or t for p, t in zip(plain, text)) or not table.columns.is_unique:
        table.to_parquet(path, index=False, **options)
        return
    schema = pa.Schema.from_pandas(table.iloc[:0], preserve_index=False)
    arrays = [pa.array(table[name].to_numpy(), type=field.type) if is_plain
              else pa.array(table[name], type=field.type, from_pandas=True)
              for name, field, is_plain in zip(table.columns, schema, plain)]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, **options)
