"""Hidden correction trials in teacher forcing: the repeats a dataset removed, put back where they are known.

In the Liebana et al. (2025) task an error at c != 0 was followed by repeat (correction) trials of the same
stimulus until the mouse chose correctly; the released data drop them, but the mouse learned from them. What
is known of each such run is its end: one trial of that stimulus, chosen correctly and rewarded.
:func:`with_corrections` inserts that trial, unscored, after every error at c != 0, so the teacher-forced
learner learns from it; the run's hidden errors (their number is not in the data) are left out. The model
this likelihood is exact for is simulated by :func:`mouse_rl.simulate.simulate_on_stimuli` with
``corrections=1, corrections_forced=True`` (without a side preference: in the expanded batch its time counts
the hidden trials too); whole sampled runs (the task) with ``corrections=N``.

An option for :func:`mouse_rl.fit.fitting.fit_batch` (pass it the expanded batch and masks). On the 25
Liebana mice it fits worse than the network without it and its copies match the mice less well
(``bench/corrections_probe.py``, README "Hidden correction trials").
"""
from __future__ import annotations

import numpy as np
import torch

from .batch import TrialBatch


def correction_trials(batch: TrialBatch, learn: torch.Tensor | None = None) -> np.ndarray:
    """``(T, B)`` bool: trials after which a hidden correction trial is inserted -- errors (learning reward 0) at
    c != 0 that are learned from (``learn``, default every valid trial) and followed by another trial (after a
    mouse's last trial it would change nothing). A session's last trial is no exception: the data lack each
    session's first trials too, so where a run at a session's end took place is not known; the simulator runs
    it before the next trial, as here."""
    valid = batch.valid.cpu().numpy()
    learn = valid if learn is None else learn.cpu().numpy() & valid
    c = batch.contrast.cpu().numpy()
    has_next = np.zeros_like(valid)
    has_next[:-1] = valid[1:]
    return learn & (c != 0) & (batch.reward.cpu().numpy() == 0) & has_next


def with_corrections(batch: TrialBatch, score: torch.Tensor | None = None, learn: torch.Tensor | None = None):
    """The batch with a hidden correction trial after each trial of :func:`correction_trials`.

    ``score``, ``learn``: ``(T, B)`` masks of the trials whose choices count / that are learned from (default:
    every valid trial).

    Returns ``(expanded, score, learn, index)``: the expanded :class:`TrialBatch` (hidden trials: same contrast
    and session, the correct choice, learning reward 1, ``row`` -1, valid), its score mask (hidden trials not
    scored), its learn mask (hidden trials learned from) and ``index`` ``(T, B)`` int64, the expanded row of each
    original trial (``values[index, column]`` maps the expanded batch's per-trial values back).
    """
    T, B = batch.shape
    score = batch.valid if score is None else score & batch.valid
    learn = batch.valid if learn is None else learn & batch.valid
    after = correction_trials(batch, learn)
    shift = np.cumsum(after, axis=0) - after  # hidden trials inserted before each trial
    index = np.arange(T)[:, None] + shift
    T2 = int((index[-1] + after[-1]).max()) + 1 if T else 0
    cols = np.broadcast_to(np.arange(B), (T, B))
    hid_t, hid_b = np.nonzero(after)
    hid_row = index[hid_t, hid_b] + 1
    device = batch.valid.device

    def spread(values: torch.Tensor, hidden_value) -> torch.Tensor:
        v = values.cpu().numpy()
        out = np.zeros((T2, B), dtype=v.dtype)
        out[index, cols] = v
        out[hid_row, hid_b] = hidden_value
        return torch.as_tensor(out, device=device)

    c = batch.contrast.cpu().numpy()[hid_t, hid_b]
    row = np.full((T2, B), -1, dtype=np.int64)
    row[index, cols] = batch.row.cpu().numpy()
    hidden = np.zeros((T2, B), dtype=bool)
    hidden[hid_row, hid_b] = True
    expanded = TrialBatch(
        mice=list(batch.mice),
        contrast=spread(batch.contrast, c),
        choice=spread(batch.choice, (c > 0).astype(np.int64)),
        reward=spread(batch.reward, 1.0),
        valid=spread(batch.valid, True),
        session=spread(batch.session, batch.session.cpu().numpy()[hid_t, hid_b]),
        row=torch.as_tensor(row, device=device),
        n_trials=batch.n_trials + torch.as_tensor(after.sum(0), device=device),
    )
    score2 = spread(score, False) & ~torch.as_tensor(hidden, device=device)
    learn2 = spread(learn, True)
    return expanded, score2, learn2, index
