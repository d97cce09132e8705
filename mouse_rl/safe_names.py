"""File names derived from data (mouse ids), made safe and confined to an output folder.

A mouse id comes from someone else's file and may be ``../../x``, ``/abs/path``
or contain separators and control characters; :func:`safe_filename` keeps
only letters, digits, ``.``, ``_`` and ``-`` (never a leading dot), and
:func:`confined_path` refuses any name that would resolve outside its folder.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Longest file name stem produced (file systems allow 255 bytes per name).
MAX_STEM = 100


def safe_filename(name, default: str = "unnamed") -> str:
    """A file-name stem for ``name``: runs of unsafe characters become ``_``; no leading/trailing dots.

    >>> safe_filename("../../etc/passwd")
    'etc_passwd'
    >>> safe_filename("DAP007")
    'DAP007'
    """
    stem = _UNSAFE.sub("_", str(name)).strip("._-")
    return stem[:MAX_STEM].rstrip("._-") or default


def unique_filenames(names: Iterable) -> dict[str, str]:
    """``{str(name): stem}`` with :func:`safe_filename` stems made unique (``-2``, ``-3``, ... on clashes)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in map(str, names):
        if name in out:
            continue
        stem = base = safe_filename(name)
        k = 2
        while stem.lower() in used:  # case-insensitive file systems
            stem, k = f"{base}-{k}", k + 1
        used.add(stem.lower())
        out[name] = stem
    return out


def confined_path(folder, filename: str) -> Path:
    """``folder / filename``, refusing a name that is absolute or resolves outside ``folder``.

    Raises
    ------
    ValueError
        Naming the file name and the folder.
    """
    folder = Path(folder)
    candidate = folder / filename
    root = folder.resolve()
    resolved = candidate.resolve()
    if Path(filename).is_absolute() or (resolved != root and root not in resolved.parents):
        raise ValueError(f"output file name {filename!r} would be written outside {str(folder)!r}")
    return candidate
