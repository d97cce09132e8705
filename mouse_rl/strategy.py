"""The one strategy definition shared by theory, simulation and analysis.

A *strategy* says which stimuli the agent has associated with their correct
action (mouse_rl/MODEL.md section 4: the fixed points of the deep linear network).
There are four, coded as small integers so that whole cohorts can be
classified in one vectorised call:

======  ============  ===============================================
code    name          meaning
======  ============  ===============================================
0       ``bias-only``   neither stimulus associated (choices follow the bias)
1       ``L-only``      only the left stimulus associated
2       ``R-only``      only the right stimulus associated
3       ``expert``      both stimuli associated
======  ============  ===============================================

The code is ``1 * left_associated + 2 * right_associated``.

Two ways to decide "associated":

* from network weights (:func:`strategy_of`, :func:`strategy_from_weights_table`):
  the stimulus pathway's preference for the correct action, in Q units;
* from behaviour (:func:`strategy_from_behaviour`): the psychometric slope on
  each side, in units of P(Right).

Everything here works on NumPy arrays and on torch tensors (CPU or CUDA) with
any leading batch dimensions (e.g. ``(n_mice,)`` or ``(n_mice, n_sessions)``);
torch is never imported by this module, only used when it is given.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

from mouse_rl.schema import WEIGHT_COLUMNS

__all__ = [
    "BIAS_ONLY",
    "L_ONLY",
    "R_ONLY",
    "EXPERT",
    "STRATEGY_NAMES",
    "DEFAULT_WEIGHT_THRESHOLD",
    "DEFAULT_SLOPE_THRESHOLD",
    "stimulus_strength",
    "strategy_of",
    "strategy_names",
    "strategy_from_behaviour",
    "strategy_from_weights_table",
]

BIAS_ONLY, L_ONLY, R_ONLY, EXPERT = 0, 1, 2, 3
#: ``STRATEGY_NAMES[code]`` is the printable name of a strategy code.
STRATEGY_NAMES = ("bias-only", "L-only", "R-only", "expert")

#: Weight-space threshold, in Q units (reward units). With the default inverse
#: temperature beta = 9 a strength of 0.25 is 9 * 0.25 = 2.25 logits, i.e.
#: P(correct) = sigmoid(2.25) ~ 0.90 on that stimulus when there is no bias.
DEFAULT_WEIGHT_THRESHOLD = 0.25
#: Behavioural threshold on a psychometric slope, in units of P(Right). With no
#: bias (P(R|0) = 0.5) a slope of 0.2 means P(correct) = 0.7 on that side.
DEFAULT_SLOPE_THRESHOLD = 0.2

# indices into a = (a_L, a_R, a_b) and U[action, unit]
_L, _R = 0, 1


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_array(x: Any):
    """Return ``x`` unchanged if it is a torch tensor, else as a float NumPy array."""
    return x if _is_torch(x) else np.asarray(x, dtype=float)


def _codes(assoc_left, assoc_right):
    """Combine two boolean arrays/tensors into strategy codes (int64)."""
    if _is_torch(assoc_left):
        return assoc_left.long() + 2 * assoc_right.long()
    return np.asarray(assoc_left, dtype=np.int64) + 2 * np.asarray(assoc_right, dtype=np.int64)


def stimulus_strength(a, U):
    """Strength of each stimulus's association with its correct action.

    Parameters
    ----------
    a : array_like or torch.Tensor, shape (..., 3)
        Cortical gains ``(a_L, a_R, a_b)`` (dimensionless).
    U : array_like or torch.Tensor, shape (..., 2, 3)
        Striatal weights ``U[action, unit]``, rows = actions (L, R), columns =
        hidden units (L-stim, R-stim, bias), in Q (reward) units.

    Returns
    -------
    w_L, w_R : ndarray or torch.Tensor, shape (...)
        ``w_L = a_L * (U[L, L-stim] - U[R, L-stim])``: how much the stimulus
        pathway prefers the correct action Left when the left stimulus is shown;
        ``w_R = a_R * (U[R, R-stim] - U[L, R-stim])`` likewise for the right.
        In Q units: multiply by beta for the stimulus's contribution to the
        log-odds of the correct choice. Same type/device as the inputs.
    """
    a, U = _as_array(a), _as_array(U)
    if a.shape[-1:] != (3,) or U.shape[-2:] != (2, 3):
        raise ValueError(
            f"expected a with shape (..., 3) and U with shape (..., 2, 3); "
            f"got {tuple(a.shape)} and {tuple(U.shape)}"
        )
    w_left = a[..., _L] * (U[..., _L, _L] - U[..., _R, _L])
    w_right = a[..., _R] * (U[..., _R, _R] - U[..., _L, _R])
    return w_left, w_right


def strategy_of(a, U, threshold: float = DEFAULT_WEIGHT_THRESHOLD):
    """Classify network weights into strategy codes.

    A stimulus is *associated* iff its :func:`stimulus_strength` exceeds
    ``threshold``. The default 0.25 (Q units) is beta * 0.25 = 2.25 logits at
    the default beta = 9, i.e. P(correct) ~ 0.9 on that stimulus with no bias.

    Parameters
    ----------
    a : array_like or torch.Tensor, shape (..., 3)
        Cortical gains ``(a_L, a_R, a_b)``.
    U : array_like or torch.Tensor, shape (..., 2, 3)
        Striatal weights ``U[action, unit]``.
    threshold : float
        Association threshold in Q units.

    Returns
    -------
    ndarray of int64 or torch.LongTensor, shape (...)
        Codes :data:`BIAS_ONLY`, :data:`L_ONLY`, :data:`R_ONLY`, :data:`EXPERT`
        (names in :data:`STRATEGY_NAMES`), on the input's device.
    """
    w_left, w_right = stimulus_strength(a, U)
    return _codes(w_left > threshold, w_right > threshold)


def strategy_names(codes) -> np.ndarray:
    """Map strategy codes (array, tensor or scalar) to their names (object array)."""
    if _is_torch(codes):
        codes = codes.detach().cpu().numpy()
    return np.asarray(STRATEGY_NAMES, dtype=object)[np.asarray(codes, dtype=np.int64)]


def _require(df: pd.DataFrame, columns, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError(f"{what} is empty")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}")


def _labelled(df: pd.DataFrame, codes: np.ndarray, valid: np.ndarray, extra: dict) -> pd.DataFrame:
    keys = [c for c in ("mouse", "session", "trial") if c in df.columns]
    out = df[keys].copy()
    for name, values in extra.items():
        out[name] = values
    strategy = pd.array(codes, dtype="Int64")
    strategy[~valid] = pd.NA
    out["strategy"] = strategy
    names = strategy_names(codes).astype(object)
    names[~valid] = None
    out["strategy_name"] = names
    return out


def strategy_from_behaviour(session_table: pd.DataFrame,
                            threshold: float = DEFAULT_SLOPE_THRESHOLD) -> pd.DataFrame:
    """Classify each session's behaviour into a strategy code.

    A side is *associated* iff its psychometric slope exceeds ``threshold``:
    ``left_slope = P(R|0) - P(R|L)`` for the left stimulus and
    ``right_slope = P(R|R) - P(R|0)`` for the right (see
    :func:`mouse_rl.analysis.session_metrics`).

    Parameters
    ----------
    session_table : pandas.DataFrame
        One row per session (or per mouse, e.g. late-session means) with
        columns ``left_slope`` and ``right_slope`` (units of P(Right)).
    threshold : float
        Slope threshold in units of P(Right); 0.2 means P(correct) = 0.7 on
        that side when unbiased.

    Returns
    -------
    pandas.DataFrame
        Same index as the input; the key columns present (mouse, session) plus
        ``strategy`` (nullable Int64 code) and ``strategy_name`` (str), and,
        when the input has ``metric_definition`` (:func:`mouse_rl.analysis.session_metrics`),
        ``strategy_definition``: ``"zero"`` (slopes around P(R|0)),
        ``"midpoint"`` (a session without zero-contrast trials: both slopes are
        half of P(R|R) - P(R|L), so the label is ``bias-only`` or ``expert``;
        one-sided strategies cannot be told from bias there) or ``"undefined"``.
        Rows whose slopes are NaN (a side without trials) get missing values.
    """
    _require(session_table, ["left_slope", "right_slope"], "session_table")
    left = session_table["left_slope"].to_numpy(dtype=float)
    right = session_table["right_slope"].to_numpy(dtype=float)
    valid = ~(np.isnan(left) | np.isnan(right))
    codes = _codes(left > threshold, right > threshold)
    out = _labelled(session_table, codes, valid, {})
    if "metric_definition" in session_table.columns:
        out["strategy_definition"] = np.where(valid, session_table["metric_definition"].to_numpy(dtype=object),
                                              "undefined")
    return out


def strategy_from_weights_table(df: pd.DataFrame,
                                threshold: float = DEFAULT_WEIGHT_THRESHOLD) -> pd.DataFrame:
    """Classify rows of a weight table (columns of :data:`mouse_rl.schema.WEIGHT_COLUMNS`).

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb``
        (``U_{action}{unit}``), e.g. per-session weight snapshots.
    threshold : float
        Association threshold in Q units (see :func:`strategy_of`).

    Returns
    -------
    pandas.DataFrame
        Same index as ``df``; key columns present (mouse, session, trial), the
        strengths ``w_L`` and ``w_R`` (Q units), ``strategy`` (Int64 code) and
        ``strategy_name``.
    """
    _require(df, WEIGHT_COLUMNS, "weight table")
    a = df[WEIGHT_COLUMNS[:3]].to_numpy(dtype=float)
    U = df[WEIGHT_COLUMNS[3:]].to_numpy(dtype=float).reshape(-1, 2, 3)
    w_left, w_right = stimulus_strength(a, U)
    valid = ~(np.isnan(w_left) | np.isnan(w_right))
    codes = _codes(w_left > threshold, w_right > threshold)
    return _labelled(df, codes, valid, {"w_L": w_left, "w_R": w_right})

