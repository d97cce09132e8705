"""Per-column trust-region Newton minimisation with box bounds (numpy; columns = mice x restarts).

Every column has its own iterate, trust radius, acceptance test and stopping
rule; the objective is evaluated for all still-active columns in one batched
call, but no quantity is shared between columns, so a column's path (and
result) is the same whatever other columns share the run.

Step: the trust-region subproblem ``min g.p + p.H.p / 2, |p| <= radius`` is
solved exactly on the free coordinates by eigen-decomposition (``P <= 8``);
coordinates at a bound whose gradient points outwards are held fixed.
Acceptance: ratio of actual to predicted decrease > 0.1. Radius: quartered
below ratio 0.25, doubled (up to ``max_radius``) above 0.75 on the boundary.

The network's likelihood is only piecewise smooth: the ``|.|`` positivity
folds the weights wherever one touches 0, which leaves V-shaped creases in
the objective where the gradient does not vanish and a quadratic model fails
at every radius. When a column's radius collapses (below ``min_radius``) it
takes a *gradient-sampling round* instead (Burke, Lewis & Overton 2005): the
gradients at points 1e-6 away along every coordinate, whose convex hull's
minimum-norm element is the steepest descent direction of the crease; if it
is below ``gtol`` the point is Clarke-stationary and the column stops, else
it searches along that direction (and takes the Newton step within the
crease, on the complement of the gradient jumps) and moves to the best
point if that lowers the objective by more than ``ftol``, resuming Newton.

Stopping reasons (``info["reason"]`` per column):

* ``"gradient"`` -- projected gradient max-norm <= ``gtol`` and the free
  Hessian positive definite: a smooth local minimum (converged);
* ``"crease"`` -- at a crease, the sampled gradients' hull contains a vector
  below ``gtol`` or no searched step lowers the objective by more than
  ``ftol``: a local minimum on a crease (converged to ``ftol``);
* ``"stalled"`` -- (``crease_search=False`` only) the radius collapsed, or (with
  ``stall_tol``) the objective fell by less than ``stall_tol`` over the last
  ``stall_window`` iterations, and no crease search was made (not converged);
* ``"max_iter"`` -- iteration budget spent (not converged);
* ``"non_finite"`` -- the start point's objective, gradient or Hessian is not finite (not converged).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

REASONS = ("gradient", "crease", "stalled", "max_iter", "non_finite")
CONVERGED = ("gradient", "crease")
#: Radius of the gradient samples around a crease, and the steps tried along the crease's descent direction
#: (u units).
SAMPLE_RADIUS = 1e-6
SEARCH_STEPS = (1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)


def _free_mask(u, g, lower, upper):
    at_lo = (u <= lower) & (g > 0)
    at_hi = (u >= upper) & (g < 0)
    return ~(at_lo | at_hi)


def is_local_minimum(u, g, H, lower, upper, gtol) -> bool:
    """Projected gradient max-norm <= ``gtol`` and the Hessian positive definite on the free coordinates."""
    free = _free_mask(u, g, lower, upper)
    if not free.any():
        return True
    h = H[np.ix_(free, free)]
    return bool(np.abs(g[free]).max() <= gtol and np.all(np.isfinite(h)) and np.linalg.eigvalsh(h).min() > 0)


def _all_finite(f, g, H) -> np.ndarray:
    """Per point: objective, gradient and Hessian all finite."""
    return np.isfinite(f) & np.all(np.isfinite(g), axis=1) & np.all(np.isfinite(H), axis=(1, 2))


def _min_norm_hull(G: np.ndarray) -> np.ndarray:
    """Minimum-norm point of the convex hull of the rows of ``G`` ``(k, P)`` (a small NNLS problem)."""
    from scipy.optimize import nnls

    k = G.shape[0]
    scale = max(1.0, np.abs(G).max())
    rho = 1e3 * scale
    A = np.vstack([G.T, rho * np.ones((1, k))])
    lam, _ = nnls(A, np.concatenate([np.zeros(G.shape[1]), [rho]]), maxiter=50 * k)
    lam = lam / lam.sum() if lam.sum() > 0 else np.full(k, 1.0 / k)
    return lam @ G


def _along_crease_step(G: np.ndarray, H: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, int]:
    """Newton step within the crease, and the number of independent gradient jumps (the crease's codimension).

    Across a crease the gradient jumps; along it the objective is smooth, so
    the Newton step on the orthogonal complement of the jumps (with ``-d``,
    the min-norm hull gradient) moves along the crease. Zeros if that
    subspace is empty or its Hessian is not positive definite.
    """
    jumps = G[1:] - G[0]
    P = G.shape[1]
    if len(jumps):
        _, sv, Vt = np.linalg.svd(jumps, full_matrices=True)
        rank = int((sv > 1e-6 * max(1.0, np.abs(G).max())).sum())
    else:
        Vt, rank = np.eye(P), 0
    Z = Vt[rank:].T
    if Z.shape[1] == 0:
        return np.zeros(P), rank
    Hz = Z.T @ H @ Z
    if not np.all(np.isfinite(Hz)) or np.linalg.eigvalsh(0.5 * (Hz + Hz.T)).min() <= 0:
        return np.zeros(P), rank
    return -Z @ np.linalg.solve(Hz, Z.T @ (-d)), rank


def _tr_steps(g: np.ndarray, H: np.ndarray, free: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Exact trust-region steps of ``n`` columns at once: ``min g.p + p.H.p / 2`` over ``|p| <= radius`` on
    each column's ``free`` coordinates (``g`` (n, P), ``H`` (n, P, P), ``free`` (n, P) bool, ``radius`` (n,));
    the other coordinates do not move.

    Fixed coordinates become a decoupled unit-curvature block with zero gradient (their step is 0). In the
    eigenbasis of the (symmetrised) Hessian the step is ``p(lam) = -sum_i gt_i v_i / (ev_i + lam)``: the
    Newton step where it is inside the radius and the Hessian positive definite; else ``|p(lam)| = radius``,
    solved by Newton's method on the secular equation ``1/|p(lam)| = 1/radius`` from the left (concave,
    so the iterates increase monotonically to the root; Moré & Sorensen 1983); the "hard case" (the
    gradient has no component along the lowest eigenvector) adds that eigenvector to reach the radius.
    """
    n, P = g.shape
    fixed = ~free
    g = np.where(free, g, 0.0)
    Hs = 0.5 * (H + np.swapaxes(H, 1, 2))
    Hs = np.where(free[:, :, None] & free[:, None, :], Hs, 0.0)
    Hs[:, np.arange(P), np.arange(P)] += fixed
    ev, V = np.linalg.eigh(Hs)
    gt = np.einsum("nij,ni->nj", V, g)
    lam_min = ev[:, 0]

    def norm(lam):
        return np.sqrt(((gt / (ev + lam[:, None])) ** 2).sum(1))

    lo = np.maximum(0.0, -lam_min) + 1e-12 * np.maximum(1.0, np.abs(lam_min))
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (lam_min > 0) & (norm(np.zeros(n)) <= radius)
    hard = ~inside & (norm(lo) <= radius)
    lam = np.where(inside, 0.0, lo)
    todo = ~inside & ~hard
    for _ in range(100):
        if not todo.any():
            break
        d = ev[todo] + lam[todo, None]
        q = (gt[todo] / d) ** 2
        pn = np.sqrt(q.sum(1))
        dq = (q / d).sum(1)  # -d|p|^2/dlam / 2
        step = (pn - radius[todo]) / radius[todo] * pn ** 2 / dq  # Newton on 1/|p| - 1/radius
        lam[todo] += step
        done = np.abs(pn - radius[todo]) <= 1e-12 * radius[todo]
        todo[np.flatnonzero(todo)[done]] = False
    coef = gt / (ev + lam[:, None])
    coef[hard, 0] = 0.0  # the hard case: the (vanishing) gradient along the lowest eigenvector is noise over ~0
    if hard.any():
        coef[hard, 0] = -np.sqrt(np.maximum(radius[hard] ** 2 - (coef[hard] ** 2).sum(1), 0.0))
    p = -np.einsum("nij,nj->ni", V, coef)
    return np.where(free, p, 0.0)


def minimize_newton(fun: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
                    u0: np.ndarray, lower: np.ndarray, upper: np.ndarray, max_iter: int = 100,
                    gtol: float = 1e-4, ftol: float = 1e-4, radius: float = 1.0, max_radius: float = 4.0,
                    min_radius: float = 1e-7, crease_search: bool = True,
                    callback: Callable[[int], None] | None = None,
                    orders: bool = False, stall_tol: float = 0.0,
                    stall_window: int = 3) -> tuple[np.ndarray, np.ndarray, dict]:
    """Minimise ``B`` independent objectives over ``u`` ``(B, P)`` within ``[lower, upper]``.

    Parameters
    ----------
    fun : ``fun(u, cols) -> (f (n,), g (n, P), H (n, P, P))`` for the columns ``cols`` at points ``u`` ``(n, P)``.
    u0 : ``(B, P)`` start points (clipped into the box).
    lower, upper : ``(P,)`` bounds in the same (unconstrained) units.
    max_iter : iterations per column (a Newton step, or a crease search, each).
    gtol : threshold on the projected gradient max-norm (objective units per u unit).
    ftol : smallest decrease of the objective (its units, e.g. nats) a crease search must find to go on.
    radius, max_radius, min_radius : initial, largest and collapse trust radius (u units).
    crease_search : search creases (see module docstring); False stops a column when its radius
        collapses, with reason ``"stalled"`` (not converged; a cheap first pass over many starts).
    stall_tol, stall_window : (``crease_search=False`` only; 0 = off) also stop a column, ``"stalled"``, once
        its objective fell by at most ``stall_tol`` over its last ``stall_window`` iterations (the slow tail
        of a first pass: a later crease-searching pass refines the starts that matter).
    callback : called with the number of active columns after every batched evaluation.
    orders : ``fun`` takes a third argument, the derivatives needed (0 value, 1 + gradient, 2 + Hessian;
        zeros may stand for the others): the crease search's gradient samples then ask for order 1, its
        line-search points for order 0 (and the point it moves to for order 2), with the same path.

    Returns
    -------
    u : ``(B, P)`` final points; f : ``(B,)`` objective there;
    info : ``reason`` (array of str, see module docstring), ``converged`` (bool), ``n_iter``,
    ``grad`` ``(B, P)`` and ``hess`` ``(B, P, P)`` at the final points, ``n_evals`` (batched calls).
    """
    u = np.clip(np.array(u0, dtype=float), lower, upper)
    B, P = u.shape
    f, g, H = fun(u, np.arange(B))
    f, g, H = np.array(f, float), np.array(g, float), np.array(H, float)
    rad = np.full(B, float(radius))
    n_iter = np.zeros(B, dtype=int)
    reason = np.array([""] * B, dtype=object)
    bad = ~_all_finite(f, g, H)
    reason[bad] = "non_finite"
    active = ~bad
    n_evals = 1
    if callback:
        callback(int(active.sum()))
    phase = np.zeros(B, dtype=int)  # 0 Newton step, 1 gradient sampling, 2 search along the sampled direction
    direction = np.zeros((B, P))
    along = np.zeros((B, P))
    jumps = np.zeros(B, dtype=int)
    stall = stall_tol > 0 and not crease_search
    if stall:
        history = np.full((B, max_iter + 1), np.inf)  # objective after each iteration
        history[:, 0] = f
    while True:
        over = active & (phase != 0) & (n_iter >= max_iter)
        reason[over], active[over] = "max_iter", False
        test = np.flatnonzero(active & (phase == 0))
        # projected gradients of all these columns at once; only the small ones need the Hessian check
        small = np.where(_free_mask(u[test], g[test], lower, upper), np.abs(g[test]), 0).max(1, initial=0) <= gtol
        for b, b_small in zip(test, small):  # stopping tests
            if b_small and is_local_minimum(u[b], g[b], H[b], lower, upper, gtol):
                reason[b], active[b] = "gradient", False
            elif n_iter[b] >= max_iter:
                reason[b], active[b] = "max_iter", False
            elif rad[b] < min_radius or (stall and n_iter[b] >= stall_window
                                         and history[b, n_iter[b] - stall_window] - f[b] <= stall_tol):
                if crease_search:
                    phase[b] = 1
                else:
                    reason[b], active[b] = "stalled", False
        cols = np.flatnonzero(active)
        if len(cols) == 0:
            break
        pts, owner = [], []
        newton = cols[phase[cols] == 0]
        if len(newton):
            steps = _tr_steps(g[newton], H[newton], _free_mask(u[newton], g[newton], lower, upper), rad[newton])
            step_of = dict(zip(newton.tolist(), u[newton] + steps))
        for b in cols:
            if phase[b] == 0:
                cand = [step_of[b]]
            elif phase[b] == 1:
                cand = [u[b] + SAMPLE_RADIUS * sgn * e for e in np.eye(P) for sgn in (1.0, -1.0)]
            else:
                cand = [u[b] + h * direction[b] for h in SEARCH_STEPS] + [u[b] + along[b], u[b] + 0.5 * along[b]]
            pts.extend(np.clip(cand, lower, upper))
            owner.extend([b] * len(cand))
        owner = np.array(owner)
        pts = np.array(pts)
        if orders:  # Newton candidates need Hessians, gradient samples gradients, line-search points values
            fc, gc, Hc = np.empty(len(pts)), np.zeros((len(pts), P)), np.zeros((len(pts), P, P))
            for order, sel in ((2, phase[owner] == 0), (1, phase[owner] == 1), (0, phase[owner] == 2)):
                if sel.any():
                    fc[sel], gc[sel], Hc[sel] = fun(pts[sel], owner[sel], order)
                    n_evals += 1
        else:
            fc, gc, Hc = fun(pts, owner)
            n_evals += 1
        ok = _all_finite(fc, gc, Hc)
        moved = []
        for b in cols:
            idx = np.flatnonzero(owner == b)
            if phase[b] == 0:
                i = idx[0]
                n_iter[b] += 1
                step = pts[i] - u[b]
                actual = f[b] - fc[i]
                predicted = -(g[b] @ step + 0.5 * step @ H[b] @ step)  # of the clipped step
                rho = actual / predicted if ok[i] and predicted > 0 else (1.0 if ok[i] and actual >= 0 else -1.0)
                norm = np.linalg.norm(step)
                if rho < 0.25:
                    rad[b] = 0.25 * min(norm, rad[b]) if norm > 0 else 0.25 * rad[b]
                elif rho > 0.75 and norm >= 0.99 * rad[b]:
                    rad[b] = min(2 * rad[b], max_radius)
                if rho > 0.1 and ok[i] and actual >= 0:
                    u[b], f[b], g[b], H[b] = pts[i], fc[i], gc[i], Hc[i]
                if stall:
                    history[b, n_iter[b]] = f[b]
            elif phase[b] == 1:  # descent direction of the crease: min-norm convex combination of nearby gradients
                G = np.vstack([g[b][None], gc[idx][ok[idx]]])
                d = -_min_norm_hull(G)
                free = _free_mask(u[b], -d, lower, upper)
                d = np.where(free, d, 0.0)
                norm = np.linalg.norm(d)
                if norm <= gtol:
                    reason[b], active[b] = "crease", False
                else:
                    direction[b], phase[b] = d / norm, 2
                    along[b], jumps[b] = _along_crease_step(G, H[b], d)
            else:
                n_iter[b] += 1
                good = idx[ok[idx]]
                j = good[np.argmin(fc[good])] if len(good) else -1
                if j >= 0 and fc[j] < f[b] - ftol:
                    rad[b] = max(np.linalg.norm(pts[j] - u[b]), 10 * min_radius)
                    u[b], f[b], g[b], H[b] = pts[j], fc[j], gc[j], Hc[j]
                    moved.append(b)
                    phase[b] = 1 if jumps[b] else 0  # still on a crease: sample again; smooth: Newton
                else:
                    reason[b], active[b] = "crease", False
        if orders and moved:  # the gradient and Hessian where the line search moved to
            f[moved], g[moved], H[moved] = fun(u[moved], np.array(moved), 2)
            n_evals += 1
        if callback:
            callback(len(cols))
    converged = np.isin(reason, CONVERGED)
    return u, f, {"reason": reason.astype(str), "converged": converged, "n_iter": n_iter, "grad": g, "hess": H,
                  "n_evals": n_evals}
