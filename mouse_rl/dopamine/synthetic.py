"""Synthetic dopamine recordings with known ground truth, from a (simulated) trial table.

Region r of mouse m, session s, trial t::

    da = g_{m,r,s} * delta_{r}(t) + o_{m,r,s} + sigma_{m,r} * eps,   eps ~ N(0, 1)

* ``delta_r``: the model signal the region carries (``mapping``), computed
  with the reward actually received (``reward_mode="experienced"``);
* ``g``: gain ``gain`` times a per-session log-normal factor (sd ``gain_sd``);
* ``o``: per-session offset ~ N(0, ``offset_sd``);
* ``sigma``: set per mouse and region so that the signal-to-noise *amplitude*
  ratio std_within-session(g * delta) / sigma equals ``snr``.

SNR = 1 means the carried signal explains at most half of the within-session
variance (R^2 <= 0.5). Photometry peak responses on single trials are noisy;
we default to ``snr = 1``; recovery of the carried delta needs snr >~ 1 (see tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mouse_rl.schema import KEY_COLUMNS

from ._common import DELTAS, outcome_deltas, require
from .recordings import REGION_PREFIX

__all__ = ["DEFAULT_MAPPING", "DEFAULT_SNR", "SyntheticRecordings", "synthetic_recordings"]

#: Ground truth used by default: DLS (both hemispheres) carries delta_stim,
#: DMS delta_const, NAc delta_tot (mouse_rl/MODEL.md section 5; keep it a parameter).
DEFAULT_MAPPING = {"da_DLS_left": "delta_stim", "da_DLS_right": "delta_stim",
                   "da_DMS": "delta_const", "da_NAc": "delta_tot"}
DEFAULT_SNR = 1.0


@dataclass
class SyntheticRecordings:
    """``recordings``: key + ``da_*`` columns; ``truth``: one row per mouse and
    region (delta, gain, snr, noise_sd); ``sessions``: per mouse, region and
    session gain and offset."""

    recordings: pd.DataFrame
    truth: pd.DataFrame
    sessions: pd.DataFrame


def synthetic_recordings(trials: pd.DataFrame, mapping: dict | None = None, *, gain: float = 1.0,
                         gain_sd: float = 0.1, offset_sd: float = 0.2, snr: float = DEFAULT_SNR,
                         reward_mode: str = "experienced", seed: int = 0) -> SyntheticRecordings:
    """Generate per-trial dopamine values for every trial of ``trials`` (see module doc)."""
    mapping = dict(DEFAULT_MAPPING if mapping is None else mapping)
    for region, delta in mapping.items():
        if not region.startswith(REGION_PREFIX):
            raise ValueError(f"mapping: region names must start with {REGION_PREFIX!r}, got {region!r}")
        if delta not in DELTAS:
            raise ValueError(f"mapping[{region!r}]: must be one of {DELTAS}, got {delta!r}")
    if not snr > 0:
        raise ValueError(f"snr: must be > 0, got {snr!r}")
    require(trials, KEY_COLUMNS, "trial table")
    deltas = outcome_deltas(trials, reward_mode)
    rec = trials[KEY_COLUMNS].copy().reset_index(drop=True)
    deltas = deltas.reset_index(drop=True)
    mice = pd.unique(rec["mouse"])
    truth_rows, sess_rows = [], []
    cols = {r: np.empty(len(rec)) for r in mapping}
    for mi, mouse in enumerate(mice):
        rows = np.flatnonzero(rec["mouse"].to_numpy() == mouse)
        sessions = rec["session"].to_numpy()[rows]
        uniq, inv = np.unique(sessions, return_inverse=True)
        for ri, (region, delta) in enumerate(mapping.items()):
            g = np.random.default_rng([seed, mi, ri])
            g_s = gain * np.exp(gain_sd * g.standard_normal(len(uniq)))
            o_s = offset_sd * g.standard_normal(len(uniq))
            d = deltas[delta].to_numpy()[rows]
            sig = g_s[inv] * d
            centred = sig - (np.bincount(inv, sig) / np.bincount(inv))[inv]
            noise_sd = centred.std() / snr if centred.std() > 0 else 1.0 / snr
            cols[region][rows] = sig + o_s[inv] + noise_sd * g.standard_normal(len(rows))
            truth_rows.append({"mouse": mouse, "region": region, "delta": delta, "gain": gain,
                               "snr": snr, "noise_sd": noise_sd})
            sess_rows += [{"mouse": mouse, "region": region, "session": int(s), "gain": gs, "offset": os_}
                          for s, gs, os_ in zip(uniq, g_s, o_s)]
    for region, v in cols.items():
        rec[region] = v
    return SyntheticRecordings(rec, pd.DataFrame(truth_rows), pd.DataFrame(sess_rows))
