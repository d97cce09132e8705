"""Session-to-session bias of the policy (an option of the checks' free-running copies).

Real mice lean to one side more on some days than on others. The option adds to the policy's logit on
every trial of session s of a mouse one offset o_s (logit units, + = Right), drawn afresh for every session:

    P(Right)_t = lapse / 2 + (1 - lapse) sigmoid(beta (Q_R - Q_L) + side preference_t + o_s),   o_s ~ N(0, sd^2)

It acts on the choice only: learning uses the choice made, as with the side preference
(:func:`mouse_rl.network.side_preference`). ``sd`` = 0 is MODEL.md.

**Fitted from the teacher-forced choices.** Under teacher forcing the network learns from the mouse's own
choices and rewards, so its weights do not depend on the offsets, and the likelihood of the mouse's choices
given the fitted parameters theta is a product over sessions of one-dimensional integrals,

    L(sd) = prod_s  integral  prod_{t in s} P(choice_t | logit_t + o)  N(o; 0, sd^2) do,

computed by adaptive Gauss-Hermite quadrature (:data:`NODES` nodes per session). :func:`fit_session_bias` maximises it over
``sd`` per mouse with theta held at a teacher-forced fit (a two-stage fit, as the overnight drift's,
:mod:`mouse_rl.fit.drift`), and reports the gain in log-likelihood over ``sd`` = 0 and a profile-likelihood
interval.

**Simulated.** :func:`session_offsets` draws each column's offsets counter-based (:mod:`envs.rng`, stream
:data:`SESSION_BIAS_STREAM`, counter = the row of the session's first trial), so a copy's offsets do not
depend on its batch partners; the free-running engines add them to the logit
(:func:`mouse_rl.simulate.simulate_on_stimuli` ``offset``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit

from envs import rng

from .batch import TrialBatch

#: Random stream of the session offsets (not used by :mod:`envs.rng`'s named streams, the drift or optogenetics).
SESSION_BIAS_STREAM = 8
#: Range of a fitted sd (logit units).
SD_BOUNDS = (0.0, 5.0)
#: Gauss-Hermite nodes per session of the adaptive quadrature (tested against adaptive numerical integration).
NODES = 15
#: Newton iterations for each session's mode.
MAX_NEWTON = 50
#: Drop in log-likelihood that bounds the profile interval (chi-square 1 dof, 95%).
PROFILE_DROP = 1.920729


def _trial_terms(x: np.ndarray, right: np.ndarray, lapse: float):
    """log P(choice) of trials at logits ``x`` and its first two derivatives in the logit."""
    q = expit(x)
    pr = 0.5 * lapse + (1 - lapse) * q
    p = np.where(right, pr, 1 - pr)
    dq = (1 - lapse) * q * (1 - q)
    sign = np.where(right, 1.0, -1.0)
    d1 = sign * dq / p
    d2 = sign * dq * (1 - 2 * q) / p - d1 ** 2
    return np.log(p), d1, d2


def marginal_loglik(logit: np.ndarray, right: np.ndarray, session: np.ndarray, lapse: float, sd: float,
                    nodes: int = NODES) -> float:
    """log-likelihood (nats) of one mouse's choices with a N(0, sd^2) logit offset per session.

    Each session's integral over its offset is taken by adaptive Gauss-Hermite quadrature: ``nodes`` nodes
    centred on the mode of the integrand (Newton) and scaled by its curvature, so a session of many trials,
    whose integrand is much narrower than the prior, is integrated as accurately as a short one.

    Parameters
    ----------
    logit : ``(n,)`` the model's logit of each trial before the offset (beta (Q_R - Q_L) + side preference).
    right : ``(n,)`` bool, the mouse chose Right.
    session : ``(n,)`` session label of each trial (any labels; trials of a session need not be adjacent).
    lapse : the lapse rate (0 <= lapse < 1).
    sd : sd of the session offset (logit units, >= 0); 0 gives the plain likelihood.
    """
    logit, right = np.asarray(logit, float), np.asarray(right, bool)
    if sd == 0:
        return float(_trial_terms(logit, right, lapse)[0].sum())
    _, idx = np.unique(np.asarray(session), return_inverse=True)
    S = int(idx.max()) + 1
    per = lambda v: np.bincount(idx, weights=v, minlength=S)  # noqa: E731
    mode = np.zeros(S)
    for _ in range(MAX_NEWTON):
        _, d1, d2 = _trial_terms(logit + mode[idx], right, lapse)
        g1, g2 = per(d1) - mode / sd ** 2, per(d2) - 1 / sd ** 2
        step = -g1 / np.minimum(g2, -1 / sd ** 2)  # the prior's curvature bounds the step where the data bend up
        mode += np.clip(step, -2.0, 2.0)
        if np.max(np.abs(step)) < 1e-10:
            break
    _, _, d2 = _trial_terms(logit + mode[idx], right, lapse)
    scale = 1 / np.sqrt(np.maximum(1 / sd ** 2 - per(d2), 1 / sd ** 2 * 1e-3))  # sd of the Laplace approximation
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2 / 2)
    terms = []
    for xk, wk in zip(x, w):
        o = mode + scale * xk
        lp = per(_trial_terms(logit + o[idx], right, lapse)[0])
        # integral of exp(l(o)) N(o; 0, sd^2) do with o = mode + scale x: weight exp(-x^2/2) folded back in
        terms.append(lp - 0.5 * (o / sd) ** 2 + 0.5 * xk ** 2 + np.log(wk * scale / sd / np.sqrt(2 * np.pi)))
    terms = np.stack(terms)
    top = terms.max(0)
    return float((top + np.log(np.exp(terms - top).sum(0))).sum())


def _mouse_sd(logit, right, session, lapse) -> tuple[float, float, float, float, float]:
    """``(sd, loglik at sd, loglik at 0, interval low, interval high)`` of one mouse."""
    f = lambda sd: marginal_loglik(logit, right, session, lapse, sd)  # noqa: E731
    lo_b, hi_b = SD_BOUNDS
    res = minimize_scalar(lambda sd: -f(sd), bounds=(lo_b, hi_b), method="bounded", options={"xatol": 1e-4})
    best, sd = -res.fun, float(res.x)
    at0 = f(0.0)
    if at0 >= best:
        best, sd = at0, 0.0
    cut = lambda v: f(v) - (best - PROFILE_DROP)  # noqa: E731
    low = 0.0 if cut(0.0) >= 0 else brentq(cut, 0.0, sd, xtol=1e-4)
    high = hi_b if cut(hi_b) >= 0 else brentq(cut, sd, hi_b, xtol=1e-4)
    return sd, best, at0, low, high


def policy_logits(trials: pd.DataFrame, params, *, encoding: str = "side", positive: bool = True,
                  zero_reward: str = "expected", threads: int | None = 1) -> pd.DataFrame:
    """Teacher-forced logit of every trial before a session offset, one row per row of the prepared table.

    Returns the prepared table's ``mouse`` and ``session`` with ``logit`` (beta (Q_R - Q_L) plus the side
    preference, from :func:`mouse_rl.fit.likelihood.teacher_forced` at ``params``), ``right`` (the mouse chose
    Right) and the mouse's ``lapse``.
    """
    from ..network import side_preference
    from .likelihood import teacher_forced

    tf = teacher_forced(trials, params, encoding=encoding, positive=positive, zero_reward=zero_reward,
                        threads=threads)
    table = _param_table(params, tf).loc[tf["mouse"].astype(str)]
    t = torch.tensor(tf.groupby("mouse", sort=False).cumcount().to_numpy(float))  # trial index from the mouse's first
    pref = side_preference(t, torch.tensor(table["side_pref"].to_numpy(float)),
                           torch.tensor(table["side_pref_tau"].to_numpy(float))).numpy()
    logit = table["beta"].to_numpy() * (tf["q_tot_R"].to_numpy() - tf["q_tot_L"].to_numpy()) + pref
    return pd.DataFrame({"mouse": tf["mouse"].astype(str).to_numpy(), "session": tf["session"].to_numpy(),
                         "logit": logit, "right": tf["choice"].to_numpy() == 1,
                         "lapse": table["lapse"].to_numpy()})


def _rows_mask(rows, n: int, name: str) -> np.ndarray:
    if rows is None:
        return np.ones(n, dtype=bool)
    rows = np.asarray(rows)
    if rows.shape != (n,) or rows.dtype != bool:
        raise ValueError(f"{name}: expected a boolean mask of {n} rows (the prepared trial table), got dtype "
                         f"{rows.dtype}, shape {rows.shape}")
    return rows


def fit_session_bias(trials: pd.DataFrame, params, *, rows=None, encoding: str = "side", positive: bool = True,
                     zero_reward: str = "expected", threads: int | None = 1) -> pd.DataFrame:
    """Each mouse's session-bias sd by marginal likelihood of its choices, at fitted parameters held fixed.

    Parameters
    ----------
    trials : trial table of the mice (as fitted).
    params : the fitted parameters, as :func:`mouse_rl.fit.likelihood.teacher_forced` takes them (e.g.
        ``FitResult.params``, a DataFrame with a ``mouse`` column, or :meth:`FitResult.model_params`).
    rows : optional boolean mask over the prepared table's rows whose choices are fitted (e.g. a training
        split of :mod:`mouse_rl.fit.cv`; the network still learns from every trial). Default: all.
    encoding, positive, zero_reward : model options (a ``ModelParams`` overrides them).
    threads : torch CPU threads of the teacher-forced run (restored on return).

    Returns
    -------
    pandas.DataFrame, one row per mouse (sorted): ``session_bias_sd`` (logit units), ``session_bias_lo`` /
    ``session_bias_hi`` (profile-likelihood 95% interval), ``loglik`` (nats, at the sd),
    ``loglik_gain`` (over sd = 0, nats), ``n_sessions``.
    """
    lg = policy_logits(trials, params, encoding=encoding, positive=positive, zero_reward=zero_reward,
                       threads=threads)
    lg = lg[_rows_mask(rows, len(lg), "rows")]
    out = []
    for mouse, g in lg.groupby("mouse", sort=True):
        session = g["session"].to_numpy()
        sd, ll, ll0, lo, hi = _mouse_sd(g["logit"].to_numpy(), g["right"].to_numpy(), session,
                                        float(g["lapse"].iloc[0]))
        out.append({"mouse": str(mouse), "session_bias_sd": sd, "session_bias_lo": lo, "session_bias_hi": hi,
                    "loglik": ll, "loglik_gain": ll - ll0, "n_sessions": int(len(np.unique(session)))})
    return pd.DataFrame(out)


def heldout_loglik(trials: pd.DataFrame, params, session_bias_sd, train, test, **options) -> pd.DataFrame:
    """Held-out log-likelihood of the ``test`` rows' choices given the ``train`` rows', with the session bias.

    The offset of a session is shared by its trials, so held-out choices are predicted by the offset's
    posterior given the session's training choices: per session, log p(test | train) = log p(train and test)
    - log p(train), each a marginal over the offset (:func:`marginal_loglik`); a session without training
    rows (the time-aware split) is predicted by its prior. ``session_bias_sd`` ``(M,)`` per mouse (sorted);
    0 gives the plug-in score at ``params``. ``options``: as :func:`policy_logits`.

    Returns one row per mouse (sorted): ``loglik`` (nats) and ``n_trials`` of the ``test`` rows.
    """
    lg = policy_logits(trials, params, **options)
    train, test = _rows_mask(train, len(lg), "train"), _rows_mask(test, len(lg), "test")
    if np.any(train & test):
        raise ValueError("train, test: a row is in both")
    mice = sorted(lg["mouse"].unique())
    sd = check_sd(session_bias_sd, len(mice))
    out = []
    for m, mouse in enumerate(mice):
        mine = (lg["mouse"] == mouse).to_numpy()
        ll = []
        for keep in (mine & (train | test), mine & train):
            g = lg[keep]
            ll.append(marginal_loglik(g["logit"].to_numpy(), g["right"].to_numpy(), g["session"].to_numpy(),
                                      float(lg["lapse"][mine].iloc[0]), sd[m]) if len(g) else 0.0)
        out.append({"mouse": mouse, "loglik": ll[0] - ll[1], "n_trials": int((mine & test).sum())})
    return pd.DataFrame(out)


def _param_table(params, tf: pd.DataFrame) -> pd.DataFrame:
    """``beta``, ``lapse``, ``side_pref``, ``side_pref_tau`` per mouse (index: mouse name) from any ``params``
    form :func:`~mouse_rl.fit.likelihood.teacher_forced` takes."""
    from .batch import make_batch
    from .likelihood import params_tensors

    batch = make_batch(tf, "expected", "cpu", torch.float64, prepared=True)
    p = params_tensors(params, batch)
    return pd.DataFrame({f: p._asdict()[f].numpy() for f in ("beta", "lapse", "side_pref", "side_pref_tau")},
                        index=list(batch.mice))


def check_sd(sd, n: int, name: str = "session_bias_sd") -> np.ndarray:
    """``(n,)`` float sds, validated: finite and >= 0 (a scalar is broadcast)."""
    v = np.asarray(sd, float)
    if v.ndim > 1 or (v.ndim == 1 and len(v) != n):
        raise ValueError(f"{name}: expected a scalar or {n} values (one per column), got shape {v.shape}")
    v = np.array(np.broadcast_to(v, (n,)))
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        bad = v[~(np.isfinite(v) & (v >= 0))][0]
        raise ValueError(f"{name}: must be finite and >= 0, got {bad}")
    return v


def session_offsets(batch: TrialBatch, seeds, sd, dtype=torch.float64) -> torch.Tensor:
    """``(T, B)`` logit offsets: column ``b``'s session offset ``sd[b] * eps`` on every trial of the session
    (0 on padding), ``eps`` standard normal from the column's seed (counter = the session's first row)."""
    T, B = batch.shape
    sd = torch.as_tensor(check_sd(sd, B), dtype=dtype, device=batch.contrast.device)
    seeds = rng.as_seed_tensor(seeds, batch.contrast.device)
    if seeds.shape != (B,):
        raise ValueError(f"seeds: expected {B} seeds, got {seeds.shape[0]}")
    sess, valid = batch.session.cpu().numpy(), batch.valid.cpu().numpy()
    opens = valid.copy()  # rows that open a session: valid, and the row above is padding or another session
    opens[1:] &= (sess[1:] != sess[:-1]) | ~valid[:-1]
    first = np.maximum.accumulate(np.where(opens, np.arange(T)[:, None], 0), axis=0)
    counter = torch.as_tensor(first, device=batch.contrast.device)
    eps = rng.normal(seeds[None, :].expand(T, B), SESSION_BIAS_STREAM, counter, dtype)
    return torch.where(batch.valid, sd[None, :] * eps, torch.zeros((), dtype=dtype, device=sd.device))
