"""Per-point checkpoints of a sweep: ``DIR/points/<point_id>.parquet``, written atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

POINTS_DIR = "points"


def atomic_write(df: pd.DataFrame, path: Path, fmt: str = "parquet") -> None:
    """Write ``df`` to ``path`` via a temporary file in the same folder and :func:`os.replace`.

    A reader (or a resumed sweep) sees either no file or the complete file,
    even if the writer is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(f"fmt: must be 'parquet' or 'csv', got {fmt!r}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def point_path(out: Path, point_id: str) -> Path:
    return Path(out) / POINTS_DIR / f"{point_id}.parquet"


def write_point(out: Path, point_id: str, row: pd.DataFrame) -> None:
    """Checkpoint one finished point's summary row."""
    atomic_write(row, point_path(out, point_id))


def read_point(out: Path, point_id: str) -> pd.DataFrame | None:
    """The checkpointed row of ``point_id``, or None if absent or unreadable."""
    path = point_path(out, point_id)
    if not path.is_file():
        return None
    try:
        row = pd.read_parquet(path)
    except Exception:  # a foreign or damaged file: recompute the point
        return None
    if len(row) != 1 or "point_id" not in row or row["point_id"].iloc[0] != point_id:
        return None
    return row


def clean_temporary(out: Path) -> None:
    """Remove temporary files left by a writer that was killed."""
    folder = Path(out) / POINTS_DIR
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
