"""Per-point checkpoints of a sweep: ``DIR/points/<point_id>.parquet``, written atomically."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..checkpoint import write_atomic

POINTS_DIR = "points"


def atomic_write(df: pd.DataFrame, path: Path, fmt: str = "parquet") -> None:
    """Write ``df`` to ``path`` atomically (:func:`mouse_rl.checkpoint.write_atomic`)."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt: must be 'parquet' or 'csv', got {fmt!r}")
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False) if fmt == "parquet" else df.to_csv(tmp, index=False))


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
