"""Pack a trial table into padded ``(batch, trials)`` tensors for teacher forcing.

Mice with different trial counts are padded at the end to the longest mouse;
``valid`` marks real trials. Padded trials neither learn nor count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..network import learning_reward as network_learning_reward
from ..network import stimulus_reward

_SORT = ["mouse", "session", "trial"]


def prepare_trials(trials: pd.DataFrame, source: str = "trial table") -> pd.DataFrame:
    """Validate a trial table and return it sorted by (mouse, session, trial) with a fresh index.

    Every fitting and cross-validation entry point calls this at the boundary;
    boolean masks used by :mod:`mouse_rl.fit.cv` are aligned with its rows.
    Calling it again on its own output is a no-op (same order).

    Raises
    ------
    mouse_rl.data.DataFormatError
        If the table does not match :mod:`mouse_rl.schema`.
    """
    from ..data import validate_trials

    if not isinstance(trials, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(trials).__name__}")
    if len(trials) == 0:
        raise ValueError(f"{source}: no trials")
    required = ["mouse", "session", "trial", "signed_contrast", "choice"]
    validate_trials(trials, source=source, required=required)
    out = trials.sort_values(_SORT, kind="stable").reset_index(drop=True)
    out["mouse"] = out["mouse"].astype(str)
    return out


def row_mask(rows, n: int, name: str) -> np.ndarray:
    """A boolean mask over the ``n`` rows of a prepared trial table, validated (None: every row); the error
    names the argument ``name``."""
    if rows is None:
        return np.ones(n, dtype=bool)
    rows = np.asarray(rows)
    if rows.shape != (n,) or rows.dtype != bool:
        raise ValueError(f"{name}: expected a boolean mask of {n} rows (the prepared trial table), got dtype "
                         f"{rows.dtype}, shape {rows.shape}")
    return rows


def learning_reward(trials: pd.DataFrame, zero_reward: str = "expected") -> np.ndarray:
    """Reward the model learns from on each trial of a table (reward units, 0..1).

    Non-zero contrast: the reward column where known, else derived from the
    choice (1 iff the choice is on the stimulus side). Zero contrast: the
    stored reward (NaN where unknown) goes to :func:`mouse_rl.network.learning_reward`,
    the one c = 0 rule: the stored feedback under ``"random"`` (IBL
    ``feedbackType``, the release file's ``feedback``), 0.5 under
    ``"expected"`` or where the reward is unknown (Liebana ``.npy`` files).
    """
    c = trials["signed_contrast"].to_numpy(float)
    choice = trials["choice"].to_numpy(float)
    derived = stimulus_reward(c, choice)
    stored = trials["reward"].to_numpy(float) if "reward" in trials else np.full(len(trials), np.nan)
    return network_learning_reward(c, np.where(np.isnan(stored) & (c != 0), derived, stored), zero_reward)


@dataclass
class TrialBatch:
    """Padded per-mouse sequences, time-major: every tensor is ``(T, B)``.

    Attributes
    ----------
    mice : mouse names, one per batch column (length B).
    contrast : signed contrast (fraction); 0 on padding.
    choice : int64, 0 = Left, 1 = Right; 0 on padding.
    reward : learning reward (see :func:`learning_reward`); 0 on padding.
    valid : bool, real trials.
    session : int64 session number (0 on padding).
    row : int64 row of the prepared trial table (-1 on padding).
    n_trials : (B,) trial counts.
    """

    mice: list
    contrast: torch.Tensor
    choice: torch.Tensor
    reward: torch.Tensor
    valid: torch.Tensor
    session: torch.Tensor
    row: torch.Tensor
    n_trials: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.choice.shape)

    def repeat(self, n: int) -> "TrialBatch":
        """Tile the batch ``n`` times along B (restart r, mouse m at column r * B + m)."""
        rep = lambda t: t.repeat(1, n)  # noqa: E731
        return TrialBatch(self.mice * n, rep(self.contrast), rep(self.choice), rep(self.reward), rep(self.valid),
                          rep(self.session), rep(self.row), self.n_trials.repeat(n))

    def crop(self, T: int) -> "TrialBatch":
        """Keep only the first ``T`` trials (later trials cannot affect earlier likelihood terms)."""
        c = lambda t: t[:T]  # noqa: E731
        return TrialBatch(self.mice, c(self.contrast), c(self.choice), c(self.reward), c(self.valid),
                          c(self.session), c(self.row), self.valid[:T].sum(0))

    def mask_from_rows(self, row_mask: np.ndarray) -> torch.Tensor:
        """Turn a boolean mask over rows of the prepared table into a ``(T, B)`` tensor mask."""
        row_mask = np.asarray(row_mask, dtype=bool)
        idx = self.row.clamp(min=0).cpu().numpy()
        out = row_mask[idx] & self.valid.cpu().numpy()
        return torch.as_tensor(out, device=self.valid.device)

    def to_rows(self, values: torch.Tensor) -> np.ndarray:
        """Gather a ``(T, B, ...)`` tensor back into prepared-table row order (``(N, ...)``)."""
        valid = self.valid.cpu().numpy()
        rows = self.row.cpu().numpy()[valid]
        v = values.detach().cpu().double().numpy()[valid]
        out = np.empty_like(v)
        out[rows] = v
        return out


def make_batch(trials: pd.DataFrame, zero_reward: str = "expected", device=None,
               dtype: torch.dtype = torch.float64, prepared: bool = False) -> TrialBatch:
    """Pack a trial table into a :class:`TrialBatch` (one column per mouse, sorted by name).

    Parameters
    ----------
    trials : trial table (see :mod:`mouse_rl.schema`); validated unless ``prepared``.
    zero_reward : ``"expected"`` or ``"random"`` (see :func:`learning_reward`).
    device, dtype : where the tensors live (float64 on CPU recommended for fitting).
    prepared : ``trials`` already came from :func:`prepare_trials`.
    """
    df = trials if prepared else prepare_trials(trials)
    codes, mice = pd.factorize(df["mouse"], sort=True)
    counts = np.bincount(codes, minlength=len(mice))
    T, B = int(counts.max()), len(mice)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(df)) - starts[codes]  # rows of a mouse are contiguous (sorted)
    row = np.full((T, B), -1, dtype=np.int64)
    row[pos, codes] = np.arange(len(df))
    valid = row >= 0

    def pad(values, fill, np_dtype):
        out = np.full((T, B), fill, dtype=np_dtype)
        out[pos, codes] = values
        return out

    reward = learning_reward(df, zero_reward)
    kw = dict(device=device)
    return TrialBatch(
        mice=[str(m) for m in mice],
        contrast=torch.as_tensor(pad(df["signed_contrast"].to_numpy(float), 0.0, np.float64), dtype=dtype, **kw),
        choice=torch.as_tensor(pad(df["choice"].to_numpy(np.int64), 0, np.int64), **kw),
        reward=torch.as_tensor(pad(reward, 0.0, np.float64), dtype=dtype, **kw),
        valid=torch.as_tensor(valid, **kw),
        session=torch.as_tensor(pad(df["session"].to_numpy(np.int64), 0, np.int64), **kw),
        row=torch.as_tensor(row, **kw),
        n_trials=torch.as_tensor(counts, dtype=torch.int64, **kw),
    )
