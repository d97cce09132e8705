"""Maximum-likelihood (or MAP) fit of the network to many mice in one batched run."""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..params import PARAMS, ModelParams, NetParams
from .batch import TrialBatch, make_batch, prepare_trials
from .likelihood import choice_logprob, masked_sum, teacher_forced
from .newton import is_local_minimum, minimize_newton
from .objective import KernelObjective
from .optim import minimize_batched
from .population import posterior_precisions
from .prior import GaussianPrior
from .transforms import DEFAULT_FREE, ParamTransform

#: Standard deviation (unconstrained units) of the weak Gaussian prior of the Q-learning baselines' MAP fits
#: (the network's priors are per parameter, in :data:`mouse_rl.params.PARAMS`).
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
            centre, sd = (torch.as_tensor(a, dtype=u.dtype, device=u.device) for a in self.transform.prior_u())
            nll = nll + 0.5 * (((u - centre) / sd) ** 2).sum(-1)
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
    restarts : one row per (mouse, restart) with its final objective and parameters.
    u : ``(M, P)`` fitted unconstrained parameters (mice sorted by name, columns ``transform.free``).
    hessian : ``(M, P, P)`` Laplace posterior precision at ``u`` (:func:`posterior_precision`: the exact
        likelihood Hessian, PSD-clipped, plus the prior precision).
    population : the :class:`~mouse_rl.fit.population.PopulationFit` of a hierarchical fit (else None):
        ``.prior`` the population N(mu, Sigma), ``.population()`` its table, ``.history`` the EM trace.
    """

    params: pd.DataFrame
    trials: pd.DataFrame
    restarts: pd.DataFrame
    transform: ParamTransform
    options: dict = field(default_factory=dict)
    u: np.ndarray | None = None
    hessian: np.ndarray | None = None
    population: object = None

    def model_params(self) -> ModelParams:
        """Fitted :class:`ModelParams` (one value per mouse, mice sorted by name)."""
        p = self.params.sort_values("mouse")
        vals = {f: np.array(p[f], dtype=float) for f in NetParams._fields}
        return self.transform.fixed.replace(**vals)


def make_transform(free=DEFAULT_FREE, fixed: ModelParams | None = None, fit_lapse: bool = True) -> ParamTransform:
    """ParamTransform with ``free`` parameters; drop ``lapse`` (fixed at ``fixed.lapse``, default 0) unless ``fit_lapse``."""
    free = tuple(n for n in free if fit_lapse or n != "lapse")
    return ParamTransform(free=free, fixed=fixed or ModelParams())


METHODS = ("newton", "lbfgs", "adam")
#: Restarts whose objective lies within this many nats of a mouse's best count as reaching the best optimum.
AGREE_NATS = 0.5
#: How many best starts per mouse are polished with the crease search after the first pass.
POLISH = 2
#: Parameters beyond MODEL.md's fitted set that a fit frees as an option, and the warm starts (natural units) of
#: such a nested fit: each mouse's optimum without them, with each at its fixed value (stim_skew 0, k 1,
#: crosstalk 0, i.e. its fit bound 1e-4, side preference 0 with tau 1000 trials) and, one at a time, at these
#: values; a dict sets several at once (the side preference: rho and tau together; tau has no starts of its own,
#: with rho = 0 it changes nothing). The side preference also starts where the optimum's start bias is moved
#: from the bias weights to rho (see :func:`_moved_start_bias`).
NESTED_STARTS = {"stim_skew": (-2.0, 2.0), "k": (0.3, 3.0), "crosstalk": (0.1, 0.3, 0.6),
                 "side_pref": tuple({"side_pref": rho, "side_pref_tau": tau} for rho in (-4.0, -1.5, 1.5, 4.0)
                                    for tau in (300.0, 3000.0)),
                 "side_pref_tau": ()}
#: Time constants (trials) of the moved-start-bias warm starts of a fit with the side preference free.
MOVED_BIAS_TAUS = (300.0, 3000.0)
#: Basin hopping: perturbations per mouse per round and their sizes (in prior sds of each parameter, cycled over
#: the perturbations: half near the best point, half far from it).
HOP_STARTS = 24
HOP_SCALES = (0.25, 1.0)
#: Every mouse hops this many rounds; later rounds only the mice the last round improved.
HOP_ROUNDS_ALL = 2
#: The loose passes (kept starts, hops) stop a column once its objective fell by at most this many nats over
#: its last STALL_WINDOW iterations (the rest of a slow tail; the polish refines the starts that matter).
STALL_TOL = 1e-3
STALL_WINDOW = 3


@dataclass
class BatchFit:
    """Result of :func:`fit_batch` (M mice, R restarts, P free parameters).

    Attributes
    ----------
    u : ``(M, P)`` best point of each mouse (unconstrained units); nll : ``(M,)`` objective there
        (negative log-likelihood, plus the prior with ``map_prior``); nll_loglik : ``(M,)`` the
        negative log-likelihood alone there.
    u_all, nll_all : ``(R, M, P)`` / ``(R, M)`` every restart's final point and objective.
    best_restart : ``(M,)``; n_scored : ``(M,)`` scored trials.
    converged : ``(M,)`` bool, the best restart stopped at a local minimum (projected gradient
        below tolerance, Hessian positive definite on the free coordinates).
    reason : ``(M,)`` str stopping reason of the best restart (see :mod:`mouse_rl.fit.newton`).
    n_iter : ``(M,)`` iterations of the best restart.
    n_at_best : ``(M,)`` restarts whose objective is within :data:`AGREE_NATS` of the best.
    hessian : ``(M, P, P)`` Hessian of the objective at ``u`` (exact, from the kernel).
    hessian_loglik : ``(M, P, P)`` Hessian of the negative log-likelihood alone at ``u``.
    grad : ``(M, P)`` gradient of the objective at ``u``.
    info : ``n_evals`` (batched objective calls of the last optimiser pass), ``seconds``, ``work``
        (column-trials run through the kernel: a cost measure that does not depend on machine load).
    """

    u: torch.Tensor
    nll: torch.Tensor
    nll_loglik: np.ndarray
    u_all: torch.Tensor
    nll_all: torch.Tensor
    best_restart: torch.Tensor
    n_scored: torch.Tensor
    converged: np.ndarray
    reason: np.ndarray
    n_iter: np.ndarray
    n_at_best: np.ndarray
    hessian: np.ndarray
    hessian_loglik: np.ndarray
    grad: np.ndarray
    info: dict


def fit_batch(batch: TrialBatch, transform: ParamTransform, score: torch.Tensor | None = None,
              learn: torch.Tensor | None = None, n_restarts: int = 8, max_iter: int = 100,
              method: str = "newton", map_prior: bool = True, seed: int = 0, engine: str = "eager",
              progress: bool = False, lr: float | None = None, gtol: float = 1e-4, ftol: float = 1e-4,
              n_screen: int | None = None, screen_iter: int = 8, n_hops: int = 4,
              prior: GaussianPrior | None = None, init: np.ndarray | None = None,
              stall_tol: float = STALL_TOL, nest_options: bool = True, warm: np.ndarray | None = None) -> BatchFit:
    """Fit every mouse (column) of ``batch`` from ``n_restarts`` starts.

    ``method="newton"`` (default): per-mouse trust-region Newton steps on the
    exact Hessian of the fused kernel (:mod:`mouse_rl.fit.newton`); every
    (mouse, restart) column converges on its own, so a mouse's fit does not
    depend on the mice it is batched with. ``"lbfgs"``/``"adam"``: the torch
    unroll (``engine``) with a batched optimiser over the sum of columns
    (kept for comparison; columns share the L-BFGS line search). Restarts: row
    0 the defaults, then a scrambled Sobol design shared by every mouse
    (:meth:`ParamTransform.starts`). With ``n_screen > n_restarts`` (Newton
    only; default ``4 * n_restarts``) that many starts first take
    ``screen_iter`` Newton iterations and each mouse keeps its own
    ``n_restarts`` best to run to convergence (the likelihood has many local
    optima; screening spends the budget on the promising ones). The kept
    starts run Newton until their trust radius collapses or they gain at most
    ``stall_tol`` nats in :data:`STALL_WINDOW` iterations (no crease search;
    ``stall_tol=0`` runs them to the radius collapse), then each mouse's
    :data:`POLISH` best go on with the crease search to ``ftol`` (see
    :mod:`mouse_rl.fit.newton`). Then up to ``n_hops`` rounds
    of basin hopping: :data:`HOP_STARTS` perturbations of each mouse's best
    point (:data:`HOP_SCALES` prior sds, cycled; a design shared by every mouse)
    run as the kept starts do, and one that beats the best by more than
    :data:`AGREE_NATS` is polished and replaces the mouse's worst restart; after
    :data:`HOP_ROUNDS_ALL` rounds only the mice the last round improved hop
    again (the optima of a deep network's
    likelihood are narrow and many: one restart in 12 often finds the best,
    and on the Liebana mice far hops found optima up to ~90 nats better).

    ``prior`` replaces the registry priors of ``map_prior`` by a
    :class:`~mouse_rl.fit.prior.GaussianPrior` (e.g. a population
    distribution). ``init`` ``(R, M, P)``: per-mouse starts (e.g. the previous
    optimum and the population mean) run straight to convergence with the
    crease search, instead of the shared design, screening and hopping
    (Newton only; ``n_restarts`` is then ``R``).

    ``warm`` ``(R_w, M, P)`` (Newton): per-mouse starts added to each mouse's ``n_restarts`` kept design
    starts, before the loose pass, the polish and the hopping (``n_restarts_at_best`` counts them too).

    With an option of :data:`NESTED_STARTS` free (``stim_skew``, ``k``, ``crosstalk``, the side preference;
    Newton, no ``init`` / ``prior``) the fit is nested: first the fit without them (each at its fixed value);
    then the fit above with them free, whose warm starts are each mouse's optimum without them, the options at
    their fixed values and, one at a time, at their :data:`NESTED_STARTS` (with the side preference also the
    optimum's start bias moved to it: :func:`_moved_start_bias`; beside other options, the side preference is
    nested on the fit with them). The optimum without them is a start (and Newton only descends), so
    the fit never ends below it; the design and the hopping still search far from it.
    ``nest_options=False`` runs the search with them free alone.
    """
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    if (prior is not None or init is not None) and method != "newton":
        raise ValueError(f"method: prior and init need method='newton', got {method!r}")
    if warm is not None:
        if method != "newton" or init is not None:
            raise ValueError("warm: needs method='newton' and no init (init already gives every start)")
        warm = np.asarray(warm, dtype=float)
        if warm.ndim != 3 or warm.shape[1:] != (batch.shape[1], transform.n_free):
            raise ValueError(f"warm: must have shape (R_w, {batch.shape[1]}, {transform.n_free}), got {warm.shape}")
    if (set(NESTED_STARTS) & set(transform.free) and method == "newton" and init is None and prior is None
            and nest_options):
        return _fit_nested(batch, transform, score, learn, n_restarts, max_iter, map_prior, seed, progress,
                           gtol, ftol, n_screen, screen_iter, n_hops)
    M = batch.shape[1]
    score = batch.valid if score is None else score & batch.valid
    learn = batch.valid if learn is None else learn & batch.valid
    kobj = KernelObjective(batch, transform, score, learn, map_prior, prior)
    map_prior = kobj.map_prior
    if init is not None:
        return _fit_from(kobj, np.asarray(init, dtype=float), max_iter, gtol, ftol, batch, score)
    n_screen = (4 * n_restarts if method == "newton" else n_restarts) if n_screen is None else int(n_screen)
    if n_screen < n_restarts:
        raise ValueError(f"n_screen: must be >= n_restarts ({n_restarts}), got {n_screen}")
    starts = transform.starts(n_screen, seed)
    u0 = np.repeat(starts[:n_restarts], M, axis=0)  # column r * M + m = restart r of mouse m
    lower, upper = transform.bounds_u()
    t0 = time.perf_counter()
    if method == "newton":
        bar = tqdm(total=max_iter + (screen_iter if n_screen > n_restarts else 0), unit="iter",
                   desc=f"fit {M} mice x {n_restarts}", disable=not progress, leave=False)
        if n_screen > n_restarts:
            us, fs, _ = minimize_newton(kobj, np.repeat(starts, M, axis=0), lower, upper, screen_iter, gtol,
                                        callback=lambda n_active: bar.update(0))
            bar.update(screen_iter)
            fs = _by_restart(fs, n_screen)
            keep = np.argsort(fs, axis=0, kind="stable")[:n_restarts]  # each mouse its own best starts
            u0 = us.reshape(n_screen, M, -1)[keep, np.arange(M)[None]].reshape(n_restarts * M, -1)
        if warm is not None:  # after the kept starts, as restarts n_restarts, n_restarts + 1, ...
            u0 = np.concatenate([u0, np.clip(warm.reshape(-1, len(lower)), lower, upper)])
            n_restarts += len(warm)
        n_polish = min(POLISH + (0 if warm is None else len(warm)), n_restarts)  # warm starts take no design slot
        # every kept start to a loose tolerance, then each mouse's best POLISH starts to the tight one
        u, f, info = minimize_newton(kobj, u0, lower, upper, max_iter, gtol, crease_search=False,
                                     callback=lambda n_active: bar.update(1), stall_tol=stall_tol,
                                     stall_window=STALL_WINDOW)
        reason, n_iter, converged = info["reason"].astype(object), info["n_iter"], info["converged"]

        def polish(start, src, dst, iters_before):
            """Crease-searching Newton from ``start`` (columns ``src`` of their pass) into columns ``dst``."""
            up, fp, ip = minimize_newton(lambda uu, cc, order=2: kobj(uu, src[cc], order), start, lower, upper,
                                         max_iter, gtol, ftol=ftol, orders=True)
            u[dst], f[dst], n_iter[dst] = up, fp, iters_before + ip["n_iter"]
            reason[dst], converged[dst] = ip["reason"], ip["converged"]

        top = np.argsort(_by_restart(f, n_restarts), axis=0, kind="stable")[:n_polish]
        cols = (top * M + np.arange(M)[None]).reshape(-1)
        cols = cols[np.isin(reason[cols], ("gradient", "stalled", "max_iter"))]
        if len(cols):
            polish(u[cols], cols, cols, n_iter[cols])
        hopping = np.arange(M)  # basin hopping: perturb each mouse's best point, keep what beats it
        scale = np.resize(np.asarray(HOP_SCALES, dtype=float), HOP_STARTS)[:, None, None]
        for hop in range(n_hops):
            n = len(hopping)
            fr = _by_restart(f, n_restarts)[:, hopping]
            best, worst = fr.argmin(0), fr.argmax(0)
            ub = u.reshape(n_restarts, M, -1)[best, hopping]
            z = np.random.default_rng([int(seed), 7919, hop]).standard_normal((HOP_STARTS, len(lower)))
            uh0 = np.clip((ub[None] + scale * z[:, None] * kobj.sd).reshape(HOP_STARTS * n, -1), lower, upper)
            cols = (np.arange(HOP_STARTS)[:, None] * M + hopping[None, :]).reshape(-1)  # kernel column per start
            uh, fh, _ = minimize_newton(lambda uu, cc, order=2: kobj(uu, cols[cc], order), uh0, lower, upper,
                                        max_iter, gtol, crease_search=False, stall_tol=stall_tol,
                                        stall_window=STALL_WINDOW)
            fh = fh.reshape(HOP_STARTS, n)
            j = fh.argmin(0)
            better = np.flatnonzero(fh[j, np.arange(n)] < fr[best, np.arange(n)] - AGREE_NATS)
            if len(better):
                src = j[better] * n + better  # rows of uh
                polish(uh[src], cols[src], worst[better] * M + hopping[better], 0)  # replaces the worst restart
            if hop + 1 >= HOP_ROUNDS_ALL:  # each mouse by its own gains: none depends on its batch partners
                hopping = hopping[better]
                if len(hopping) == 0:
                    break
        bar.close()
    else:
        obj = NetworkObjective(batch.repeat(n_restarts), transform, score.repeat(1, n_restarts),
                               learn.repeat(1, n_restarts), map_prior, engine)
        ut = torch.as_tensor(u0, dtype=batch.contrast.dtype, device=batch.contrast.device)
        n_scored_rep = score.sum(0).clamp(min=1).to(ut.dtype).repeat(n_restarts)
        ub, fb, tinfo = minimize_batched(obj, ut, n_scored_rep, method, max_iter, lr, progress,
                                         desc=f"fit {M} mice x {n_restarts}")
        u = np.clip(ub.detach().cpu().numpy(), lower, upper)
        f = kobj(u, np.arange(len(u)))[0]
        info = {"n_evals": tinfo["n_evals"]}
        reason = np.array(["unchecked"] * len(u), dtype=object)
        n_iter = np.full(len(u), max_iter)
        converged = np.zeros(len(u), dtype=bool)
    return _collect(kobj, u, f, reason, n_iter, converged, n_restarts, batch, score, method, gtol,
                    {"n_evals": info["n_evals"], "seconds": time.perf_counter() - t0})


def _fit_nested(batch, transform, score, learn, n_restarts, max_iter, map_prior, seed, progress, gtol, ftol,
                n_screen, screen_iter, n_hops) -> BatchFit:
    """Options of :data:`NESTED_STARTS` free: the fit without them, then the search with them, warm-started
    from its optimum with the options at their fixed values and at their starts (see :func:`fit_batch`). The side
    preference beside other options is nested on the fit with them (itself nested on the fit without them): its
    starts then begin from the other options' optimum."""
    options = tuple(n for n in transform.free if n in NESTED_STARTS)
    pref = tuple(n for n in options if n in ("side_pref", "side_pref_tau"))
    if pref and len(pref) < len(options):
        options = pref
    inner = ParamTransform(free=tuple(n for n in transform.free if n not in options), fixed=transform.fixed)
    M = batch.shape[1]
    fixed = {n: np.broadcast_to(np.asarray(getattr(transform.fixed, n), dtype=float).reshape(-1), (M,))
             for n in options}
    combos = [fixed] + [{**fixed, **{k: np.full(M, x) for k, x in (v.items() if isinstance(v, dict) else [(n, v)])}}
                        for n in options for v in NESTED_STARTS[n]]
    opt_u = ParamTransform(free=options, fixed=transform.fixed)
    if not inner.free:  # only options are free: nothing to fit first, the starts alone
        init = np.stack([opt_u.to_u(values, M).numpy() for values in combos])
        return fit_batch(batch, transform, score, learn, max_iter=max_iter, method="newton", map_prior=map_prior,
                         gtol=gtol, ftol=ftol, init=init)
    base = fit_batch(batch, inner, score, learn, n_restarts, max_iter, "newton", map_prior, seed,
                     progress=progress, gtol=gtol, ftol=ftol, n_screen=n_screen, screen_iter=screen_iter,
                     n_hops=n_hops)
    ub = base.u.detach().cpu().numpy()
    warm = []
    for values in combos:
        uo = opt_u.to_u(values, M).numpy()
        warm.append(np.column_stack([uo[:, options.index(n)] if n in options else ub[:, inner.free.index(n)]
                                     for n in transform.free]))
    if {"side_pref", "side_pref_tau"} <= set(options):
        warm += _moved_start_bias(inner, transform, ub)
    warm = np.stack(warm)
    res = fit_batch(batch, transform, score, learn, n_restarts, max_iter, "newton", map_prior, seed,
                    progress=progress, gtol=gtol, ftol=ftol, n_screen=n_screen, screen_iter=screen_iter,
                    n_hops=n_hops, nest_options=False, warm=warm)
    res.info = {k: base.info.get(k, 0) + res.info.get(k, 0) for k in ("n_evals", "seconds", "work")}
    return res


