"""Day-to-day session effects on the policy: a side bias and an engagement gain (an option of the checks).

Real mice lean to one side more on some days than on others, and follow the stimulus more closely on some
days than on others. The option draws, afresh for every session s of a mouse, a logit offset o_s and a gain
g_s on the value difference:

    P(Right)_t = lapse / 2 + (1 - lapse) sigmoid(g_s beta (Q_R - Q_L) + side preference_t + o_s),
    o_s ~ N(0, bias_sd^2) (logit units, + = Right),   log g_s ~ N(0, gain_sd^2)

They act on the choice only: learning uses the choice made, as with the side preference
(:func:`mouse_rl.network.side_preference`). ``bias_sd = gain_sd = 0`` is MODEL.md.

**Fitted from the teacher-forced choices.** Under teacher forcing the network learns from the mouse's own
choices and rewards, so its weights do not depend on the session effects, and the likelihood of the mouse's
choices given the fitted parameters theta is a product over sessions of two-dimensional integrals,

    L = prod_s  integral  prod_{t in s} P(choice_t | e^(gain_sd y) a_t + b_t + bias_sd x)  phi(x) phi(y) dx dy,

(a_t = beta (Q_R - Q_L), b_t the side preference), computed by adaptive Gauss-Hermite quadrature (:data:`NODES`
nodes per dimension, centred on each session's mode and scaled by its curvature). :func:`fit_session_effects`
maximises it over the two sds per mouse with theta held at a teacher-forced fit (a two-stage fit, as the
overnight drift's, :mod:`mouse_rl.fit.drift`) and reports the gain in log-likelihood over no session effects.

**Simulated.** :func:`session_offsets` and :func:`session_gains` draw each column's effects counter-based
(:mod:`envs.rng`, streams :data:`BIAS_STREAM` and :data:`GAIN_STREAM`, counter = the row of the session's first
trial), so a copy's effects do not depend on its batch partners; the free-running engines add the offsets to
the logit and multiply beta by the gains (:func:`mouse_rl.simulate.simulate_on_stimuli` ``offset``, ``gain``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from envs import rng

from .batch import TrialBatch, row_mask

#: Random streams of the session offsets and gains (not used by :mod:`envs.rng`'s named streams, the drift,
#: the noisy checks or optogenetics).
BIAS_STREAM, GAIN_STREAM = 8, 9
#: Ranges of fitted sds: the bias (logit units) and the log gain (searched on a log scale from ``SD_MIN``;
#: a mouse whose best fit is no effect at all gets sds of 0).
BIAS_BOUNDS, GAIN_BOUNDS = (0.0, 3.0), (0.0, 1.5)
SD_MIN = 1e-3
#: Gauss-Hermite nodes per dimension of the adaptive quadrature (tested against numerical integration).
NODES = 9
#: Newton iterations for each session's mode.
MAX_NEWTON = 50


def _logp(y: np.ndarray, lapse: float) -> np.ndarray:
    """log P(choice) at logits ``y`` towards the chosen side (stable for any logit and a lapse of 0)."""
    with np.errstate(divide="ignore"):  # log(0) = -inf without a lapse: logaddexp takes it
        return np.logaddexp(np.log(0.5 * lapse), np.log1p(-lapse) + log_expit(y))


def _trial_terms(x: np.ndarray, right: np.ndarray, lapse: float):
    """log P(choice) of trials at logits ``x`` and its first two derivatives in the logit."""
    sign = np.where(right, 1.0, -1.0)
    y = sign * x  # the logit towards the chosen side
    logp = _logp(y, lapse)
    r = np.exp(np.log1p(-lapse) + log_expit(y) + log_expit(-y) - logp)  # d log p / dy
    return logp, sign * r, r * np.tanh(-0.5 * y) - r * r


def marginal_loglik(value: np.ndarray, offset: np.ndarray, right: np.ndarray, session: np.ndarray, lapse: float,
                    bias_sd: float, gain_sd: float = 0.0, nodes: int = NODES) -> float:
    """log-likelihood (nats) of one mouse's choices with the session effects integrated out.

    Parameters
    ----------
    value : ``(n,)`` beta (Q_R - Q_L) of each trial (the part the gain scales).
    offset : ``(n,)`` the rest of the logit (the side preference; zeros without one).
    right : ``(n,)`` bool, the mouse chose Right.
    session : ``(n,)`` session label of each trial (any labels; trials of a session need not be adjacent).
    lapse : the lapse rate (0 <= lapse < 1).
    bias_sd, gain_sd : sds of the session offset (logit units) and of the log gain, >= 0; both 0 give the
        plain likelihood.
    """
    value, offset, right = (np.asarray(value, float), np.asarray(offset, float), np.asarray(right, bool))
    if bias_sd == 0 and gain_sd == 0:
        return float(_trial_terms(value + offset, right, lapse)[0].sum())
    *_, out = _quadrature(value, offset, right, session, lapse, bias_sd, gain_sd, nodes)
    top = out.max(0)
    return float((top + np.log(np.exp(out - top).sum(0))).sum())


def marginal_terms(value: np.ndarray, offset: np.ndarray, right: np.ndarray, session: np.ndarray, lapse: float,
                   bias_sd: float, gain_sd: float = 0.0, nodes: int = NODES):
    """:func:`marginal_loglik` and its derivatives in each trial's ``value``, ``offset`` and in the lapse.

    Returns ``(loglik, d_value, d_offset, d_lapse)``: the first two ``(n,)`` (nats per unit of the trial's value /
    offset), ``d_lapse`` a float: the posterior means over the session effects of the derivatives of log
    P(choice) (the derivative of the quadrature at its nodes), so that the derivative of the marginal in any
    parameter is ``d_value @ dvalue/dp + d_offset @ doffset/dp + d_lapse dlapse/dp``.
    """
    value, offset, right = (np.asarray(value, float), np.asarray(offset, float), np.asarray(right, bool))
    if bias_sd == 0 and gain_sd == 0:
        x, g, post = (value + offset)[None], np.ones((1, len(value))), np.ones((1, len(value)))
    else:
        idx, x, g, out = _quadrature(value, offset, right, session, lapse, bias_sd, gain_sd, nodes)
        top = out.max(0)
        post = np.exp(out - top)
        loglik = float((top + np.log(post.sum(0))).sum())
        post = (post / post.sum(0))[:, idx]  # (K, n): each node's posterior weight in the trial's session
    logp, d1, _ = _trial_terms(x, right, lapse)
    if bias_sd == 0 and gain_sd == 0:
        loglik = float(logp.sum())
    sig = expit(np.where(right, x, -x))  # P(choice) without the lapse
    d_lapse = (post * (0.5 - sig) / np.exp(logp)).sum()
    return loglik, (post * d1 * g).sum(0), (post * d1).sum(0), float(d_lapse)


def _quadrature(value, offset, right, session, lapse, bias_sd, gain_sd, nodes):
    """The adaptive Gauss-Hermite quadrature of :func:`marginal_loglik` (bias_sd or gain_sd > 0): each trial's
    session index ``idx`` ``(n,)``, the logits of Right ``x`` and the gains ``g`` at the nodes ``(K, n)``, and
    ``out`` ``(K, S)``: per node and session the log of its term (the session's log-integral is the logsumexp
    over nodes)."""
    _, idx = np.unique(np.asarray(session), return_inverse=True)
    S = int(idx.max()) + 1
    per = lambda v: np.bincount(idx, weights=v, minlength=S)  # noqa: E731

    def terms(z):  # z (S, 2) -> each trial's log p and its logit derivatives, and its gained value
        e = np.exp(gain_sd * z[idx, 1]) * value
        f, d1, d2 = _trial_terms(e + offset + bias_sd * z[idx, 0], right, lapse)
        return f, d1, d2, e

    z = np.zeros((S, 2))
    for _ in range(MAX_NEWTON):
        _, d1, d2, e = terms(z)
        gx, gy = per(d1 * bias_sd) - z[:, 0], per(d1 * gain_sd * e) - z[:, 1]
        hxx = per(d2) * bias_sd ** 2 - 1
        hxy = per(d2 * e) * bias_sd * gain_sd
        hyy = per(d2 * (gain_sd * e) ** 2 + d1 * gain_sd ** 2 * e) - 1
        # Newton on the negated Hessian, made positive definite where the data bend the wrong way
        a, b, c = -hxx, -hxy, -hyy
        low = 0.5 * (a + c) - np.sqrt(0.25 * (a - c) ** 2 + b * b)  # the smaller eigenvalue
        lam = np.maximum(0.0, 0.5 - low)
        a, c = a + lam, c + lam
        det = a * c - b * b
        step = np.stack([(c * gx - b * gy) / det, (a * gy - b * gx) / det], 1)
        z += np.clip(step, -1.0, 1.0)
        if np.max(np.abs(step)) < 1e-9:
            break
    _, d1, d2, e = terms(z)
    curv = np.empty((S, 2, 2))  # minus the Hessian of the log integrand at the mode
    curv[:, 0, 0] = 1 - per(d2) * bias_sd ** 2
    curv[:, 0, 1] = curv[:, 1, 0] = -per(d2 * e) * bias_sd * gain_sd
    curv[:, 1, 1] = 1 - per(d2 * (gain_sd * e) ** 2 + d1 * gain_sd ** 2 * e)
    # nodes spread as the Laplace approximation, never wider than the prior (curvature >= 1: where a lapse
    # makes the data's log-likelihood bend up, the integrand is still no wider than its N(0, 1) factor)
    vals, vecs = np.linalg.eigh(curv)
    vals = np.maximum(vals, 1.0)
    L = vecs / np.sqrt(vals)[:, None, :]  # L L^T = the covariance
    logdet = -0.5 * np.log(vals).sum(1)
    w1, wt = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-w^2 / 2)
    W = np.stack(np.meshgrid(w1, w1, indexing="ij"), -1).reshape(-1, 2)  # (K, 2) tensor-product nodes
    logw = np.log(np.outer(wt, wt).reshape(-1))
    zk = z[None] + np.einsum("sij,kj->ksi", L, W)  # (K, S, 2)
    g = np.exp(gain_sd * zk[:, idx, 1])
    x = g * value + offset + bias_sd * zk[:, idx, 0]  # (K, n)
    lp = _logp(np.where(right, x, -x), lapse)
    f = np.stack([per(row) for row in lp])  # (K, S)
    # integral of exp(l(z)) phi(z) dz with z = mode + L w: the weight exp(-|w|^2 / 2) folded back in
    out = (f - 0.5 * (zk ** 2).sum(-1) - np.log(2 * np.pi) + 0.5 * (W ** 2).sum(1)[:, None] + logw[:, None]
           + logdet[None])
    return idx, x, g, out


def policy_terms(trials: pd.DataFrame, params, *, encoding: str = "side", positive: bool = True,
                 zero_reward: str = "expected", threads: int | None = 1) -> pd.DataFrame:
    """Teacher-forced policy terms of every trial, one row per row of the prepared table.

    Returns the prepared table's ``mouse`` and ``session`` with ``value`` (beta (Q_R - Q_L)), ``offset`` (the
    side preference), ``right`` (the mouse chose Right) and the mouse's ``lapse``, from
    :func:`mouse_rl.fit.likelihood.teacher_forced_values` at ``params`` (any form
    :func:`~mouse_rl.fit.likelihood.teacher_forced` takes; a ``ModelParams`` sets the options).
    """
    from ..params import ModelParams
    from .batch import make_batch, prepare_trials
    from .likelihood import params_tensors, teacher_forced_values
    from .optim import torch_threads

    df = prepare_trials(trials)
    if isinstance(params, ModelParams):
        encoding, positive, zero_reward = params.encoding, params.positive, params.zero_reward
    batch = make_batch(df, zero_reward, "cpu", torch.float64, prepared=True)
    with torch_threads(threads):
        value, offset, lapse = teacher_forced_values(batch, params_tensors(params, batch), encoding, positive)
    column = pd.factorize(df["mouse"], sort=True)[0]  # each row's batch column (mice sorted by name)
    return pd.DataFrame({"mouse": df["mouse"].to_numpy(), "session": df["session"].to_numpy(),
                         "value": batch.to_rows(torch.as_tensor(value)),
                         "offset": batch.to_rows(torch.as_tensor(offset)), "right": df["choice"].to_numpy() == 1,
                         "lapse": lapse[column]})


def _mouse_loglik(g: pd.DataFrame, bias_sd: float, gain_sd: float) -> float:
    return marginal_loglik(g["value"].to_numpy(), g["offset"].to_numpy(), g["right"].to_numpy(),
                           g["session"].to_numpy(), float(g["lapse"].iloc[0]), bias_sd, gain_sd)


def fit_session_effects(trials: pd.DataFrame, params, *, bias: bool = True, gain: bool = True, rows=None,
                        encoding: str = "side", positive: bool = True, zero_reward: str = "expected",
                        threads: int | None = 1) -> pd.DataFrame:
    """Each mouse's session-effect sds by marginal likelihood of its choices, at fitted parameters held fixed.

    Parameters
    ----------
    trials : trial table of the mice (as fitted).
    params : the fitted parameters, as :func:`mouse_rl.fit.likelihood.teacher_forced` takes them (e.g.
        ``FitResult.params``, a DataFrame with a ``mouse`` column, or :meth:`FitResult.model_params`).
    bias, gain : fit the side bias and the engagement gain (default both); one False: its sd stays 0.
    rows : optional boolean mask over the prepared table's rows whose choices are fitted (e.g. a training
        split of :mod:`mouse_rl.fit.cv`; the network still learns from every trial). Default: all.
    encoding, positive, zero_reward : model options (a ``ModelParams`` overrides them).
    threads : torch CPU threads of the teacher-forced run (restored on return).

    Returns
    -------
    pandas.DataFrame, one row per mouse (sorted): ``session_bias_sd`` (logit units), ``session_gain_sd`` (log
    gain), ``loglik`` (nats, at those sds), ``loglik_gain`` (over no session effects, nats), ``n_sessions``.
    """
    lg = policy_terms(trials, params, encoding=encoding, positive=positive, zero_reward=zero_reward,
                      threads=threads)
    lg = lg[row_mask(rows, len(lg), "rows")]
    out = []
    lo, hi = np.log(SD_MIN), np.log([BIAS_BOUNDS[1], GAIN_BOUNDS[1]])
    for mouse, g in lg.groupby("mouse", sort=True):
        at0 = _mouse_loglik(g, 0.0, 0.0)
        best = (at0, 0.0, 0.0)
        free = [bias, gain]

        def sds(v):  # log sds of the free effects -> (bias sd, gain sd)
            full, k = [0.0, 0.0], 0
            for j in range(2):
                if free[j]:
                    full[j], k = float(np.exp(v[k])), k + 1
            return full

        if any(free):
            x0 = np.log([0.4, 0.2])[free]
            res = minimize(lambda v: -_mouse_loglik(g, *sds(v)), x0, method="L-BFGS-B",
                           bounds=list(zip(np.full(2, lo)[free], hi[free])), options={"ftol": 1e-12, "gtol": 1e-7})
            if -res.fun > best[0]:
                best = (-float(res.fun), *sds(res.x))
        out.append({"mouse": str(mouse), "session_bias_sd": best[1], "session_gain_sd": best[2],
                    "loglik": best[0], "loglik_gain": best[0] - at0,
                    "n_sessions": int(g["session"].nunique())})
    return pd.DataFrame(out)


def heldout_loglik(trials: pd.DataFrame, params, bias_sd, gain_sd, train, test, **options) -> pd.DataFrame:
    """Held-out log-likelihood of the ``test`` rows' choices given the ``train`` rows', with session effects.

    A session's effects are shared by its trials, so held-out choices are predicted by their posterior given
    the session's training choices: per session, log p(test | train) = log p(train and test) - log p(train),
    each a marginal over the effects (:func:`marginal_loglik`); a session without training rows (the
    time-aware split) is predicted by their prior, i.e. by the choices before it in the session, as the chain
    rule writes the joint probability. ``bias_sd``, ``gain_sd``: ``(M,)`` per mouse (sorted) or scalars; 0 gives
    the plug-in score at ``params``. ``options``: as :func:`policy_terms`.

    Returns one row per mouse (sorted): ``loglik`` (nats) and ``n_trials`` of the ``test`` rows.
    """
    lg = policy_terms(trials, params, **options)
    train, test = row_mask(train, len(lg), "train"), row_mask(test, len(lg), "test")
    if np.any(train & test):
        raise ValueError("train, test: a row is in both")
    mice = sorted(lg["mouse"].unique())
    bias_sd, gain_sd = check_sd(bias_sd, len(mice), "bias_sd"), check_sd(gain_sd, len(mice), "gain_sd")
    out = []
    for m, mouse in enumerate(mice):
        mine = (lg["mouse"] == mouse).to_numpy()
        ll = [_mouse_loglik(lg[keep], bias_sd[m], gain_sd[m]) if keep.any() else 0.0
              for keep in (mine & (train | test), mine & train)]
        out.append({"mouse": mouse, "loglik": ll[0] - ll[1], "n_trials": int((mine & test).sum())})
    return pd.DataFrame(out)


def check_sd(sd, n: int, name: str) -> np.ndarray:
    """``(n,)`` float sds, validated: finite and >= 0 (a scalar is broadcast)."""
    v = np.asarray(sd, float)
    if v.ndim > 1 or (v.ndim == 1 and len(v) != n):
        raise ValueError(f"{name}: expected a scalar or {n} values (one per column), got shape {v.shape}")
    v = np.array(np.broadcast_to(v, (n,)))
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        bad = v[~(np.isfinite(v) & (v >= 0))][0]
        raise ValueError(f"{name}: must be finite and >= 0, got {bad}")
    return v


def _session_normals(batch: TrialBatch, seeds, stream: int, dtype) -> torch.Tensor:
    """``(T, B)`` standard normals, one per session of each column (its every trial; counter = the session's
    first row), from the column's seed."""
    T, B = batch.shape
    seeds = rng.as_seed_tensor(seeds, batch.contrast.device)
    if seeds.shape != (B,):
        raise ValueError(f"seeds: expected {B} seeds, got {seeds.shape[0]}")
    sess, valid = batch.session.cpu().numpy(), batch.valid.cpu().numpy()
    opens = valid.copy()  # rows that open a session: valid, and the row above is padding or another session
    opens[1:] &= (sess[1:] != sess[:-1]) | ~valid[:-1]
    first = np.maximum.accumulate(np.where(opens, np.arange(T)[:, None], 0), axis=0)
    counter = torch.as_tensor(first, device=batch.contrast.device)
    return rng.normal(seeds[None, :].expand(T, B), stream, counter, dtype)


