"""Maximum-likelihood (or MAP) fit of the network to many mice in one batched run."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..params import ModelParams, NetParams
from .batch import TrialBatch, make_batch, prepare_trials
from .likelihood import choice_logprob, masked_sum, teacher_forced
from .optim import batched_hessian, minimize_batched
from .transforms import DEFAULT_FREE, INIT_DEFAULT, ParamTransform

#: Standard deviation (unconstrained units) of the weak Gaussian prior of ``map_prior=True``.
PRIOR_SD = 2.0


@dataclass
class NetworkObjective:
    """Negative log-likelihood ``(B,)`` of the network on a batch, as a function of ``u``.

    ``score``/``learn`` are ``(T, B)`` masks (trials that count / that the learner learns from).
    """

    batch: TrialBatch
    transform: ParamTransform
    score: torch.Tensor
    learn: torch.Tensor
    map_prior: bool = False
    engine: str = "eager"

    def logp(self, u: torch.Tensor) -> torch.Tensor:
        """Per-trial log P(observed choice) ``(T, B)`` in nats (0 on padding), learning on ``learn``."""
        p = self.transform.params(u)
        fixed = self.transform.fixed
        use_lapse = "lapse" in self.transform.free or bool(np.any(np.asarray(fixed.lapse) != 0))
        return choice_logprob(self.batch, p, fixed.encoding, fixed.positive, self.learn, use_lapse, self.engine)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        lp = self.logp(u)
        nll = -masked_sum(lp, self.score)
        if self.map_prior:
            centre = self.transform.to_u(INIT_DEFAULT, 1, u.device, u.dtype)
            nll = nll + 0.5 * (((u - centre) / PRIOR_SD) ** 2).sum(-1)
        return nll


@dataclass
class FitResult:
    """Output of :func:`fit_mice`.

    Attributes
    ----------
    params : one row per mouse: fitted parameters (natural units), ``se_<name>``
        (delta-method standard errors, NaN if the Hessian is not positive
        definite), ``loglik`` (nats, scored trials), ``n_trials``, ``n_params``,
        ``bits_per_trial`` (mean log2 P(choice)), ``BIC``, ``AIC``,
        ``best_restart``, ``fit_seconds`` (wall time of the whole batched fit).
    trials : teacher-forced per-trial table at the fitted parameters (see
        :func:`mouse_rl.fit.teacher_forced`); empty if not requested.
    restarts : one row per (mouse, restart) with its final loglik and parameters.
    """

    params: pd.DataFrame
    trials: pd.DataFrame
    restarts: pd.DataFrame
    transform: ParamTransform
    options: dict = field(default_factory=dict)

    def model_params(self) -> ModelParams:
        """Fitted :class:`ModelParams` (one value per mouse, mice sorted by name)."""
        p = self.params.sort_values("mouse")
        vals = {f: np.array(p[f], dtype=float) for f in NetParams._fields}
        return self.transform.fixed.replace(**vals)


def make_transform(free=DEFAULT_FREE, fixed: ModelParams | None = None, fit_lapse: bool = True) -> ParamTransform:
    """ParamTransform with ``free`` parameters; drop ``lapse`` (fixed at ``fixed.lapse``, default 0) unless ``fit_lapse``."""
    free = tuple(n for n in free if fit_lapse or n != "lapse")
    return ParamTransform(free=free, fixed=fixed or ModelParams())


def fit_batch(batch: TrialBatch, transform: ParamTransform, score: torch.Tensor | None = None,
              learn: torch.Tensor | None = None, n_restarts: int = 4, max_iter: int = 100,
              method: str = "lbfgs", map_prior: bool = False, seed: int = 0, engine: str = "eager",
              progress: bool = True, lr: float | None = None) -> dict:
    """Fit every column of ``batch`` with ``n_restarts`` starts in one batched optimisation.

    Returns a dict with ``u`` ``(M, P)`` (best restart per mouse), ``nll`` ``(M,)``,
    ``u_all``/``nll_all`` ``(R, M, ...)``, ``best_restart`` ``(M,)`` and ``info``.
    """
    M = batch.shape[1]
    score = batch.valid if score is None else score & batch.valid
    learn = batch.valid if learn is None else learn & batch.valid
    big = batch.repeat(n_restarts)
    obj = NetworkObjective(big, transform, score.repeat(1, n_restarts), learn.repeat(1, n_restarts),
                           map_prior, engine)
    u0 = transform.init_u(M, n_restarts, seed, batch.contrast.device, batch.contrast.dtype)
    n_scored = score.sum(0).clamp(min=1).to(u0.dtype).repeat(n_restarts)
    u, f, info = minimize_batched(obj, u0, n_scored, method, max_iter, lr, progress,
                                  desc=f"fit {M} mice x {n_restarts}")
    f_all = f.reshape(n_restarts, M)
    u_all = u.reshape(n_restarts, M, -1)
    best = torch.nan_to_num(f_all, nan=float("inf")).argmin(0)
    idx = torch.arange(M, device=u.device)
    return {"u": u_all[best, idx], "nll": f_all[best, idx], "u_all": u_all, "nll_all": f_all,
            "best_restart": best, "info": info, "n_scored": score.sum(0)}


def standard_errors(batch: TrialBatch, transform: ParamTransform, u: torch.Tensor, score=None, learn=None,
                    map_prior: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method standard errors of the free parameters ``(M, P)`` (natural units) and the Hessians.

    The Hessian of the negative log-likelihood (plus prior) is taken in the
    unconstrained space by autograd (eager engine); ``cov_u = H^-1`` and
    ``se_theta = |d theta / d u| sqrt(diag cov_u)``. NaN where H is not
    positive definite (e.g. a parameter at its bound).
    """
    score = batch.valid if score is None else score & batch.valid
    learn = batch.valid if learn is None else learn & batch.valid
    obj = NetworkObjective(batch, transform, score, learn, map_prior, "eager")
    H = batched_hessian(obj, u)
    se = np.full(u.shape, np.nan)
    jac = transform.jacobian_diag(u).detach().cpu().numpy()
    Hn = H.cpu().numpy()
    for m in range(u.shape[0]):  # tiny P x P inverses; not in the hot path
        h = 0.5 * (Hn[m] + Hn[m].T)
        if np.all(np.isfinite(h)) and np.all(np.linalg.eigvalsh(h) > 0):
            se[m] = np.abs(jac[m]) * np.sqrt(np.diag(np.linalg.inv(h)))
    return se, Hn


