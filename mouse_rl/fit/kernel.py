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
to the parameters that shape the weights (eta, w0, s0, b_L, b_R; and those of
the options k, stim_skew and crosstalk whose derivatives the caller asks for,
at most two of them: ``k_derivatives``, ``skew_derivatives``,
``crosstalk_derivatives``); the policy adds beta, the lapse and, on request
(``side_pref_derivatives``), the innate side preference's rho and tau, which
change only the policy (no dual coordinates). One pass gives the per-mouse
negative log-likelihood, its gradient ``(12,)`` and Hessian ``(12, 12)`` with
respect to the natural parameters in :data:`THETA` order
(entries of options not asked for are zero: the default fit does not pay for
their dual coordinates; the weights' Hessians are symmetric and kept as upper
triangles; lower orders propagate only what they need). The crosstalk g is an
option of the inputs: the kernel takes the plain inputs x and runs each column
on x_L + g x_R, x_R + g x_L (:func:`mouse_rl.network.encode`); the code that
does so is compiled only into the entry points that need it.

Columns (mice x restarts) that run on the same data row go through the trials
in lockstep, four to a group (:mod:`mouse_rl.fit.vec4` lanes: the restarts of a
mouse share its trials, so only their numbers differ); groups run in parallel
on numba's thread count of Python threads (the compiled loop releases the GIL),
handed out one at a time, longest rows first. (Not numba's ``prange``: with
it each entry point's first compilation took 1.7-2x as long,
``bench/kernel_compile_time.py``.) A lane's arithmetic is the scalar
arithmetic, so a column's numbers do not depend on which other columns share
the call, its group or its lane.
"""
from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

from .. import network
from ..network import MAX_WEIGHT
from ..numba_cache import source_fingerprint
from . import vec4
from .vec4 import LANES as _L
from .vec4 import vload, vneg, vsplat, vstore

#: Order of the natural parameters in ``theta`` and in the returned derivatives.
THETA = ("eta", "beta", "w0", "k", "s0", "b_L", "b_R", "lapse", "stim_skew", "crosstalk", "side_pref",
         "side_pref_tau")
_NT = len(THETA)
_BASE = (0, 2, 4, 5, 6)  # parameters that always shape the weights (THETA positions): eta, w0, s0, b_L, b_R
_OPTIONAL = {"k": 3, "stim_skew": 8, "crosstalk": 9}  # and those whose derivatives are propagated on request
_CROSSTALK = 9
_SIDE_PREF = (10, 11)  # the innate side preference rho, tau: policy only (no dual coordinates), derivatives on request
#: theta's columns beyond MODEL.md's eight, when a caller leaves them out (stim_skew, crosstalk, side_pref 0)
_PAD = np.array([0.0, 0.0, 0.0, 1000.0])
#: Dual coordinates at most (the stride of the derivative arrays): the five of _BASE and two of _OPTIONAL. Room
#: for all three costs the default fit's order-2 pass ~25% (a larger stride; measured with
#: bench/fit_kernel_orders.py), so a fit frees at most two of k, stim_skew and crosstalk at once.
_D = len(_BASE) + 2
_NW = 9  # weights: a_L, a_R, a_b, U_LL, U_LR, U_Lb, U_RL, U_RR, U_Rb
# Dual-number slots of a group's flat state arrays (values (S, L), gradients (S, D, L), Hessians (S, D, D, L),
# lanes last): the 9 weights, h = a * x (3), Q^stim and Q^const of each action (2 + 2), two scratch duals.
_SH, _SQS, _SQC, _ST, _SS, _NS = 9, 12, 14, 16, 17, 18


@nb.njit(cache=True, inline="always")
def _gi(s, p):
    """Flat index of lane 0 of d(slot s)/d(dual p)."""
    return _L * (s * _D + p)


@nb.njit(cache=True, inline="always")
def _hi(s, p, q):
    """Flat index of lane 0 of d2(slot s)/d(dual p)d(dual q)."""
    return _L * ((s * _D + p) * _D + q)


@nb.njit(cache=True, inline="always")
def _product(V, G, H, a, b, c, o, order, nd, acc):
    """Slot ``o`` = c * slot ``a`` * slot ``b`` as dual numbers up to ``order`` (Hessians: upper triangle only),
    in the first ``nd`` dual coordinates; ``c`` a vector of constants. ``acc``: slot ``o`` += the product
    instead (the same arithmetic as adding a scratch copy)."""
    va = vload(V, _L * a)
    vb = vload(V, _L * b)
    if acc:
        vstore(V, _L * o, vload(V, _L * o) + c * va * vb)
    else:
        vstore(V, _L * o, c * va * vb)
    if order >= 1:
        for i in range(nd):
            d = c * (va * vload(G, _gi(b, i)) + vb * vload(G, _gi(a, i)))
            vstore(G, _gi(o, i), vload(G, _gi(o, i)) + d if acc else d)
    if order >= 2:
        for i in range(nd):
            gai = vload(G, _gi(a, i))
            gbi = vload(G, _gi(b, i))
            for j in range(i, nd):
                d = c * (va * vload(H, _hi(b, i, j)) + vb * vload(H, _hi(a, i, j)) + gai * vload(G, _gi(b, j))
                         + gbi * vload(G, _gi(a, j)))
                vstore(H, _hi(o, i, j), vload(H, _hi(o, i, j)) + d if acc else d)


@nb.njit(cache=True, inline="always")
def _delta(V, G, H, r, qa, qb, o, order, nd):
    """Slot ``o`` = the teaching signal r - (Q_qa + Q_qb), or r - Q_qa when ``qb`` < 0 (r a scalar)."""
    if qb >= 0:
        vstore(V, _L * o, vsplat(r) - (vload(V, _L * qa) + vload(V, _L * qb)))
    else:
        vstore(V, _L * o, vsplat(r) - vload(V, _L * qa))
    if order >= 1:
        for p in range(nd):
            if qb >= 0:
                vstore(G, _gi(o, p), vneg(vload(G, _gi(qa, p)) + vload(G, _gi(qb, p))))
            else:
                vstore(G, _gi(o, p), vneg(vload(G, _gi(qa, p))))
    if order >= 2:
        for p in range(nd):
            for q in range(p, nd):
                if qb >= 0:
                    vstore(H, _hi(o, p, q), vneg(vload(H, _hi(qa, p, q)) + vload(H, _hi(qb, p, q))))
                else:
                    vstore(H, _hi(o, p, q), vneg(vload(H, _hi(qa, p, q))))


@nb.njit(cache=True, inline="always")
def _eta_times(V, G, H, eta, d, o, order, nd):
    """Slot ``o`` = eta * slot ``d``, where eta (a vector) is dual coordinate 0."""
    dv = vload(V, _L * d)
    vstore(V, _L * o, eta * dv)
    if order >= 1:
        for p in range(nd):
            vstore(G, _gi(o, p), eta * vload(G, _gi(d, p)))
        vstore(G, _gi(o, 0), vload(G, _gi(o, 0)) + dv)
    if order >= 2:
        for p in range(nd):
            for q in range(p, nd):
                vstore(H, _hi(o, p, q), eta * vload(H, _hi(d, p, q)))
        for p in range(nd):
            vstore(H, _hi(o, 0, p), vload(H, _hi(o, 0, p)) + vload(G, _gi(d, p)))
        vstore(H, _hi(o, 0, 0), vload(H, _hi(o, 0, 0)) + vload(G, _gi(d, 0)))


@nb.njit(cache=True, inline="always")
def _fix_lane(V, G, H, w, l, flip, order, nd):
    """Weight ``w`` of lane ``l``: ``flip`` negates its value and derivatives (``|w|`` of a negative weight);
    otherwise its derivatives are zeroed (``|w|`` at 0, the saturation bound)."""
    if flip:
        V[_L * w + l] = -V[_L * w + l]
    if order >= 1:
        for p in range(nd):
            G[_gi(w, p) + l] = -G[_gi(w, p) + l] if flip else 0.0
    if order >= 2:
        for p in range(nd):
            for q in range(p, nd):
                H[_hi(w, p, q) + l] = -H[_hi(w, p, q) + l] if flip else 0.0


@nb.njit(cache=True, inline="always")
def _crosstalk_terms(V, G, H, a, b, xj, o, order, nd, ig):
    """Add to slot ``o`` the terms of d/d(crosstalk) that ``_product(a, b, c = x')`` leaves out, where the
    constant factor x' = x_i + g x_j (per lane) has d x' / dg = ``xj`` (a scalar) and the crosstalk g is dual
    coordinate ``ig``; ``b`` < 0: the product has no second dual factor (o = x' slot a)."""
    va = vload(V, _L * a)
    vb = vload(V, _L * b) if b >= 0 else vsplat(1.0)
    vx = vsplat(xj)
    if order >= 1:
        vstore(G, _gi(o, ig), vload(G, _gi(o, ig)) + vx * (va * vb))
    if order >= 2:
        for p in range(nd):
            d = vx * (va * vload(G, _gi(b, p)) + vb * vload(G, _gi(a, p))) if b >= 0 else vx * vload(G, _gi(a, p))
            lo_, hi_ = (p, ig) if p <= ig else (ig, p)
            if p == ig:
                d = d + d
            vstore(H, _hi(o, lo_, hi_), vload(H, _hi(o, lo_, hi_)) + d)


@nb.njit(cache=True, inline="always")
def _input(x, t, i, XV, xt, crosstalk):
    """Input of unit ``i`` on trial ``t`` as a lane vector: each lane's x'_i with crosstalk, else x[t, i]."""
    if xt:
        if crosstalk and i < 2:
            return vload(XV, _L * i)
    return vsplat(x[t, i])


@nb.njit(cache=True, inline="always")
def _lanes(x, choice, reward, learn, score, n, theta, cols, positive, use_lapse, order, nd, dmap, act, ik, iskew, ig,
           xt, po, nll_out, grad_out, hess_out, write_lp, lp_out, gauss_newton, write_w, w_out):
    """One data row's trials for the (up to four) columns ``cols`` of ``theta`` in lockstep (-1 = an unused
    lane, which repeats lane 0 and writes nothing); results go to rows ``cols`` of the outputs. Compile-time
    constants: ``dmap`` the THETA position of each of the ``nd`` dual coordinates, ``act`` the THETA positions
    with derivatives (the duals, beta and the lapse), ``ik``, ``iskew``, ``ig`` the dual coordinates of k,
    stim_skew and the crosstalk (``nd``: none); ``xt``: the inputs may have crosstalk (False: the crosstalk
    code is compiled out and the crosstalk must be 0); ``po``: derivatives with respect to the side preference
    (rho, tau: THETA positions 10, 11, in ``act``; its value is applied either way)."""
    V = np.zeros(_NS * _L)
    G = np.zeros(_NS * _D * _L)
    H = np.zeros(_NS * _D * _D * _L)
    P = np.zeros(10 * _L)  # per-lane policy numbers: eta, beta, ly, lyy, ll, lll, lyl, dq, y_rho_tau, y_tau_tau
    lapse = np.empty(_L)
    lo = np.empty(_L)
    l1 = np.empty(_L)
    gam = np.empty(_L)
    rho = np.empty(_L)
    tau = np.empty(_L)
    XV = np.zeros(2 * _L)  # this trial's stimulus inputs with crosstalk, x'_i = x_i + g x_j, per lane
    crosstalk = False  # this group's inputs have crosstalk (its g is fitted, or some lane's g is not 0)
    for l in range(_L):
        c = cols[l] if cols[l] >= 0 else cols[0]
        eta, beta, w0, k, s0, bL, bR, lapse[l], skew, gam[l], rho[l], tau[l] = theta[c]
        if xt:
            if gam[l] != 0.0 or ig < nd:
                crosstalk = True
        P[l], P[_L + l] = eta, beta
        lo[l] = np.log(lapse[l] / 2.0)
        l1[l] = np.log1p(-lapse[l])
        for j in range(2):
            sgn = -0.5 if j == 0 else 0.5
            e = np.exp(sgn * skew)
            for i in (j, 3 + j, 6 + j):
                col = 1 if i < 3 else 2
                V[_L * i + l] = (w0 if i < 3 else s0) * e
                G[_gi(i, col) + l] = e
                if iskew < nd:
                    G[_gi(i, iskew) + l] = sgn * V[_L * i + l]
                    H[_hi(i, col, iskew) + l] = sgn * e
                    H[_hi(i, iskew, iskew) + l] = sgn * sgn * V[_L * i + l]
        V[_L * 2 + l] = k
        if ik < nd:
            G[_gi(2, ik) + l] = 1.0
        V[_L * 5 + l], V[_L * 8 + l] = bL, bR
        G[_gi(5, 3) + l] = 1.0
        G[_gi(8, 4) + l] = 1.0
        for i in range(_NW):  # abs() of the initial weights (as init_weights)
            if V[_L * i + l] < 0:
                _fix_lane(V, G, H, i, l, True, 2, nd)
    veta = vload(P, 0)
    vbeta = vload(P, _L)
    one = vsplat(1.0)
    dz = np.zeros(_NT * _L)
    dqg = np.zeros(nd * _L)
    gacc = np.zeros(_NT * _L)
    hacc = np.zeros(_NT * _NT * _L)
    nll = np.zeros(_L)
    na = len(act)
    for t in range(n):
        if write_w:  # the weights before this trial's update
            for l in range(_L):
                if cols[l] >= 0:
                    for i in range(_NW):
                        w_out[cols[l], t, i] = V[_L * i + l]
        # a stimulus unit is on when its input is (with crosstalk: when either stimulus input is); an off unit's
        # h is never read. With crosstalk a lane with g = 0 computes its off units as exact zeros: its numbers
        # are those without crosstalk.
        on0 = x[t, 0] != 0.0
        on1 = x[t, 1] != 0.0
        if xt:  # (the code under ``if xt`` is compiled only into the crosstalk entry points)
            if crosstalk:
                on0 = on1 = on0 or on1
                for l in range(_L):
                    XV[l] = x[t, 0] + gam[l] * x[t, 1]
                    XV[_L + l] = x[t, 1] + gam[l] * x[t, 0]
        for i in range(3):  # h = a * x
            if (i == 0 and not on0) or (i == 1 and not on1):
                continue
            xi = _input(x, t, i, XV, xt, crosstalk)
            vstore(V, _L * (_SH + i), vload(V, _L * i) * xi)
            if order >= 1:
                for p in range(nd):
                    vstore(G, _gi(_SH + i, p), vload(G, _gi(i, p)) * xi)
            if order >= 2:
                for p in range(nd):
                    for q in range(p, nd):
                        vstore(H, _hi(_SH + i, p, q), vload(H, _hi(i, p, q)) * xi)
            if xt:
                if ig < nd and i < 2:
                    _crosstalk_terms(V, G, H, i, -1, x[t, 1 - i], _SH + i, order, nd, ig)
        # forward pass: h = a * x (above), Q^stim[r] = sum_i U[r, i] h_i over the stimulus units that are on,
        # Q^const[r] = U[r, bias] h_bias
        for r in range(2):
            qs = _SQS + r
            on = 0
            for i in range(2):
                if on0 if i == 0 else on1:
                    _product(V, G, H, 3 + 3 * r + i, _SH + i, one, qs, order, nd, on > 0)
                    on += 1
            if on == 0:
                vstore(V, _L * qs, vsplat(0.0))
                if order >= 1:
                    for p in range(nd):
                        vstore(G, _gi(qs, p), vsplat(0.0))
                if order >= 2:
                    for p in range(nd):
                        for q in range(p, nd):
                            vstore(H, _hi(qs, p, q), vsplat(0.0))
            _product(V, G, H, 5 + 3 * r, _SH + 2, one, _SQC + r, order, nd, False)
        ch = choice[t]
        if score[t]:
            # logit z = beta * (Q_R - Q_L) + rho exp(-t / tau); y = +z for a Right choice, -z for Left (per lane:
            # scalar math)
            s = 1.0 if ch == 1 else -1.0
            for l in range(_L):
                dq = (V[_L * (_SQS + 1) + l] + V[_L * (_SQC + 1) + l]) - (V[_L * _SQS + l] + V[_L * _SQC + l])
                P[7 * _L + l] = dq
                y = s * P[_L + l] * dq
                if po or rho[l] != 0.0:  # the innate side preference, and y's derivatives in rho and tau
                    e = np.exp(-t / tau[l])
                    y += s * rho[l] * e
                    if po:
                        u = t / (tau[l] * tau[l])
                        dz[_L * 10 + l] = s * e
                        dz[_L * 11 + l] = s * rho[l] * e * u
                        P[8 * _L + l] = s * e * u
                        P[9 * _L + l] = s * rho[l] * e * u * (u - 2.0 / tau[l])
                ey = np.exp(-abs(y))
                if y >= 0:
                    sig = 1.0 / (1.0 + ey)
                else:
                    sig = ey / (1.0 + ey)
                s1 = sig * (1.0 - sig)
                if use_lapse:
                    p = 0.5 * lapse[l] + (1.0 - lapse[l]) * sig  # P(observed choice), lapse included
                    if p > 1e-300:
                        logp = np.log(p)
                    else:  # the far tail with the lapse ~ 0 (p would underflow): in logs
                        logsig = (-np.log1p(ey)) if y >= 0 else (y - np.log1p(ey))
                        hi = l1[l] + logsig
                        m = max(lo[l], hi)
                        logp = m + np.log(np.exp(lo[l] - m) + np.exp(hi - m))
                    ly = (1.0 - lapse[l]) * s1 / p
                    P[2 * _L + l] = ly
                    P[3 * _L + l] = (1.0 - lapse[l]) * s1 * (1.0 - 2.0 * sig) / p - ly * ly
                    ll = (0.5 - sig) / p
                    P[4 * _L + l] = ll
                    P[5 * _L + l] = -ll * ll
                    P[6 * _L + l] = -s1 * (p + (0.5 - sig) * (1.0 - lapse[l])) / (p * p)
                else:
                    logp = (-np.log1p(ey)) if y >= 0 else (y - np.log1p(ey))
                    P[2 * _L + l] = 1.0 - sig
                    P[3 * _L + l] = -s1
                nll[l] -= logp
                if write_lp and cols[l] >= 0:
                    lp_out[cols[l], t] = logp
            if order >= 1:
                # dy/dtheta and d2y/dtheta2 through z = beta * dq; dQ_R - dQ_L of each dual kept in dqg
                vs = vsplat(s)
                ly, lyy, ll = vload(P, 2 * _L), vload(P, 3 * _L), vload(P, 4 * _L)
                vstore(dz, _L, vs * vload(P, 7 * _L))
                sb = vs * vbeta
                for a_ in range(nd):
                    dqa = ((vload(G, _gi(_SQS + 1, a_)) + vload(G, _gi(_SQC + 1, a_)))
                           - (vload(G, _gi(_SQS, a_)) + vload(G, _gi(_SQC, a_))))
                    vstore(dqg, _L * a_, dqa)
                    vstore(dz, _L * dmap[a_], sb * dqa)
                for ii in range(na):
                    i = act[ii]
                    vstore(gacc, _L * i, vload(gacc, _L * i) - ly * vload(dz, _L * i))
                vstore(gacc, _L * 7, vload(gacc, _L * 7) - ll)
                if order >= 2 or gauss_newton:  # upper triangle over the parameters in play, mirrored at the end
                    lyl, lll = vload(P, 6 * _L), vload(P, 5 * _L)
                    for ii in range(na):
                        i = act[ii]
                        lyz = lyy * vload(dz, _L * i)
                        for jj in range(ii, na):
                            j = act[jj]
                            o = _L * (i * _NT + j)
                            vstore(hacc, o, vload(hacc, o) - lyz * vload(dz, _L * j))
                    lys = ly * vs
                    lysb = lys * vbeta
                    for a_ in range(nd):
                        pa = dmap[a_]
                        o = _L * (min(1, pa) * _NT + max(1, pa))
                        vstore(hacc, o, vload(hacc, o) - lys * vload(dqg, _L * a_))
                        if order < 2:  # Gauss-Newton: without the second derivatives of the Q's
                            continue
                        for b_ in range(a_, nd):  # the duals hold upper triangles
                            pb = dmap[b_]
                            dqab = ((vload(H, _hi(_SQS + 1, a_, b_)) + vload(H, _hi(_SQC + 1, a_, b_)))
                                    - (vload(H, _hi(_SQS, a_, b_)) + vload(H, _hi(_SQC, a_, b_))))
                            o = _L * (min(pa, pb) * _NT + max(pa, pb))
                            vstore(hacc, o, vload(hacc, o) - lysb * dqab)
                    for ii in range(na):
                        i = act[ii]
                        o = _L * (min(i, 7) * _NT + max(i, 7))
                        vstore(hacc, o, vload(hacc, o) - lyl * vload(dz, _L * i))
                    o = _L * (7 * _NT + 7)
                    vstore(hacc, o, vload(hacc, o) - lll)
                    if po and order >= 2:  # y's own second derivatives in (rho, tau) and (tau, tau)
                        o = _L * (10 * _NT + 11)
                        vstore(hacc, o, vload(hacc, o) - ly * vload(P, 8 * _L))
                        o = _L * (11 * _NT + 11)
                        vstore(hacc, o, vload(hacc, o) - ly * vload(P, 9 * _L))
        if not learn[t]:
            continue
        # learning: the three teaching signals of the chosen action (pre-update weights). In place: the a
        # updates read U before the U updates, and those read only h and the Q's of the forward pass.
        r_ = reward[t]
        _delta(V, G, H, r_, _SQS + ch, _SQC + ch, _ST, order, nd)  # delta_tot
        _eta_times(V, G, H, veta, _ST, _SS, order, nd)
        for i in range(3):  # a_i += eta * delta_tot * U[ch, i] * x_i
            if (i == 0 and not on0) or (i == 1 and not on1):
                continue
            xi = _input(x, t, i, XV, xt, crosstalk)
            _product(V, G, H, _SS, 3 * ch + 3 + i, xi, i, order, nd, True)
            if xt:
                if ig < nd and i < 2:
                    _crosstalk_terms(V, G, H, _SS, 3 * ch + 3 + i, x[t, 1 - i], i, order, nd, ig)
        for i in range(3):  # U[ch, i] += eta * delta * h_i (delta_stim for stimulus units, delta_const for bias)
            if (i == 0 and not on0) or (i == 1 and not on1):
                continue
            _delta(V, G, H, r_, (_SQS if i < 2 else _SQC) + ch, -1, _ST, order, nd)
            _eta_times(V, G, H, veta, _ST, _SS, order, nd)
            _product(V, G, H, _SS, _SH + i, one, 3 * ch + 3 + i, order, nd, True)
        for i in range(_NW):
            for l in range(_L):
                vi = V[_L * i + l]
                if positive:
                    if vi < 0:
                        _fix_lane(V, G, H, i, l, True, order, nd)
                    elif vi == 0.0:  # torch's abs has zero derivative at 0
                        _fix_lane(V, G, H, i, l, False, order, nd)
                if vi > MAX_WEIGHT or vi < -MAX_WEIGHT:
                    V[_L * i + l] = MAX_WEIGHT if vi > 0 else -MAX_WEIGHT
                    _fix_lane(V, G, H, i, l, False, order, nd)
    for l in range(_L):
        b = cols[l]
        if b < 0:
            continue
        nll_out[b] = nll[l]
        for i in range(_NT):
            grad_out[b, i] = gacc[_L * i + l]
        if order >= 2 or gauss_newton:
            for ii in range(na):
                for jj in range(ii, na):
                    h = hacc[_L * (act[ii] * _NT + act[jj]) + l]
                    hess_out[b, act[ii], act[jj]] = h
                    hess_out[b, act[jj], act[ii]] = h


# One entry point per dual size, the size a constant the compiler sees in its call of _lanes: with a
# runtime size (or one passed down through a shared inlined helper) the compiler no longer unrolls the small
# derivative loops and an order-2 pass runs ~2x slower. 5: the default fit (k fixed), one more for each of
# k, stim_skew and crosstalk whose derivatives are asked for (which ones: ``dmap``, a closure constant too).
def _make_batched(dmap: tuple, xt: bool, po: bool, sources: str):
    """The entry point for the dual coordinates ``dmap`` (their THETA positions), inputs with crosstalk or
    not (``xt``) and the side preference's derivatives or not (``po``), all closure constants; its numba cache
    keyed on ``sources`` (:mod:`mouse_rl.numba_cache`)."""
    nd = len(dmap)
    dpos = [dmap.index(i) if i in dmap else nd for i in range(_NT)]  # THETA position -> dual coordinate
    ik, iskew, ig = dpos[3], dpos[8], dpos[_CROSSTALK]
    act = np.array([i for i in range(_NT) if i in (1, 7) or dpos[i] < nd or (po and i in _SIDE_PREF)], np.int64)
    dmap = np.array(dmap, np.int64)  # captured arrays are compile-time constants, as globals are

    @nb.njit(cache=True, nogil=True, error_model="numpy")  # as the parallel loop had: x / 0 = inf, no raise
    def batched(x, choice, reward, learn, score, n_trials, grow, gcols, theta, positive, use_lapse, order, nll,
                grad, hess, write_lp, lp, gauss_newton, write_w, w):
        sources  # noqa: B018 (in numba's cache key: see mouse_rl.numba_cache)
        for q in range(grow.shape[0]):
            m = grow[q]
            _lanes(x[m], choice[m], reward[m], learn[m], score[m], n_trials[m], theta, gcols[q], positive, use_lapse,
                   order, nd, dmap, act, ik, iskew, ig, xt, po, nll, grad, hess, write_lp, lp, gauss_newton, write_w,
                   w)

    return batched


#: The other sources the kernel compiles in (:mod:`mouse_rl.numba_cache`).
_SOURCES = source_fingerprint(vec4, network)
_BATCHED = {}  # (dmap, xt, po) -> entry point, made on first use (numba compiles a specialisation when first called)


def _batched(dmap: tuple, xt: bool, po: bool):
    if (dmap, xt, po) not in _BATCHED:
        _BATCHED[dmap, xt, po] = _make_batched(dmap, xt, po, _SOURCES)
    return _BATCHED[dmap, xt, po]


def _run_groups(kernel, args, grow, gcols, rest) -> None:
    """Run the lane groups on numba's thread count of Python threads (the kernel releases the GIL; each group
    writes only its own columns), handing them out one at a time, longest first."""
    n = min(nb.get_num_threads(), len(grow))
    if n <= 1:
        kernel(*args, grow, gcols, *rest)
        return
    queue = itertools.count()  # next() on it is atomic under the GIL

    def work():
        while (q := next(queue)) < len(grow):
            kernel(*args, grow[q:q + 1], gcols[q:q + 1], *rest)

    with ThreadPoolExecutor(n) as pool:
        for f in [pool.submit(work) for _ in range(n)]:
            f.result()


def _lane_groups(rows: np.ndarray, n_trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns grouped by data row, four to a group: the group's row ``(G,)`` and its columns ``(G, 4)``
    (-1 = unused lane); groups of the longest rows first, columns in their given order within a row."""
    B = len(rows)
    order_ = np.lexsort((np.arange(B), rows, -n_trials[rows]))  # by trials descending, then row, stable
    r = rows[order_]
    new = np.r_[True, r[1:] != r[:-1]]
    first = np.flatnonzero(new)
    cnt = np.diff(np.r_[first, B])
    rank = np.arange(B) - np.repeat(first, cnt)
    ng = -(-cnt // _L)
    goff = np.r_[0, np.cumsum(ng)[:-1]]
    gid = np.repeat(goff, cnt) + rank // _L
    gcols = np.full((int(ng.sum()), _L), -1, dtype=np.int64)
    gcols[gid, rank % _L] = order_
    grow = np.repeat(r[first], ng).astype(np.int64)
    return grow, gcols


def nll_derivatives(x: np.ndarray, choice: np.ndarray, reward: np.ndarray, learn: np.ndarray, score: np.ndarray,
                    n_trials: np.ndarray, theta: np.ndarray, positive: bool = True, use_lapse: bool = True,
                    order: int = 2, rows: np.ndarray | None = None, trial_logp: bool = False,
                    skew_derivatives: bool = False, gauss_newton: bool = False,
                    k_derivatives: bool = True, trial_weights: bool = False,
                    crosstalk_derivatives: bool = False,
                    side_pref_derivatives: bool = False) -> tuple[np.ndarray, ...]:
    """Negative log-likelihood (nats) of every column, with its gradient and Hessian in :data:`THETA` order.

    Parameters
    ----------
    x : ``(B, T, 3)`` float64 network inputs without crosstalk (:func:`mouse_rl.network.encode` with its
        default ``crosstalk=None``): the kernel applies each column's crosstalk from ``theta``.
    choice : ``(B, T)`` int64 (0 = Left, 1 = Right).
    reward : ``(B, T)`` float64 learning reward.
    learn, score : ``(B, T)`` bool: trials the learner learns from / whose choice counts.
    n_trials : ``(B,)`` trials of each column (the rest is padding).
    theta : ``(B, 12)`` natural parameters in :data:`THETA` order; ``(B, 10)`` (no side preference columns)
        means side_pref = 0, ``(B, 9)`` also crosstalk = 0 and ``(B, 8)`` also stim_skew = 0 (mouse_rl/MODEL.md);
        the derivatives then come without their rows and columns.
    positive : absolute value of the weights after each update.
    use_lapse : apply the lapse to the policy.
    order : 0 = value only, 1 = + gradient, 2 = + Hessian (each order propagates only the derivatives it
        needs: order 0 costs about 0.4 of order 2, order 1 about 0.55; ``bench/fit_kernel_orders.py``).
    rows : ``(B',)`` which data row each row of ``theta`` runs on (default ``arange(B)``), so that
        restarts and subsets share the data arrays without copies.
    trial_logp : also return ``(B', T)`` log P(observed choice) of every scored trial (nats; 0 elsewhere).
    skew_derivatives : also propagate the derivatives with respect to stim_skew (one more dual coordinate:
        the Hessian work grows with the square of the dual count); without, its entries of ``grad`` and
        ``hess`` are 0 (its value is used either way).
    crosstalk_derivatives : the same for the crosstalk (an option of the inputs: x'_i = x_i + g x_j).
    side_pref_derivatives : the same for the innate side preference rho and tau (an option of the policy: the
        logit of trial t, counted from 0 in each row, gets rho exp(-t / tau); no dual coordinates: it does not
        change the weights).
    k_derivatives : propagate the derivatives with respect to k (default); False leaves them out (its
        entries of ``grad`` and ``hess`` are then 0; a fit with k fixed needs none: five dual coordinates
        instead of six).
    gauss_newton : with ``order=1``, also return the Gauss-Newton Hessian: the exact Hessian without the
        second derivatives of the Q values (the terms that need second-order duals), i.e. the outer products
        of the logit's gradient weighted by the per-trial curvature, plus the beta and lapse cross terms
        (a cheap curvature for steps far from an optimum; first-order duals only).

    trial_weights : also return ``(B', T, 9)`` the 9 weights (a_L, a_R, a_b, U_LL, ..., U_Rb, the order of
        :func:`mouse_rl.network.flat_weights`) before each trial's update (0 beyond a column's trials).

    Returns
    -------
    nll ``(B',)``, grad ``(B, K)``, hess ``(B, K, K)`` with K = ``theta.shape[1]`` (zeros beyond ``order``),
    then ``lp`` if ``trial_logp`` and the weights if ``trial_weights``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] not in (_NT - 4, _NT - 3, _NT - 2, _NT):
        raise ValueError(f"theta: need shape (B, {_NT}) (or (B, {_NT - 2}) without the side preference, "
                         f"(B, {_NT - 3}) without crosstalk either, (B, {_NT - 4}) without stim_skew either), "
                         f"got {theta.shape}")
    K = theta.shape[1]
    if K < _NT:
        theta = np.hstack([theta, np.broadcast_to(_PAD[K - _NT:], (theta.shape[0], _NT - K))])
    B = theta.shape[0]
    rows = np.arange(B) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape != (B,) or (B and (rows.min() < 0 or rows.max() >= len(n_trials))):
        raise ValueError(f"rows: need {B} indices into {len(n_trials)} data rows")
    nll = np.zeros(B)
    grad = np.zeros((B, _NT))
    hess = np.zeros((B, _NT, _NT))
    lp = np.zeros((B, x.shape[1] if trial_logp else 1))
    w = np.zeros((B, x.shape[1] if trial_weights else 1, _NW))
    # values do not depend on the dual coordinates: order 0 runs the default fit's entry point (plain inputs)
    # or the one of a fit with the crosstalk free (inputs with crosstalk), so the fits and their per-trial
    # tables need no further compiled specialisation
    xt = bool(crosstalk_derivatives) or bool(np.any(theta[:, _CROSSTALK] != 0))
    if int(order) == 0:
        dmap = (*_BASE, _CROSSTALK) if xt else _BASE
    else:
        asked = {"k": k_derivatives, "stim_skew": skew_derivatives, "crosstalk": crosstalk_derivatives}
        dmap = (*_BASE, *(_OPTIONAL[name] for name, on in asked.items() if on))
        if len(dmap) > _D:
            raise ValueError("derivatives: at most two of k, stim_skew and crosstalk at once (k_derivatives, "
                             "skew_derivatives, crosstalk_derivatives)")
    n_trials = np.ascontiguousarray(n_trials, dtype=np.int64)
    grow, gcols = _lane_groups(rows, n_trials)
    kernel = _batched(dmap, xt, bool(side_pref_derivatives) and int(order) > 0)
    args = (np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(choice, dtype=np.int64),
            np.ascontiguousarray(reward, dtype=np.float64), np.ascontiguousarray(learn, dtype=np.bool_),
            np.ascontiguousarray(score, dtype=np.bool_), n_trials)
    rest = (np.ascontiguousarray(theta, dtype=np.float64), bool(positive), bool(use_lapse), int(order),
            nll, grad, hess, bool(trial_logp), lp, bool(gauss_newton) and int(order) == 1, bool(trial_weights), w)
    _run_groups(kernel, args, grow, gcols, rest)
    out = (nll, grad[:, :K], hess[:, :K, :K]) + ((lp,) if trial_logp else ()) + ((w,) if trial_weights else ())
    return out
