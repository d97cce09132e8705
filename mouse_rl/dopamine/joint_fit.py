"""Joint fit: network parameters that explain the choices *and* one region's dopamine.

For one mouse, region r and candidate delta c, maximise over network
parameters theta (default eta, beta, w0, s0; others at their
:class:`~mouse_rl.params.ModelParams` values)::

    J_c(theta) = sum_t log pi_theta(choice_t)
               + sum_t log N(da_r(t) | gain * delta_c(t; theta) + offset_session, sigma^2)

The dopamine term's gain, per-session offsets and sigma are profiled out in
closed form (their maximum-likelihood values given theta), so only theta is
optimised (Adam, autograd through the unrolled trials). The network runs
teacher-forced on the mouse's own stimuli and choices by calling the one
update :func:`mouse_rl.network.trial_update`; the model's delta_c(t) is the
experienced RPE ``reward - Q^c[choice]`` of
:func:`mouse_rl.network.prediction_errors` with the reward received (learning
itself uses reward 0.5 at c = 0 under ``zero_reward="expected"``). All (region, candidate) pairs of a
mouse are fitted at once along the batch axis.

The best delta of a region is the candidate with the highest J_c (same
number of free parameters for every candidate, so the comparison is fair).

The teacher-forced run is :func:`mouse_rl.fit.unroll` (the fitting
module's differentiable run of ``trial_update``, ``record=True`` for the Q's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from mouse_rl.data import DataFormatError
from mouse_rl.fit import learning_reward, make_batch, unroll
from mouse_rl.params import check_names
from mouse_rl.fit.transforms import ParamTransform
from mouse_rl.network import Forward, log_policy, prediction_errors, preference_offsets
from mouse_rl.params import PARAMS, ModelParams, NetParams

from ._common import DELTAS, require
from .recordings import REGION_PREFIX, align_recordings, region_columns

__all__ = ["JointFitResult", "joint_fit"]


@dataclass
class JointFitResult:
    """``table``: one row per (mouse, region, delta) with objective, choice_ll,
    dopamine_ll, gain, sigma and the fitted parameters. ``best``: per (mouse,
    region) the delta with the highest objective and its margin. ``summary``:
    per region, how many mice picked each delta."""

    table: pd.DataFrame
    best: pd.DataFrame
    summary: pd.DataFrame


def _fit_module_runner(d: pd.DataFrame, B: int, params: ModelParams):
    """A function p -> (choice log-lik (T, B), experienced deltas (T, B, 3)) using :mod:`mouse_rl.fit`."""
    batch = make_batch(d, zero_reward=params.zero_reward, dtype=torch.float64).repeat(B)
    # the reward the mouse received (0.5 at c = 0 where it is not stored)
    received = torch.as_tensor(learning_reward(d, "random"), dtype=torch.float64)[:, None]
    idx = batch.choice[..., None]

    def run(p: NetParams):
        out = unroll(batch, p, params.encoding, params.positive, record=True)
        offset = preference_offsets(p, 0, batch.shape[0])
        ll = log_policy(out.q_tot, p.beta, p.lapse, offset).gather(-1, idx)[..., 0]
        return ll, prediction_errors(Forward(out.q_tot, out.q_stim, out.q_const), batch.choice, received)

    return run


def _profiled_gaussian_ll(y, x, inv, n_sess):
    """Max over gain, per-session offsets, sigma of sum log N(y | gain x + o_s, sigma^2); y, x: (n, B)."""
    cnt = torch.bincount(inv, minlength=n_sess).to(y.dtype)[:, None]
    def centre(v):
        m = torch.zeros(n_sess, v.shape[1], dtype=v.dtype).index_add(0, inv, v) / cnt
        return v - m[inv]
    yc, xc = centre(y), centre(x)
    gain = (xc * yc).sum(0) / (xc * xc).sum(0).clamp_min(1e-12)
    rss = ((yc - gain * xc) ** 2).sum(0)
    n = y.shape[0]
    sigma2 = (rss / n).clamp_min(1e-12)
    return -0.5 * n * (torch.log(2 * math.pi * sigma2) + 1), gain, sigma2.sqrt()


def joint_fit(trials: pd.DataFrame, recordings: pd.DataFrame | None = None, regions=None, candidates=DELTAS, *,
              params: ModelParams | None = None, fit=("eta", "beta", "w0", "s0"), n_iter: int = 60,
              lr: float = 0.05, mice=None) -> JointFitResult:
    """Fit network parameters to choices + each region's dopamine under each candidate delta (module doc).

    ``trials``: trial table (keys, signed_contrast, choice, reward), complete
    and in order per mouse; ``recordings``: ``da_*`` per recorded trial (or
    None if ``trials`` already has the ``da_*`` columns). ``fit``: names of
    the parameters optimised, in the fit's unconstrained coordinates and box
    (:class:`mouse_rl.fit.transforms.ParamTransform`: log, logit for the lapse,
    clamped to ``PARAMS[name].fit_bounds``), starting from their ``params``
    values (a value on the 0 boundary starts at ``PARAMS[name].fit_start``);
    the others come from ``params``. ``table`` reports every registry parameter.
    """
    params = params or ModelParams()
    transform = ParamTransform(check_names(fit, "fit"), params)
    candidates = list(candidates)
    bad = [c for c in candidates if c not in DELTAS]
    if bad:
        raise ValueError(f"candidates: must be among {DELTAS}, got {bad}")
    require(trials, ["mouse", "session", "trial", "signed_contrast", "choice", "reward"], "trial table")
    if recordings is not None:
        rec = align_recordings(trials, recordings)
        regions = list(regions) if regions is not None else region_columns(recordings)
        data = trials.merge(rec[["mouse", "session", "trial"] + regions], on=["mouse", "session", "trial"], how="left")
    else:
        regions = list(regions) if regions is not None else region_columns(trials)
        data = trials
    if not regions:
        raise DataFormatError(f"joint_fit: no dopamine columns (names starting with {REGION_PREFIX!r})")
    data = data.sort_values(["mouse", "session", "trial"], kind="stable").reset_index(drop=True)
    data["mouse"] = data["mouse"].astype(str)
    pairs = [(r, c) for r in regions for c in candidates]
    B = len(pairs)
    start = {name: np.where(np.asarray(getattr(params, name), float) > 0, getattr(params, name),
                            PARAMS[name].fit_start) for name in transform.free}
    rows = []
    for mouse, d in data.groupby("mouse", sort=True):
        if mice is not None and mouse not in mice:
            continue
        u = transform.to_u(start, B).requires_grad_(True)
        opt = torch.optim.Adam([u], lr=lr)
        y = torch.tensor(d[[r for r, _ in pairs]].to_numpy(float))
        cidx = torch.as_tensor([DELTAS.index(c) for _, c in pairs])
        inv_all = torch.tensor(d.groupby("session", sort=False).ngroup().to_numpy())
        rec_mask = torch.isfinite(y).all(1)  # trials with every region recorded
        inv_rec = torch.unique(inv_all[rec_mask], return_inverse=True)[1]
        n_sess = int(inv_rec.max()) + 1 if rec_mask.any() else 0
        if n_sess == 0:
            raise DataFormatError(f"joint_fit: mouse {mouse!r} has no trial with all of {regions} recorded")
        run = _fit_module_runner(d, B, params)

        def objective():
            p = transform.params(u)
            ll, deltas = run(p)
            x = deltas[rec_mask].gather(-1, cidx[None, :, None].expand(int(rec_mask.sum()), B, 1))[..., 0]
            da_ll, gain, sigma = _profiled_gaussian_ll(y[rec_mask], x, inv_rec, n_sess)
            return ll.sum(0), da_ll, gain, sigma, p

        for _ in range(n_iter):
            opt.zero_grad()
            choice_ll, da_ll, *_ = objective()
            (-(choice_ll + da_ll).sum()).backward()
            opt.step()
        with torch.no_grad():
            choice_ll, da_ll, gain, sigma, p = objective()
        for b, (region, cand) in enumerate(pairs):
            row = {"mouse": mouse, "region": region, "delta": cand, "objective": float(choice_ll[b] + da_ll[b]),
                   "choice_ll": float(choice_ll[b]), "dopamine_ll": float(da_ll[b]), "gain": float(gain[b]),
                   "sigma": float(sigma[b]), "n_trials": len(d), "n_recorded": int(rec_mask.sum())}
            row.update({name: float(getattr(p, name)[b]) for name in PARAMS})
            rows.append(row)
    table = pd.DataFrame(rows)
    best_rows = []
    for (mouse, region), g in table.groupby(["mouse", "region"], sort=False):
        g = g.sort_values("objective", ascending=False)
        best_rows.append({"mouse": mouse, "region": region, "best_delta": g.iloc[0]["delta"],
                          "objective": g.iloc[0]["objective"],
                          "margin": g.iloc[0]["objective"] - g.iloc[1]["objective"] if len(g) > 1 else np.nan})
    best = pd.DataFrame(best_rows)
    summary = best.groupby(["region", "best_delta"]).size().rename("n").reset_index() if len(best) else best
    return JointFitResult(table, best, summary)