def fit_mice(trials: pd.DataFrame, n_restarts: int = 4, max_iter: int = 100, method: str = "lbfgs",
             map_prior: bool = False, free=DEFAULT_FREE, fixed: ModelParams | None = None,
             fit_lapse: bool = True, device="cpu", dtype: torch.dtype = torch.float64, seed: int = 0,
             progress: bool = True, engine: str = "eager", compute_se: bool = True,
             per_trial: bool = True, score_rows=None, learn_rows=None, lr: float | None = None) -> FitResult:
    """Fit the network to every mouse of a trial table (one batched run over mice x restarts).

    Parameters
    ----------
    trials : trial table (validated here); mice are fitted independently.
    n_restarts : starts per mouse (restart 0 = model defaults, the rest random).
    max_iter : L-BFGS iterations / Adam steps.
    method : ``"lbfgs"`` or ``"adam"``.
    map_prior : add a weak Gaussian prior (sd 2 in log/logit units, centred on the defaults).
    free : parameters to fit (default eta, beta, w0, s0, b_L, b_R, lapse; k = 1 fixed).
    fixed : :class:`ModelParams` for the non-free parameters and model options
        (encoding, positive, zero_reward). ``w0=1`` with ``"w0"`` not free = shallow network.
    fit_lapse : fit the lapse (else it stays at ``fixed.lapse``, default 0).
    device, dtype : float64 on CPU by default.
    engine : ``"eager"`` or ``"compile"`` (faster for long sequences, see :mod:`.likelihood`).
    compute_se : Hessian-based standard errors (best restart only).
    per_trial : build the teacher-forced per-trial table at the fitted parameters.
    score_rows, learn_rows : optional bool arrays over the prepared table's rows:
        trials whose choices count in the likelihood / that the learner learns from.

    Returns
    -------
    FitResult
    """
    if int(n_restarts) != n_restarts or n_restarts < 1:
        raise ValueError(f"n_restarts: must be a positive integer, got {n_restarts!r}")
    df = prepare_trials(trials)
    transform = make_transform(free, fixed, fit_lapse)
    fixed = transform.fixed
    batch = make_batch(df, fixed.zero_reward, device, dtype, prepared=True)
    score = None if score_rows is None else batch.mask_from_rows(score_rows)
    learn = None if learn_rows is None else batch.mask_from_rows(learn_rows)
    t0 = time.perf_counter()
    res = fit_batch(batch, transform, score, learn, n_restarts, max_iter, method, map_prior, seed, engine,
                    progress, lr)
    seconds = time.perf_counter() - t0
    u = res["u"]
    p = transform.params(u)
    n = res["n_scored"].cpu().numpy().astype(float)
    nll = res["nll"].detach().cpu().numpy()
    if map_prior:  # report the likelihood itself, not the posterior
        with torch.no_grad():
            nll = NetworkObjective(batch, transform, batch.valid if score is None else score & batch.valid,
                                   batch.valid if learn is None else learn & batch.valid)(u).cpu().numpy()
    k = transform.n_free
    table = pd.DataFrame({"mouse": batch.mice})
    for name in NetParams._fields:
        table[name] = getattr(p, name).detach().cpu().numpy()
    table["loglik"] = -nll
    table["n_trials"] = n.astype(int)
    table["n_params"] = k
    table["bits_per_trial"] = -nll / np.maximum(n, 1) / math.log(2)
    table["BIC"] = k * np.log(np.maximum(n, 1)) + 2 * nll
    table["AIC"] = 2 * k + 2 * nll
    table["best_restart"] = res["best_restart"].cpu().numpy()
    table["fit_seconds"] = seconds
    if compute_se:
        se, _ = standard_errors(batch, transform, u, score, learn, map_prior)
        for j, name in enumerate(transform.free):
            table[f"se_{name}"] = se[:, j]
    rows = []
    R = n_restarts
    for r in range(R):
        pr = transform.params(res["u_all"][r])
        block = pd.DataFrame({"mouse": batch.mice, "restart": r, "loglik": -res["nll_all"][r].detach().cpu().numpy()})
        for name in transform.free:
            block[name] = getattr(pr, name).detach().cpu().numpy()
        rows.append(block)
    per = teacher_forced(df, table, encoding=fixed.encoding, positive=fixed.positive,
                         zero_reward=fixed.zero_reward, learn_rows=learn_rows, device=device,
                         dtype=dtype) if per_trial else pd.DataFrame()
    options = dict(n_restarts=n_restarts, max_iter=max_iter, method=method, map_prior=map_prior,
                   free=transform.free, seed=seed, engine=engine, n_evals=res["info"]["n_evals"],
                   seconds=seconds, device=str(device))
    return FitResult(table, per, pd.concat(rows, ignore_index=True), transform, options)