def session_offsets(batch: TrialBatch, seeds, sd, dtype=torch.float64) -> torch.Tensor:
    """``(T, B)`` logit offsets: column ``b``'s session offset ``sd[b] * eps`` on every trial of the session
    (0 on padding), ``eps`` standard normal from the column's seed (stream :data:`BIAS_STREAM`)."""
    sd = torch.as_tensor(check_sd(sd, batch.shape[1], "session_bias_sd"), dtype=dtype, device=batch.contrast.device)
    eps = _session_normals(batch, seeds, BIAS_STREAM, dtype)
    return torch.where(batch.valid, sd[None, :] * eps, torch.zeros((), dtype=dtype, device=sd.device))


def session_gains(batch: TrialBatch, seeds, sd, dtype=torch.float64) -> torch.Tensor:
    """``(T, B)`` gains on beta: column ``b``'s ``exp(sd[b] * eps)`` on every trial of a session (1 on padding),
    ``eps`` standard normal from the column's seed (stream :data:`GAIN_STREAM`)."""
    sd = torch.as_tensor(check_sd(sd, batch.shape[1], "session_gain_sd"), dtype=dtype, device=batch.contrast.device)
    eps = _session_normals(batch, seeds, GAIN_STREAM, dtype)
    return torch.where(batch.valid, torch.exp(sd[None, :] * eps), torch.ones((), dtype=dtype, device=sd.device))