def _moved_start_bias(inner: ParamTransform, transform: ParamTransform, ub: np.ndarray) -> list[np.ndarray]:
    """Warm starts ``(M, P)`` of a fit with the side preference free, one per :data:`MOVED_BIAS_TAUS`: the optimum
    ``ub`` of ``inner`` (the fit without it) with its start bias moved from the bias weights to rho, i.e. the
    bias weights at their fit starts and rho = beta k (b_R - b_L), the initial logit the weights gave (k the fixed
    or fitted gain of the constant channel), clipped to rho's fit bounds."""
    p = inner.params(torch.as_tensor(ub, dtype=torch.float64))
    lo, hi = PARAMS["side_pref"].fit_bounds
    values = {name: getattr(p, name).numpy() for name in NetParams._fields}
    values["side_pref"] = np.clip((p.beta * p.k * (p.b_R - p.b_L)).numpy(), lo, hi)
    for name in ("b_L", "b_R"):
        values[name] = np.full(len(ub), PARAMS[name].fit_start)
    return [transform.to_u({**values, "side_pref_tau": np.full(len(ub), tau)}, len(ub)).numpy()
            for tau in MOVED_BIAS_TAUS]


def _fit_from(kobj: KernelObjective, init: np.ndarray, max_iter: int, gtol: float, ftol: float,
              batch: TrialBatch, score: torch.Tensor) -> BatchFit:
    """Crease-searching Newton from per-mouse starts ``init`` ``(R, M, P)``."""
    R, M, P = init.shape
    if M != kobj.n_mice or P != len(kobj.sd):
        raise ValueError(f"init: must have shape (R, {kobj.n_mice}, {len(kobj.sd)}), got {init.shape}")
    lower, upper = kobj.transform.bounds_u()
    t0 = time.perf_counter()
    u, f, info = minimize_newton(kobj, np.clip(init.reshape(R * M, P), lower, upper), lower, upper, max_iter,
                                 gtol, ftol=ftol, orders=True)
    return _collect(kobj, u, f, info["reason"].astype(object), info["n_iter"], info["converged"], R, batch,
                    score, "newton", gtol, {"n_evals": info["n_evals"], "seconds": time.perf_counter() - t0})


