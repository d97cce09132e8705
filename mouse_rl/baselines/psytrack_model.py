"""PsyTrack baseline (Roy et al. 2021; PyPI ``psytrack``) with the CVModel interface.

Weights: ``bias``, ``cL`` (left contrast, fraction) and ``cR`` (right
contrast) follow Gaussian random walks over trials (with an extra variance at
session starts, ``sigDay``); P(Right) = sigmoid(w . g). Hyperparameters are set
by ``psytrack.hyperOpt`` on the training trials only. Held-out trials are
predicted with the weights of the nearest preceding training trial (the rule
of psytrack's own ``xval_loglike``; after the last training trial - the
time-aware case - the last training weights). One mouse at a time: psytrack
is not batched.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..fit.batch import prepare_trials

WEIGHTS = {"bias": 1, "cL": 1, "cR": 1}


class PsyTrackModel:
    """PsyTrack with the :class:`~mouse_rl.fit.cv.CVModel` interface.

    Parameters
    ----------
    trials : prepared trial table.
    sigma0 : initial random-walk step std of every weight (per trial).
    sig_init : prior std of the weights on the first trial.
    session_jumps : also fit ``sigDay`` (extra std at session boundaries).
    """

    name = "psytrack"

    def __init__(self, trials: pd.DataFrame, sigma0: float = 2 ** -4, sig_init: float = 2 ** 4,
                 session_jumps: bool = True, name: str = "psytrack"):
        self.trials = prepare_trials(trials)
        self.name = name
        self.hyper0 = {"sigInit": sig_init, "sigma": [sigma0] * 3, "sigDay": [sigma0] * 3 if session_jumps else None}
        self.opt_list = ["sigma", "sigDay"] if session_jumps else ["sigma"]
        self.fits: dict = {}
        self.fit_seconds_by_mouse: dict = {}
        self.notes: dict = {}

    def _fit_one(self, psytrack, tr):
        """hyperOpt; if its sparse solve fails (singular factor), retry without session jumps,
        then with the initial hyperparameters fixed (MAP weights only). Returns (hyper, wMode, note)."""
        attempts = [(dict(self.hyper0), self.opt_list, "ok")]
        if self.hyper0["sigDay"] is not None:
            attempts.append(({**self.hyper0, "sigDay": None}, ["sigma"], "no sigDay (hyperOpt failed)"))
        attempts.append(({**self.hyper0, "sigDay": None}, [], "fixed hyperparameters (hyperOpt failed)"))
        error = None
        for hyper0, opt_list, note in attempts:
            data = self._dataset(tr)
            if hyper0["sigDay"] is None:
                data.pop("dayLength", None)
            try:
                hyper, _, w_mode, _ = psytrack.hyperOpt(data, hyper0, WEIGHTS, opt_list, hess_calc=None)
                return hyper, w_mode, note
            except (RuntimeError, np.linalg.LinAlgError, ValueError) as err:
                error = err
        raise RuntimeError(f"psytrack failed on every attempt: {error}") from error

    def _dataset(self, rows: pd.DataFrame) -> dict:
        d = {"y": rows["choice"].to_numpy(int) + 1,
             "inputs": {"cL": rows["contrastLeft"].to_numpy(float)[:, None],
                        "cR": rows["contrastRight"].to_numpy(float)[:, None]}}
        if self.hyper0["sigDay"] is not None:
            d["dayLength"] = rows.groupby("session", sort=True).size().to_numpy()
        return d

    def fit(self, train_mask) -> "PsyTrackModel":
        import psytrack

        train_mask = np.asarray(train_mask, bool)
        for mouse, rows in self.trials.groupby("mouse", sort=True):
            t0 = time.perf_counter()
            tr = rows[train_mask[rows.index]]
            hyper, w_mode, note = self._fit_one(psytrack, tr)
            self.fits[mouse] = (tr.index.to_numpy(), np.asarray(w_mode), hyper)
            self.notes[mouse] = note
            self.fit_seconds_by_mouse[mouse] = time.perf_counter() - t0
        return self

    def logit_right(self) -> np.ndarray:
        """log-odds of Right on every row, from the weights of the nearest preceding training trial."""
        out = np.full(len(self.trials), np.nan)
        for mouse, rows in self.trials.groupby("mouse", sort=True):
            train_rows, w, _ = self.fits[mouse]
            pos = np.searchsorted(train_rows, rows.index.to_numpy(), side="right") - 1
            pos = np.clip(pos, 0, len(train_rows) - 1)  # before the first training trial: its weights
            g = np.column_stack([np.ones(len(rows)), rows["contrastLeft"], rows["contrastRight"]])  # alphabetical
            out[rows.index] = (g * w[:, pos].T).sum(1)
        return out

    def score(self, mask) -> pd.DataFrame:
        from ..fit.cv import score_frame

        mask = np.asarray(mask, bool)
        gw = self.logit_right()
        y = self.trials["choice"].to_numpy(float)
        ll = y * gw - np.logaddexp(0, gw)
        df = pd.DataFrame({"mouse": self.trials["mouse"], "ll": np.where(mask, ll, 0.0), "n": mask})
        g = df.groupby("mouse", sort=True)
        return score_frame(g.size().index, g["ll"].sum().to_numpy(), g["n"].sum().to_numpy())
