"""Read parquet and CSV tables with errors that say what is wrong with the file.

pandas and pyarrow report an empty CSV as "No columns to parse from file" and
a non-parquet file as "Parquet magic bytes not found"; :func:`read_table_file`
reports both (and every other read failure) as a
:class:`~mouse_rl.data.validation.DataFormatError` naming the file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mouse_rl.data.validation import DataFormatError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_table_file(path, what: str = "table", *, columns_only: bool = False) -> pd.DataFrame:
    """Read a ``.parquet``/``.pq`` or ``.csv``/``.csv.gz``/``.tsv`` file into a DataFrame.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    what : str
        What the file should hold (``"trial table"``), quoted in errors.
    columns_only : bool
        Read only the header (column names); the frame has no rows.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataFormatError
        ``path`` is a folder, has another extension, is empty, or cannot be
        parsed as its extension says.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, expected a {what} file (.parquet or .csv)")
    kind = _kind(path)
    if kind is None:
        raise DataFormatError(f"{path}: unsupported file type for a {what}; expected .parquet or .csv")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty (0 bytes), expected a {what}")
    try:
        if kind == "parquet":
            if columns_only:
                import pyarrow.parquet as pq

                return pd.DataFrame(columns=pq.read_schema(path).names)
            return pd.read_parquet(path)
        sep = "\t" if path.name.lower().endswith(".tsv") else ","
        return pd.read_csv(path, sep=sep, nrows=0 if columns_only else None)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: no header row and no data (empty CSV), expected a {what}") from None
    except (OSError, ValueError, TypeError, UnicodeDecodeError, pd.errors.ParserError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        label = "parquet" if kind == "parquet" else "CSV"
        raise DataFormatError(f"{path}: not a readable {label} file ({_short(err)}), expected a {what}") from None
    except Exception as err:  # pyarrow raises its own types for garbled files
        if type(err).__module__.startswith("pyarrow"):
            raise DataFormatError(f"{path}: not a readable parquet file ({_short(err)}), expected a {what}") from None
        raise