def _collect(kobj, u, f, reason, n_iter, converged, n_restarts, batch, score, method, gtol, info) -> BatchFit:
    """Each mouse's best column, with the exact derivatives there, as a :class:`BatchFit`."""
    M = kobj.n_mice
    lower, upper = kobj.transform.bounds_u()
    f_all = _by_restart(f, n_restarts)
    u_all = u.reshape(n_restarts, M, -1)
    best = f_all.argmin(0)
    idx = np.arange(M)
    ub = u_all[best, idx]
    fl, gl, Hl = kobj.loglik_derivatives(ub, idx)
    fo, go, Ho = kobj.add_prior(ub, fl, gl, Hl)
    col = best * M + idx
    if method != "newton":  # judge convergence at the end by the same test the Newton fit stops on
        reason = reason.copy()
        for j, c in enumerate(col):
            ok = is_local_minimum(ub[j], go[j], Ho[j], lower, upper, 100 * gtol)
            reason[c] = "gradient" if ok else "not_converged"
            converged[c] = ok
    n_at_best = (f_all <= f_all[best, idx][None] + AGREE_NATS).sum(0)
    dev, dt = batch.contrast.device, batch.contrast.dtype
    tt = lambda a: torch.as_tensor(np.asarray(a, float), dtype=dt, device=dev)  # noqa: E731
    return BatchFit(u=tt(ub), nll=tt(fo), nll_loglik=fl, u_all=tt(u_all), nll_all=tt(f_all), best_restart=torch.as_tensor(best),
                    n_scored=score.sum(0), converged=np.asarray(converged)[col], reason=np.asarray(reason)[col].astype(str),
                    n_iter=np.asarray(n_iter)[col], n_at_best=n_at_best, hessian=Ho, hessian_loglik=Hl, grad=go,
                    info={**info, "work": kobj.work})


