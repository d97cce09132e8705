"""The CLI's one error boundary: a one-line message and an exit code, never a traceback.

Failures a user can cause (bad options, files, data, sizes, missing optional
packages, full disks) end with ``mouse-rl COMMAND: error: MESSAGE`` on stderr
and exit code :data:`USER_ERROR`. Anything else is a bug: a one-line
"internal error" and exit code :data:`INTERNAL_ERROR`. ``--debug`` or the
environment variable ``MOUSE_RL_DEBUG=1`` also prints the traceback.
Warnings are shown as one line each (``mouse-rl COMMAND: warning: ...``).
"""
from __future__ import annotations

import os
import sys
import traceback
import warnings

USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 1, 130
DEBUG_ENV = "MOUSE_RL_DEBUG"
#: Exception types a user can cause (ImportError: an optional backend that is not installed).
USER_ERRORS = (ValueError, OSError, ImportError, MemoryError)
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` given, or ``MOUSE_RL_DEBUG`` set to 1/true/yes."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` with all whitespace runs (newlines included) collapsed to single spaces."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def classify(err: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception raised by a command."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED, "interrupted"
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError)
                                        and any(s in str(err).lower() for s in _OUT_OF_MEMORY)):
        detail = one_line(str(err), 300)
        return USER_ERROR, ("out of memory" + (f" ({detail})" if detail else "")
                            + "; reduce the problem size (e.g. --mice, --sessions, --trials, --workers)")
    if isinstance(err, USER_ERRORS):
        message = one_line(str(err)) or type(err).__name__
        if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in message:
            message = f"{err.filename}: {message}"
        return USER_ERROR, message
    return INTERNAL_ERROR, (f"internal error ({type(err).__name__}: {one_line(str(err), 500)}); rerun with --debug "
                            f"or {DEBUG_ENV}=1 for the traceback and please report it")


def _one_line_format(command: str):
    def format_warning(message, category, filename, lineno, line=None):
        return f"mouse-rl {command}: warning: {one_line(str(message))}\n"
    return format_warning


def run_guarded(command: str, func, debug: bool = False) -> int:
    """Run ``func()`` (a command) inside the boundary; return its exit code."""
    debug = debug_requested(debug)
    previous_format = warnings.formatwarning
    if not debug:  # only the text changes: recorded warnings (e.g. pytest.warns) are still recorded
        warnings.formatwarning = _one_line_format(command)
    try:
        return int(func() or 0)
    except (Exception, KeyboardInterrupt) as err:
        code, message = classify(err)
        if debug:
            traceback.print_exc()
        print(f"mouse-rl {command}: error: {message}", file=sys.stderr)
        return code
    finally:
        warnings.formatwarning = previous_format
