"""Model hyperparameters, per mouse.

Every numeric field may be a scalar (shared by the cohort) or a sequence /
tensor with one value per mouse. :meth:`ModelParams.tensors` broadcasts them
to ``(n_mice,)`` tensors on the requested device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np
import torch

ENCODINGS = ("side", "magnitude")
ZERO_REWARD_MODES = ("expected", "random")


class NetParams(NamedTuple):
    """Per-mouse hyperparameter tensors, each of shape ``(n_mice,)``."""

    eta: torch.Tensor
    beta: torch.Tensor
    w0: torch.Tensor
    k: torch.Tensor
    s0: torch.Tensor
    b_L: torch.Tensor
    b_R: torch.Tensor
    lapse: torch.Tensor


#: (lower, upper, lower inclusive) legal range of each numeric field.
_RANGES = {
    "eta": (0.0, 1.0, False),
    "beta": (0.0, 1000.0, True),
    "w0": (0.0, 100.0, True),
    "k": (0.0, 100.0, True),
    "s0": (0.0, 100.0, True),
    "b_L": (0.0, 100.0, True),
    "b_R": (0.0, 100.0, True),
    "lapse": (0.0, 1.0, True),
}


@dataclass(frozen=True)
class ModelParams:
    """Hyperparameters of the cortex -> striatum network (MODEL.md sections 2-3).

    Parameters
    ----------
    eta : learning rate per trial (dimensionless), in (0, 1]. Default 0.0026.
    beta : softmax inverse temperature (1 / value unit). Default 9.
    w0 : initial cortical gain of the two stimulus channels. Small = deep. Default 0.05.
    k : initial cortical gain of the constant (bias) channel. Default 1.
    s0 : initial striatal weight of every stimulus entry of U. Default 0.2.
    b_L, b_R : initial striatal bias weights U[L, b], U[R, b]. Default 0.
    lapse : lapse rate; P(R) <- lapse/2 + (1 - lapse) P(R). Default 0.
    encoding : ``"side"`` (x = [1,0,1] left, [0,1,1] right, [0,0,1] zero) or
        ``"magnitude"`` (x = [max(-c,0), max(c,0), 1]).
    positive : take absolute values of all weights after each update.
    zero_reward : reward the model learns from at c = 0: ``"expected"`` (0.5)
        or ``"random"`` (the drawn reward).
    jitter : std of the Gaussian jitter added to every initial weight.
    """

    eta: object = 0.0026
    beta: object = 9.0
    w0: object = 0.05
    k: object = 1.0
    s0: object = 0.2
    b_L: object = 0.0
    b_R: object = 0.0
    lapse: object = 0.0
    encoding: str = "side"
    positive: bool = True
    zero_reward: str = "expected"
    jitter: float = 1e-5

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.zero_reward not in ZERO_REWARD_MODES:
            raise ValueError(f"zero_reward: must be one of {ZERO_REWARD_MODES}, got {self.zero_reward!r}")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise ValueError(f"jitter: must be finite and >= 0, got {self.jitter}")
        for name, (lo, hi, lo_incl) in _RANGES.items():
            value = getattr(self, name)
            arr = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value, dtype=float)
            if arr.ndim > 1:
                raise ValueError(f"{name}: give a scalar or one value per mouse, got shape {arr.shape}")
            bad = ~np.isfinite(arr) | (arr > hi) | ((arr < lo) if lo_incl else (arr <= lo))
            if bad.any():
                first = arr.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
                bracket = "[" if lo_incl else "("
                raise ValueError(f"{name}: must lie in {bracket}{lo}, {hi}], got {float(first)!r}")

    @classmethod
    def numeric_fields(cls) -> tuple[str, ...]:
        return NetParams._fields

    def replace(self, **changes) -> "ModelParams":
        return replace(self, **changes)

    def n_mice_hint(self) -> int | None:
        """Number of mice implied by per-mouse fields (None if all scalar)."""
        sizes = {np.size(getattr(self, f)) for f in NetParams._fields if np.ndim(getattr(self, f)) == 1}
        if len(sizes) > 1:
            raise ValueError(f"per-mouse parameters have inconsistent lengths {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def tensors(self, n_mice: int, device=None, dtype=torch.float32) -> NetParams:
        """Broadcast every numeric field to a ``(n_mice,)`` tensor."""
        out = []
        for name in NetParams._fields:
            value = getattr(self, name)
            value = torch.as_tensor(value if torch.is_tensor(value) else np.array(value), dtype=dtype, device=device)
            if value.ndim == 1 and value.shape[0] not in (1, n_mice):
                raise ValueError(f"{name}: {value.shape[0]} per-mouse values for {n_mice} mice")
            out.append(value.expand(n_mice).clone() if value.ndim == 0 or value.shape[0] == 1 else value)
        return NetParams(*out)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