def _by_restart(f: np.ndarray, n_restarts: int) -> np.ndarray:
    """Column objectives ``(R * M,)`` as ``(R, M)``, non-finite ones as +inf (never chosen as best)."""
    return np.where(np.isfinite(f), f, np.inf).reshape(n_restarts, -1)


def posterior_precision(transform: ParamTransform, H_loglik: np.ndarray,
                        prior: GaussianPrior | None = None) -> np.ndarray:
    """Laplace posterior precision ``(M, P, P)``: the likelihood Hessian (eigenvalues clipped at 0) + the prior's
    (``prior``, default the registry priors).

    At a crease of the piecewise-smooth likelihood (see :mod:`mouse_rl.fit.newton`) the one-sided Hessian
    can have a negative eigenvalue; clipping it means "no information from the data in that direction"
    and the prior (:data:`mouse_rl.params.PARAMS` ``prior_sd``) supplies it, so the precision is always
    positive definite (as in :func:`mouse_rl.fit.predictive.laplace_covariance`).
    """
    if prior is None:
        prior = transform.registry_prior()
    return posterior_precisions(H_loglik, prior)


def standard_errors(batch: TrialBatch, transform: ParamTransform, u: torch.Tensor, score=None, learn=None,
                    map_prior: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method standard errors of the free parameters ``(M, P)`` (natural units) and the Hessians.

    The exact Hessian of the negative log-likelihood (plus the prior with
    ``map_prior``) in unconstrained units comes from the fused kernel;
    ``cov_u = H^-1`` and ``se_theta = |d theta / d u| sqrt(diag cov_u)``.
    NaN where H is not positive definite.
    """
    obj = KernelObjective(batch, transform, score, learn, map_prior)
    un = u.detach().cpu().numpy()
    _, _, H = obj(un, np.arange(len(un)))
    return _se_from_hessian(transform, un, H)[0], H


def _se_from_hessian(transform: ParamTransform, u: np.ndarray, H: np.ndarray,
                     precision: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """SEs ``(M, P)`` from ``H`` and a status per mouse.

    ``"ok"``: ``H`` is positive definite. Otherwise, with ``precision`` given
    (:func:`posterior_precision`), the SEs come from it and the status says so
    (``"crease: curvature clipped"``); without, they are NaN and the status says why.
    """
    se = np.full(u.shape, np.nan)
    reasons = []
    _, d1, _ = transform.natural(u)
    lower, upper = transform.bounds_u()
    for m in range(u.shape[0]):  # tiny P x P inverses; not in the hot path
        h = 0.5 * (H[m] + H[m].T)
        at = [n for j, n in enumerate(transform.free) if u[m, j] <= lower[j] + 1e-9 or u[m, j] >= upper[j] - 1e-9]
        bound = f" (at bound: {', '.join(at)})" if at else ""
        if np.all(np.isfinite(h)) and np.linalg.eigvalsh(h).min() > 0:
            se[m] = np.abs(d1[m]) * np.sqrt(np.diag(np.linalg.inv(h)))
            reasons.append("ok" + bound)
        elif precision is not None:
            se[m] = np.abs(d1[m]) * np.sqrt(np.diag(np.linalg.inv(precision[m])))
            reasons.append("crease: curvature clipped, prior-regularised" + bound)
        else:
            reasons.append(("hessian not finite" if not np.all(np.isfinite(h)) else "hessian not positive definite")
                           + bound)
    return se, reasons


def identifiability(transform: ParamTransform, H_loglik: np.ndarray) -> pd.DataFrame:
    """Which parameter combinations a mouse's data identify, from the likelihood Hessian in ``u`` ``(M, P, P)``.

    With the prior precision ``L = diag(1 / prior_sd^2)``, the eigenvalues
    ``e`` of ``L^-1/2 H L^-1/2`` say how much more the data constrain each
    direction than the prior does. ``n_identified = sum e / (1 + e)`` (0..P)
    is the number of directions the data pin down; the weakest direction is
    reported as its unconstrained-coordinate loadings (e.g. ``"w0 +0.71, s0
    -0.70"``: the data constrain log w0 - log s0 least) with ``weakest_data_share``
    = e / (1 + e) along it (0 = prior only, 1 = data only).
    """
    _, sd = transform.prior_u()
    rows = []
    for h in H_loglik:
        h = 0.5 * (h + h.T)
        if not np.all(np.isfinite(h)):
            rows.append({"n_identified": np.nan, "weakest_direction": "", "weakest_data_share": np.nan})
            continue
        e, V = np.linalg.eigh(h * sd[:, None] * sd[None, :])
        e = np.clip(e, 0, None)
        v = V[:, 0] * sd
        v = v / np.linalg.norm(v)
        v = v * np.sign(v[np.argmax(np.abs(v))])
        terms = [f"{n} {c:+.2f}" for n, c in sorted(zip(transform.free, v), key=lambda t: -abs(t[1])) if abs(c) >= 0.2]
        rows.append({"n_identified": float((e / (1 + e)).sum()), "weakest_direction": ", ".join(terms),
                     "weakest_data_share": float(e[0] / (1 + e[0]))})
    return pd.DataFrame(rows)


#: A mouse with fewer than this many trials per fitted parameter gets a warning: its fit is mostly the prior.
MIN_TRIALS_PER_PARAM = 20


class FewTrialsWarning(UserWarning):
    """A mouse has too few trials for the number of fitted parameters."""


def warn_few_trials(df: pd.DataFrame, n_free: int) -> None:
    """Warn (:class:`FewTrialsWarning`) naming the mice with fewer than ``MIN_TRIALS_PER_PARAM * n_free`` trials."""
    counts = df.groupby("mouse", sort=True).size()
    few = counts[counts < MIN_TRIALS_PER_PARAM * n_free]
    if len(few):
        shown = ", ".join(f"{m} ({n})" for m, n in list(few.items())[:10]) + (" ..." if len(few) > 10 else "")
        warnings.warn(f"trials: {len(few)} mouse/mice have fewer than {MIN_TRIALS_PER_PARAM * n_free} trials for "
                      f"{n_free} fitted parameters: {shown}; their estimates rest mostly on the prior",
                      FewTrialsWarning, stacklevel=3)


def fit_mice(trials: pd.DataFrame, n_restarts: int = 8, max_iter: int = 100, method: str = "newton",
             map_prior: bool = True, free=DEFAULT_FREE, fixed: ModelParams | None = None,
             fit_lapse: bool = True, device="cpu", dtype: torch.dtype = torch.float64, seed: int = 0,
             progress: bool = False, engine: str = "eager", compute_se: bool = True,
             per_trial: bool = True, score_rows=None, learn_rows=None, lr: float | None = None,
             population: bool = False, population_iter: int = 10) -> FitResult:
    """Fit the network to every mouse of a trial table; every mouse converges on its own.

    Parameters
    ----------
    trials : trial table (validated here); mice are fitted independently (a
        mouse's result does not depend on the other mice in the table).
    n_restarts : starts per mouse (restart 0 = model defaults, the rest a scrambled
        Sobol design over :data:`mouse_rl.params.PARAMS` ``start_range``, the same for every mouse).
    max_iter : Newton iterations (L-BFGS iterations / Adam steps for those methods).
    method : ``"newton"`` (default; per-mouse trust-region Newton on the exact Hessian of the fused
        kernel), ``"lbfgs"`` or ``"adam"`` (torch unroll, batched optimiser; for comparison).
    map_prior : weakly informative Gaussian priors of :data:`mouse_rl.params.PARAMS` (default True:
        they keep directions the data cannot separate, e.g. the lapse, off their bounds);
        False = maximum likelihood.
    free : parameters to fit (default eta, beta, w0, s0, b_L, b_R, lapse; k = 1 fixed). Adding the options
        ``"stim_skew"`` (per-side initial stimulus channels, :data:`mouse_rl.params.PARAMS`), ``"k"`` (the
        constant channel's initial gain), ``"crosstalk"`` or ``"side_pref", "side_pref_tau"`` (the innate side
        preference, fitted together) fits them too, nested on the fit without them (see :func:`fit_batch`).
    fixed : :class:`ModelParams` for the non-free parameters and model options
        (encoding, positive, zero_reward). ``w0=1`` with ``"w0"`` not free = shallow network.
    fit_lapse : fit the lapse (else it stays at ``fixed.lapse``, default 0).
    device, dtype : of the per-trial table and of the lbfgs/adam unroll (the Newton kernel runs on the CPU).
    seed : seed of the restart design.
    progress : show a progress bar (off by default; the CLI turns it on).
    engine : ``"eager"`` or ``"compile"`` torch unroll for lbfgs/adam.
    compute_se : delta-method standard errors from the exact Hessian.
    per_trial : build the teacher-forced per-trial table at the fitted parameters.
    score_rows, learn_rows : optional bool arrays over the prepared table's rows:
        trials whose choices count in the likelihood / that the learner learns from.
    population : hierarchical fit (:func:`mouse_rl.fit.population.fit_population`): a Gaussian
        population over the free parameters by empirical Bayes, every mouse's MAP under it
        (``FitResult.population``); Newton and MAP only, learning from every trial.
    population_iter : EM iterations of the population fit.

    Returns
    -------
    FitResult
        ``params`` has, per mouse, the fitted parameters, ``loglik`` (nats; the likelihood even with
        the prior), ``log_posterior`` (with ``map_prior``), ``converged``, ``stop_reason``, ``n_iter``,
        ``n_restarts_at_best`` (restarts within 0.5 nats of the best), ``se_<name>`` and ``se_status``,
        ``n_identified``, ``weakest_direction``, ``weakest_data_share`` (see :func:`identifiability`).
    """
    if int(n_restarts) != n_restarts or n_restarts < 1:
        raise ValueError(f"n_restarts: must be a positive integer, got {n_restarts!r}")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter: must be a positive integer, got {max_iter!r}")
    df = prepare_trials(trials)
    transform = make_transform(free, fixed, fit_lapse)
    fixed = transform.fixed
    warn_few_trials(df, transform.n_free)
    t0 = time.perf_counter()
    pop = None
    if population:
        if method != "newton" or not map_prior or learn_rows is not None:
            raise ValueError("population: needs method='newton', map_prior=True and no learn_rows")
        from .cv import NetworkModel
        from .population import fit_population

        model = NetworkModel(df, n_restarts=n_restarts, max_iter=max_iter, free=transform.free, fixed=fixed,
                             fit_lapse=fit_lapse, device=device, dtype=dtype, seed=seed)
        batch = model.batch  # the model's own batch of the same prepared table
        pop = fit_population(model, score_rows, n_iter=population_iter, progress=progress)
        res = model.result  # the last E-step: every mouse's MAP under the fitted population
    else:
        batch = make_batch(df, fixed.zero_reward, device, dtype, prepared=True)
        score = None if score_rows is None else batch.mask_from_rows(score_rows)
        learn = None if learn_rows is None else batch.mask_from_rows(learn_rows)
        res = fit_batch(batch, transform, score, learn, n_restarts, max_iter, method, map_prior, seed, engine,
                        progress, lr)
    u = res.u
    p = transform.params(u)
    n = res.n_scored.cpu().numpy().astype(float)
    un = u.cpu().numpy()
    nll = res.nll_loglik
    seconds = time.perf_counter() - t0
    k = transform.n_free
    table = pd.DataFrame({"mouse": batch.mice})
    for name in NetParams._fields:
        table[name] = getattr(p, name).detach().cpu().numpy()
    table["loglik"] = -nll
    if map_prior:
        table["log_posterior"] = -res.nll.cpu().numpy()
    table["n_trials"] = n.astype(int)
    table["n_params"] = k
    table["bits_per_trial"] = -nll / np.maximum(n, 1) / math.log(2)
    table["BIC"] = k * np.log(np.maximum(n, 1)) + 2 * nll
    table["AIC"] = 2 * k + 2 * nll
    table["converged"] = res.converged
    table["stop_reason"] = res.reason
    table["n_iter"] = res.n_iter
    table["best_restart"] = res.best_restart.cpu().numpy()
    table["n_restarts_at_best"] = res.n_at_best
    table["fit_seconds"] = seconds
    precision = posterior_precision(transform, res.hessian_loglik, None if pop is None else pop.prior)
    if compute_se:
        se, status = _se_from_hessian(transform, un, res.hessian, precision if map_prior else None)
        for j, name in enumerate(transform.free):
            table[f"se_{name}"] = se[:, j]
        table["se_status"] = status
    ident = identifiability(transform, res.hessian_loglik)
    for c in ident:
        table[c] = ident[c].to_numpy()
    rows = []
    for r in range(res.u_all.shape[0]):
        pr = transform.params(res.u_all[r])
        block = pd.DataFrame({"mouse": batch.mice, "restart": r, "objective": res.nll_all[r].cpu().numpy()})
        for name in transform.free:
            block[name] = getattr(pr, name).detach().cpu().numpy()
        rows.append(block)
    per = teacher_forced(df, table, encoding=fixed.encoding, positive=fixed.positive,
                         zero_reward=fixed.zero_reward, learn_rows=learn_rows, device=device,
                         dtype=dtype) if per_trial else pd.DataFrame()
    options = dict(n_restarts=n_restarts, max_iter=max_iter, method=method, map_prior=map_prior,
                   free=transform.free, seed=seed, engine=engine, n_evals=res.info["n_evals"],
                   seconds=seconds, device=str(device))
    if pop is not None:
        options.update(population=True, population_iter=population_iter, population_converged=pop.converged)
    return FitResult(table, per, pd.concat(rows, ignore_index=True), transform, options, un, precision, pop)
