"""Fused teacher-forced likelihood with exact first and second derivatives (numba, CPU).

An accelerator, not a second model: it runs the learning rule of
:func:`mouse_rl.network.trial_update` (cortex ``a`` trained by delta_tot,
``U[ch, stim]`` by delta_stim, ``U[ch, bias]`` by delta_const, absolute value
after each update, saturation at ``MAX_WEIGHT``) and the policy of
:func:`mouse_rl.network.log_policy`, over each mouse's own trials, and is tested
against the autograd derivatives of that reference (float64 agreement <= 1e-12
relative, ``tests/test_kernel.py``).

Derivatives are propagated forward in time (second-order forward mode): each
of the 9 weights carries its value, its gradient and its Hessian with respect
to the parameters that shape the weights (eta, w0, s0, b_L, b_R; k unless the
caller leaves its derivatives out, ``k_derivatives=False``, as a fit with k fixed
does; and the option stim_skew when its derivatives are asked for, ``skew_derivatives``);
the policy adds beta and the lapse. One pass gives the per-mouse negative
log-likelihood, its gradient ``(9,)`` and Hessian ``(9, 9)`` with respect to
the natural parameters in :data:`THETA` order (stim_skew's entries are zero
unless asked for: the default fit does not pay for a seventh dual coordinate;
the weights' Hessians are symmetric and
kept as upper triangles; lower orders propagate only what they need). Columns (mice x restarts) are
independent (``prange``): a column's numbers do not depend on which other
columns share the call.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ..network import MAX_WEIGHT

#: Order of the natural parameters in ``theta`` and in the returned derivatives.
THETA = ("eta", "beta", "w0", "k", "s0", "b_L", "b_R", "lapse", "stim_skew")
_NT = len(THETA)
_D = 7  # parameters that shape the weights: eta, w0, s0, b_L, b_R, k, stim_skew (the last two only if asked for)
_DMAP = np.array([0, 2, 4, 5, 6, 3, 8])  # their positions in THETA
_K = 5  # k's index among them
_DPOS = np.array([list(_DMAP).index(i) if i in _DMAP else _D for i in range(_NT)])  # THETA index -> dual index
_SKEW = 6  # stim_skew's index among them
_NW = 9  # weights: a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb


@nb.njit(cache=True, inline="always")
def _product(v1, g1, H1, v2, g2, H2, c, vo, go, Ho, order, nd):
    """(vo, go, Ho) = c * (v1 * v2) as a dual number up to ``order`` (Hessians: upper triangle only), in the
    first ``nd`` dual coordinates."""
    vo[0] = c * v1 * v2
    if order >= 1:
        for i in range(nd):
            go[i] = c * (v1 * g2[i] + v2 * g1[i])
    if order >= 2:
        for i in range(nd):
            for j in range(i, nd):
                Ho[i, j] = c * (v1 * H2[i, j] + v2 * H1[i, j] + g1[i] * g2[j] + g2[i] * g1[j])


@nb.njit(cache=True, inline="always")
def _column(x, choice, reward, learn, score, n, theta, positive, use_lapse, order, nd, grad_out, hess_out, write_lp,
            lp_out, gauss_newton):
    eta, beta, w0, k, s0, bL, bR, lapse, skew = theta
    v = np.zeros(_NW)
    g = np.zeros((_NW, _D))
    H = np.zeros((_NW, _D, _D))
    # stimulus channel j (0 = L, 1 = R), as init_weights: a_j = w0 e_j, U[., j] = s0 e_j, e_j = exp(-+ skew / 2)
    for j in range(2):
        sgn = -0.5 if j == 0 else 0.5
        e = np.exp(sgn * skew)
        for i in (j, 3 + j, 6 + j):  # a_j (from w0, dual 1), U[L, j] and U[R, j] (from s0, dual 2)
            col = 1 if i < 3 else 2
            v[i] = (w0 if i < 3 else s0) * e
            g[i, col] = e
            if nd > _SKEW:  # d/d skew; Hessians as upper triangles (col < _SKEW)
                g[i, _SKEW] = sgn * v[i]
                H[i, col, _SKEW] = sgn * e
                H[i, _SKEW, _SKEW] = sgn * sgn * v[i]
    v[2] = k
    g[2, _K] = 1.0  # read only when nd > _K
    v[5], v[8] = bL, bR
    g[5, 3] = 1.0
    g[8, 4] = 1.0
    for i in range(_NW):  # abs() of the initial weights (as init_weights)
        if v[i] < 0:
            v[i] = -v[i]
            g[i] = -g[i]
            H[i] = -H[i]
    # scratch duals
    hv = np.zeros(3)
    hg = np.zeros((3, _D))
    hH = np.zeros((3, _D, _D))
    qs_v = np.zeros(2)
    qs_g = np.zeros((2, _D))
    qs_H = np.zeros((2, _D, _D))
    qc_v = np.zeros(2)
    qc_g = np.zeros((2, _D))
    qc_H = np.zeros((2, _D, _D))
    tv = np.zeros(1)
    tg = np.zeros(_D)
    tH = np.zeros((_D, _D))
    sv = np.zeros(1)
    sg = np.zeros(_D)
    sH = np.zeros((_D, _D))
    dz = np.zeros(_NT)
    act = np.empty(_NT, np.int64)  # parameters whose derivatives are in play: beta, lapse and the first nd duals
    na = 0
    for i in range(_NT):
        if i == 1 or i == 7 or _DPOS[i] < nd:
            act[na] = i
            na += 1
    nll = 0.0
    for t in range(n):
        # forward pass: h = a * x, Q^stim, Q^const
        for i in range(3):
            hv[i] = v[i] * x[t, i]
            if order >= 1:
                for p in range(nd):
                    hg[i, p] = g[i, p] * x[t, i]
            if order >= 2:
                for p in range(nd):
                    for q in range(p, nd):
                        hH[i, p, q] = H[i, p, q] * x[t, i]
        for r in range(2):
            qs_v[r] = 0.0
            if order >= 1:
                qs_g[r, :] = 0.0
            if order >= 2:
                qs_H[r, :, :] = 0.0
            for i in range(2):
                if x[t, i] != 0.0:
                    _product(v[3 + 3 * r + i], g[3 + 3 * r + i], H[3 + 3 * r + i], hv[i], hg[i], hH[i], 1.0,
                             tv, tg, tH, order, nd)
                    _add(qs_v, qs_g, qs_H, r, tv, tg, tH, order, nd)
            _product(v[5 + 3 * r], g[5 + 3 * r], H[5 + 3 * r], hv[2], hg[2], hH[2], 1.0, qc_v[r:r + 1], qc_g[r],
                     qc_H[r], order, nd)
        ch = choice[t]
        if score[t]:
            # logit z = beta * (Q_R - Q_L); y = +z for a Right choice, -z for Left
            s = 1.0 if ch == 1 else -1.0
            dq = (qs_v[1] + qc_v[1]) - (qs_v[0] + qc_v[0])
            y = s * beta * dq
            if y >= 0:
                ey = np.exp(-y)
                sig = 1.0 / (1.0 + ey)
                logsig = -np.log1p(ey)
            else:
                ey = np.exp(y)
                sig = ey / (1.0 + ey)
                logsig = y - np.log1p(ey)
            s1 = sig * (1.0 - sig)
            if use_lapse:
                lo = np.log(lapse / 2.0)
                hi = np.log1p(-lapse) + logsig
                m = max(lo, hi)
                logp = m + np.log(np.exp(lo - m) + np.exp(hi - m))
                p = np.exp(logp)
                ly = (1.0 - lapse) * s1 / p
                lyy = (1.0 - lapse) * s1 * (1.0 - 2.0 * sig) / p - ly * ly
                ll = (0.5 - sig) / p
                lll = -ll * ll
                lyl = -s1 * (p + (0.5 - sig) * (1.0 - lapse)) / (p * p)
            else:
                logp = logsig
                ly = 1.0 - sig
                lyy = -s1
                ll = lll = lyl = 0.0
            nll -= logp
            if write_lp:
                lp_out[t] = logp
            if order >= 1:
                # dy/dtheta and d2y/dtheta2 through z = beta * dq
                dz[:] = 0.0
                dz[1] = s * dq
                for a_ in range(nd):
                    dz[_DMAP[a_]] = s * beta * ((qs_g[1, a_] + qc_g[1, a_]) - (qs_g[0, a_] + qc_g[0, a_]))
                for i in range(_NT):
                    grad_out[i] -= ly * dz[i]
                grad_out[7] -= ll
                if order >= 2 or gauss_newton:  # upper triangle over the parameters in play, mirrored at the end
                    for ii in range(na):
                        i = act[ii]
                        for jj in range(ii, na):
                            j = act[jj]
                            hess_out[i, j] -= lyy * dz[i] * dz[j]
                    for a_ in range(nd):
                        pa = _DMAP[a_]
                        dqa = (qs_g[1, a_] + qc_g[1, a_]) - (qs_g[0, a_] + qc_g[0, a_])
                        hess_out[min(1, pa), max(1, pa)] -= ly * s * dqa
                        if order < 2:  # Gauss-Newton: without the second derivatives of the Q's
                            continue
                        for b_ in range(a_, nd):  # the duals hold upper triangles
                            pb = _DMAP[b_]
                            dqab = (qs_H[1, a_, b_] + qc_H[1, a_, b_]) - (qs_H[0, a_, b_] + qc_H[0, a_, b_])
                            hess_out[min(pa, pb), max(pa, pb)] -= ly * s * beta * dqab
                    for ii in range(na):
                        i = act[ii]
                        hess_out[min(i, 7), max(i, 7)] -= lyl * dz[i]
                    hess_out[7, 7] -= lll
        if not learn[t]:
            continue
        # learning: the three teaching signals of the chosen action (pre-update weights). In place: the a
        # updates read U before the U updates, and those read only h and the Q's of the forward pass.
        r_ = reward[t]
        # eta * delta_tot, with delta_tot = r - Q^tot[ch]
        tv[0] = r_ - (qs_v[ch] + qc_v[ch])
        if order >= 1:
            for p in range(nd):
                tg[p] = -(qs_g[ch, p] + qc_g[ch, p])
        if order >= 2:
            for p in range(nd):
                for q in range(p, nd):
                    tH[p, q] = -(qs_H[ch, p, q] + qc_H[ch, p, q])
        _eta_times(eta, tv, tg, tH, sv, sg, sH, order, nd)
        for i in range(3):  # a_i += eta * delta_tot * U[ch, i] * x_i
            if x[t, i] != 0.0:
                ui = 3 * ch + 3 + i
                _product(sv[0], sg, sH, v[ui], g[ui], H[ui], x[t, i], tv, tg, tH, order, nd)
                _add(v, g, H, i, tv, tg, tH, order, nd)
        for i in range(3):  # U[ch, i] += eta * delta * h_i (delta_stim for stimulus units, delta_const for bias)
            if x[t, i] == 0.0:
                continue
            ui = 3 * ch + 3 + i
            qv = qs_v if i < 2 else qc_v
            qg = qs_g if i < 2 else qc_g
            qH = qs_H if i < 2 else qc_H
            tv[0] = r_ - qv[ch]
            if order >= 1:
                for p in range(nd):
                    tg[p] = -qg[ch, p]
            if order >= 2:
                for p in range(nd):
                    for q in range(p, nd):
                        tH[p, q] = -qH[ch, p, q]
            _eta_times(eta, tv, tg, tH, sv, sg, sH, order, nd)
            _product(sv[0], sg, sH, hv[i], hg[i], hH[i], 1.0, tv, tg, tH, order, nd)
            _add(v, g, H, ui, tv, tg, tH, order, nd)
        for i in range(_NW):
            if positive:
                if v[i] < 0:
                    v[i] = -v[i]
                    if order >= 1:
                        for p in range(nd):
                            g[i, p] = -g[i, p]
                    if order >= 2:
                        for p in range(nd):
                            for q in range(p, nd):
                                H[i, p, q] = -H[i, p, q]
                elif v[i] == 0.0:  # torch's abs has zero derivative at 0
                    if order >= 1:
                        g[i] = 0.0
                    if order >= 2:
                        H[i] = 0.0
            if v[i] > MAX_WEIGHT or v[i] < -MAX_WEIGHT:
                v[i] = MAX_WEIGHT if v[i] > 0 else -MAX_WEIGHT
                if order >= 1:
                    g[i] = 0.0
                if order >= 2:
                    H[i] = 0.0
    if order >= 2 or gauss_newton:
        for ii in range(na):
            for jj in range(ii + 1, na):
                hess_out[act[jj], act[ii]] = hess_out[act[ii], act[jj]]
    return nll


@nb.njit(cache=True, inline="always")
def _add(v, g, H, w, tv, tg, tH, order, nd):
    """Weight ``w`` += (tv, tg, tH) (dual numbers up to ``order``; Hessians: upper triangle)."""
    v[w] += tv[0]
    if order >= 1:
        for p in range(nd):
            g[w, p] += tg[p]
    if order >= 2:
        for p in range(nd):
            for q in range(p, nd):
                H[w, p, q] += tH[p, q]


@nb.njit(cache=True, inline="always")
def _eta_times(eta, dv, dg, dH, ov, og, oH, order, nd):
    """(ov, og, oH) = eta * delta, where eta is parameter 0 of the dual space (Hessians: upper triangle)."""
    ov[0] = eta * dv[0]
    if order >= 1:
        for p in range(nd):
            og[p] = eta * dg[p]
        og[0] += dv[0]
    if order >= 2:
        for p in range(nd):
            for q in range(p, nd):
                oH[p, q] = eta * dH[p, q]
        for p in range(nd):
            oH[0, p] += dg[p]
        oH[0, 0] += dg[0]


# One parallel entry point per dual size, each a compile-time constant written into its call of _column: with a
# runtime size (or one passed down through a shared inlined helper) the compiler no longer unrolls the small
# derivative loops and an order-2 pass runs ~2x slower. 5: without k's and stim_skew's derivatives (the
# default fit), 6: with k's, 7: with both.
@nb.njit(cache=True, parallel=True)
def _batched_5(x, choice, reward, learn, score, n_trials, rows, theta, positive, use_lapse, order, nll, grad, hess,
               write_lp, lp, gauss_newton):
    for b in nb.prange(theta.shape[0]):
        m = rows[b]
        nll[b] = _column(x[m], choice[m], reward[m], learn[m], score[m], n_trials[m], theta[b], positive,
                         use_lapse, order, _D - 2, grad[b], hess[b], write_lp, lp[b], gauss_newton)


@nb.njit(cache=True, parallel=True)
def _batched_6(x, choice, reward, learn, score, n_trials, rows, theta, positive, use_lapse, order, nll, grad, hess,
               write_lp, lp, gauss_newton):
    for b in nb.prange(theta.shape[0]):
        m = rows[b]
        nll[b] = _column(x[m], choice[m], reward[m], learn[m], score[m], n_trials[m], theta[b], positive,
                         use_lapse, order, _D - 1, grad[b], hess[b], write_lp, lp[b], gauss_newton)


@nb.njit(cache=True, parallel=True)
def _batched_7(x, choice, reward, learn, score, n_trials, rows, theta, positive, use_lapse, order, nll, grad, hess,
               write_lp, lp, gauss_newton):
    for b in nb.prange(theta.shape[0]):
        m = rows[b]
        nll[b] = _column(x[m], choice[m], reward[m], learn[m], score[m], n_trials[m], theta[b], positive,
                         use_lapse, order, _D, grad[b], hess[b], write_lp, lp[b], gauss_newton)


_BATCHED = {5: _batched_5, 6: _batched_6, 7: _batched_7}


def nll_derivatives(x: np.ndarray, choice: np.ndarray, reward: np.ndarray, learn: np.ndarray, score: np.ndarray,
                    n_trials: np.ndarray, theta: np.ndarray, positive: bool = True, use_lapse: bool = True,
                    order: int = 2, rows: np.ndarray | None = None, trial_logp: bool = False,
                    skew_derivatives: bool = False, gauss_newton: bool = False,
                    k_derivatives: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Negative log-likelihood (nats) of every column, with its gradient and Hessian in :data:`THETA` order.

    Parameters
    ----------
    x : ``(B, T, 3)`` float64 network inputs (:func:`mouse_rl.network.encode`).
    choice : ``(B, T)`` int64 (0 = Left, 1 = Right).
    reward : ``(B, T)`` float64 learning reward.
    learn, score : ``(B, T)`` bool: trials the learner learns from / whose choice counts.
    n_trials : ``(B,)`` trials of each column (the rest is padding).
    theta : ``(B, 9)`` natural parameters in :data:`THETA` order; ``(B, 8)`` (no stim_skew column) means
        stim_skew = 0 (mouse_rl/MODEL.md), and the derivatives then come without its row and column.
    positive : absolute value of the weights after each update.
    use_lapse : apply the lapse to the policy.
    order : 0 = value only, 1 = + gradient, 2 = + Hessian (each order propagates only the derivatives it
        needs: order 0 costs about a quarter of order 2, order 1 about a half; ``bench/fit_kernel_orders.py``).
    rows : ``(B',)`` which data row each row of ``theta`` runs on (default ``arange(B)``), so that
        restarts and subsets share the data arrays without copies.
    trial_logp : also return ``(B', T)`` log P(observed choice) of every scored trial (nats; 0 elsewhere).
    skew_derivatives : also propagate the derivatives with respect to stim_skew (a seventh dual coordinate:
        about 1.3x the cost of order 2); without, its entries of ``grad`` and ``hess`` are 0 (its value is
        used either way).
    k_derivatives : propagate the derivatives with respect to k (default); False leaves them out (its
        entries of ``grad`` and ``hess`` are then 0; a fit with k fixed needs none: five dual coordinates
        instead of six, about 0.75x the cost of order 2).
    gauss_newton : with ``order=1``, also return the Gauss-Newton Hessian: the exact Hessian without the
        second derivatives of the Q values (the terms that need second-order duals), i.e. the outer products
        of the logit's gradient weighted by the per-trial curvature, plus the beta and lapse cross terms
        (a cheap curvature for steps far from an optimum; first-order duals only).

    Returns
    -------
    nll ``(B',)``, grad ``(B, K)``, hess ``(B, K, K)`` with K = ``theta.shape[1]`` (zeros beyond ``order``).
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] not in (_NT - 1, _NT):
        raise ValueError(f"theta: need shape (B, {_NT}) (or (B, {_NT - 1}) without stim_skew), got {theta.shape}")
    K = theta.shape[1]
    if K == _NT - 1:
        theta = np.hstack([theta, np.zeros((theta.shape[0], 1))])
    B = theta.shape[0]
    rows = np.arange(B) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape != (B,) or (B and (rows.min() < 0 or rows.max() >= len(n_trials))):
        raise ValueError(f"rows: need {B} indices into {len(n_trials)} data rows")
    nll = np.zeros(B)
    grad = np.zeros((B, _NT))
    hess = np.zeros((B, _NT, _NT))
    lp = np.zeros((B, x.shape[1] if trial_logp else 1))
    nd = 7 if skew_derivatives else (6 if k_derivatives else 5)
    _BATCHED[nd](
             np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(choice, dtype=np.int64),
             np.ascontiguousarray(reward, dtype=np.float64), np.ascontiguousarray(learn, dtype=np.bool_),
             np.ascontiguousarray(score, dtype=np.bool_), np.ascontiguousarray(n_trials, dtype=np.int64), rows,
             np.ascontiguousarray(theta, dtype=np.float64), bool(positive), bool(use_lapse), int(order),
             nll, grad, hess, bool(trial_logp), lp, bool(gauss_newton) and int(order) == 1)
    grad, hess = grad[:, :K], hess[:, :K, :K]
    return (nll, grad, hess, lp) if trial_logp else (nll, grad, hess)
