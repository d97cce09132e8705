"""Symmetric positive-definite block-tridiagonal systems, batched over mice, by block cyclic reduction.

A block-tridiagonal matrix ``H`` with ``n`` diagonal blocks of size ``d`` is
given by its diagonal blocks ``D`` ``(B, n, d, d)`` and its sub-diagonal
blocks ``O`` ``(B, n - 1, d, d)``, ``O[:, t] = H[t + 1, t]`` (the block above
the diagonal is ``O[:, t].mT``); ``B`` is the leading (mouse) axis.

Cyclic reduction eliminates the odd-numbered blocks (their Schur complement
on the even ones is again block tridiagonal, and SPD), recurses on the half
as large system, and back-substitutes: ``log2(n)`` sequential levels, each a
handful of batched ``d x d`` Cholesky factorisations and products over all
blocks at once, so the work is O(n d^3) and the Python overhead O(log n) -
the same code on CPU and CUDA, differentiable by autograd (used for the
gradient of the Laplace evidence). With ``inverse=True`` it also returns the
diagonal and first sub-diagonal blocks of ``H^-1`` (selected inversion:
posterior marginal covariances of a Gauss-Markov chain).
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class BlockSolve(NamedTuple):
    """Result of :func:`solve`.

    x : ``(B, n, d, k)`` solution of ``H x = rhs`` (None without ``rhs``).
    logdet : ``(B,)`` log det H (NaN for a mouse whose H is not positive definite).
    logdet_blocks : ``(B, n)`` each block's share of ``logdet`` (log det of its pivot; sums to ``logdet``):
        summing it over a segment gives the log det of that segment when ``O`` is zero at the segment
        boundaries (several mice packed in one chain).
    ok : ``(B,)`` bool, every Cholesky factor of that mouse succeeded.
    cov : ``(B, n, d, d)`` diagonal blocks of H^-1 (only with ``inverse``).
    cov_off : ``(B, n - 1, d, d)`` blocks ``(t + 1, t)`` of H^-1 (only with ``inverse``).
    """

    x: torch.Tensor | None
    logdet: torch.Tensor
    ok: torch.Tensor
    logdet_blocks: torch.Tensor | None = None
    cov: torch.Tensor | None = None
    cov_off: torch.Tensor | None = None


def dense(D: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    """The full ``(B, n d, n d)`` matrix of a block-tridiagonal ``(D, O)`` (for tests and small problems)."""
    B, n, d, _ = D.shape
    H = D.new_zeros(B, n, d, n, d)
    idx = torch.arange(n, device=D.device)
    H[:, idx, :, idx, :] = D.permute(1, 0, 2, 3)
    if n > 1:
        H[:, idx[1:], :, idx[:-1], :] = O.permute(1, 0, 2, 3)
        H[:, idx[:-1], :, idx[1:], :] = O.mT.permute(1, 0, 2, 3)
    return H.reshape(B, n * d, n * d)


def _chol(A: torch.Tensor):
    """Cholesky factor of a batch of SPD blocks; failed blocks get an identity factor and ``ok`` False."""
    L, info = torch.linalg.cholesky_ex(A)
    ok = info == 0
    if not bool(ok.all()):
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        L = torch.where(ok[..., None, None], L, eye)
    return L, ok


def _logdet(L: torch.Tensor) -> torch.Tensor:
    return 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)


def _reduce(D, O, b, inverse: bool):
    """One level of cyclic reduction (recursive). Shapes as in :func:`solve`; ``b`` may be None.

    Returns ``(x, logdet_blocks, ok, cov, cov_off)``; ``logdet_blocks`` ``(B, n)``.
    """
    B, n, d, _ = D.shape
    if n <= 2:  # dense base case (pivot log dets from the dense factor's diagonal)
        L, ok = _chol(dense(D, O))
        x = torch.cholesky_solve(b.reshape(B, n * d, -1), L).reshape(b.shape) if b is not None else None
        cov = cov_off = None
        if inverse:
            S = torch.cholesky_inverse(L).reshape(B, n, d, n, d)
            cov = torch.stack([S[:, t, :, t] for t in range(n)], 1)
            cov_off = S[:, 1:, :, :1].reshape(B, n - 1, d, d)
        ld = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).reshape(B, n, d).sum(-1)
        return x, ld, ok, cov, cov_off
    padded = n % 2 == 0
    if padded:  # an isolated identity block: every odd block gets two even neighbours
        D = torch.cat([D, torch.eye(d, dtype=D.dtype, device=D.device).expand(B, 1, d, d)], 1)
        O = torch.cat([O, D.new_zeros(B, 1, d, d)], 1)
        if b is not None:
            b = torch.cat([b, b.new_zeros(B, 1, *b.shape[2:])], 1)
    De, Do = D[:, 0::2], D[:, 1::2]
    Ol, Or = O[:, 0::2], O[:, 1::2]  # H[o, o-1] and H[o+1, o] for odd o
    Lo, ok_o = _chol(Do)
    m = Do.shape[1]
    rhs = [Ol, Or.mT] + ([b[:, 1::2]] if b is not None else [])
    sol = torch.cholesky_solve(torch.cat(rhs, -1), Lo)  # one call for Do^-1 [H[o,o-1], H[o,o+1], b_o]
    A, C = sol[..., :d], sol[..., d:2 * d]
    zero = D.new_zeros(B, 1, d, d)
    De2 = De - torch.cat([Ol.mT @ A, zero], 1) - torch.cat([zero, Or @ C], 1)
    De2 = 0.5 * (De2 + De2.mT)
    Oe = -(Or @ A)  # H'[o+1, o-1]
    be = None
    if b is not None:
        yo = sol[..., 2 * d:]  # Do^-1 b_o
        zb = b.new_zeros(B, 1, *b.shape[2:])
        be = b[:, 0::2] - torch.cat([Ol.mT @ yo, zb], 1) - torch.cat([zb, Or @ yo], 1)
    xe, ld_e, ok_e, Se, Soe = _reduce(De2, Oe, be, inverse)
    ld = torch.stack([ld_e[:, :-1], _logdet(Lo)], 2).reshape(B, 2 * m)
    ld = torch.cat([ld, ld_e[:, -1:]], 1)
    ok = ok_o.all(1) & ok_e
    x = None
    if b is not None:
        xo = yo - A @ xe[:, :-1] - C @ xe[:, 1:]
        x = torch.cat([torch.stack([xe[:, :-1], xo], 2).reshape(B, 2 * m, *xo.shape[2:]), xe[:, -1:]], 1)
    cov = cov_off = None
    if inverse:
        Spp, Sqq, Sqp = Se[:, :-1], Se[:, 1:], Soe
        S_op = -(A @ Spp + C @ Sqp)
        S_oq = -(A @ Sqp.mT + C @ Sqq)
        S_oo = torch.cholesky_inverse(Lo) - (A @ S_op.mT + C @ S_oq.mT)
        S_oo = 0.5 * (S_oo + S_oo.mT)
        cov = torch.cat([torch.stack([Spp, S_oo], 2).reshape(B, 2 * m, d, d), Se[:, -1:]], 1)
        cov_off = torch.stack([S_op, S_oq.mT], 2).reshape(B, 2 * m, d, d)
    if padded:
        ld = ld[:, :-1]
        x = x[:, :-1] if x is not None else None
        if inverse:
            cov, cov_off = cov[:, :-1], cov_off[:, :-1]
    return x, ld, ok, cov, cov_off


def solve(D: torch.Tensor, O: torch.Tensor, rhs: torch.Tensor | None = None, inverse: bool = False) -> BlockSolve:
    """Solve ``H x = rhs``, log det H and (optionally) the block tridiagonal part of H^-1.

    Parameters
    ----------
    D : ``(B, n, d, d)`` symmetric positive-definite diagonal blocks.
    O : ``(B, n - 1, d, d)`` sub-diagonal blocks, ``O[:, t] = H[t + 1, t]``.
    rhs : ``(B, n, d)`` or ``(B, n, d, k)`` right-hand sides, or None.
    inverse : also return ``cov`` / ``cov_off`` (see :class:`BlockSolve`).
    """
    if D.ndim != 4 or D.shape[-1] != D.shape[-2]:
        raise ValueError(f"D: expected shape (B, n, d, d), got {tuple(D.shape)}")
    B, n, d, _ = D.shape
    if tuple(O.shape) != (B, max(n - 1, 0), d, d):
        raise ValueError(f"O: expected shape {(B, n - 1, d, d)}, got {tuple(O.shape)}")
    vec = rhs is not None and rhs.ndim == 3
    b = rhs[..., None] if vec else rhs
    x, ld, ok, cov, cov_off = _reduce(D, O, b, inverse)
    if x is not None and vec:
        x = x[..., 0]
    logdet = ld.sum(1)
    logdet = torch.where(ok, logdet, torch.full_like(logdet, float("nan")))
    return BlockSolve(x, logdet, ok, ld, cov, cov_off)


# ---------------------------------------------------------------------------------------------------------------
# CPU path: sequential block Cholesky per chain (numba, chains in parallel). Same results as :func:`solve`.
# ---------------------------------------------------------------------------------------------------------------

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402


@nb.njit(cache=True, inline="always")
def _nb_chol(A, L):
    """L = cholesky(A) (lower); returns False if A is not positive definite."""
    d = A.shape[0]
    for j in range(d):
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return False
        ljj = np.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, d):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / ljj
        for i in range(j):
            L[i, j] = 0.0
    return True


@nb.njit(cache=True, inline="always")
def _nb_lsolve(L, b):
    """b <- L^-1 b in place (b: (d, k))."""
    d, k = b.shape
    for c in range(k):
        for i in range(d):
            s = b[i, c]
            for j in range(i):
                s -= L[i, j] * b[j, c]
            b[i, c] = s / L[i, i]


@nb.njit(cache=True, inline="always")
def _nb_ltsolve(L, b):
    """b <- L^-T b in place (b: (d, k))."""
    d, k = b.shape
    for c in range(k):
        for i in range(d - 1, -1, -1):
            s = b[i, c]
            for j in range(i + 1, d):
                s -= L[j, i] * b[j, c]
            b[i, c] = s / L[i, i]


@nb.njit(cache=True, parallel=True)
def _nb_chains(D, O, rhs, starts, inverse, x, logdet, ok, cov, cov_off):
    """Block Cholesky H = L L^T of each chain [starts[c], starts[c+1]) with diagonal blocks L_t and
    sub-diagonal W_t = O_t L_{t-1}^-T; forward/back substitution; selected inverse
    S_tt = L_t^-T (L_t^-1 - W_{t+1}^T S_{t+1,t}), S_{t,t+1} = -L_t^-T W_{t+1}^T S_{t+1,t+1}."""
    n_chain = starts.shape[0] - 1
    d = D.shape[1]
    k = rhs.shape[2]
    for c in nb.prange(n_chain):
        s0, s1 = starts[c], starts[c + 1]
        n = s1 - s0
        Lc = np.zeros((n, d, d))
        W = np.zeros((n, d, d))
        good = True
        ld = 0.0
        A = np.empty((d, d))
        for t in range(n):
            i = s0 + t
            for p in range(d):
                for q in range(d):
                    A[p, q] = D[i, p, q]
            if t > 0:
                # W_t^T = L_{t-1}^-1 O_t^T
                Wt = np.ascontiguousarray(O[i].T)
                _nb_lsolve(Lc[t - 1], Wt)
                for p in range(d):
                    for q in range(d):
                        W[t, p, q] = Wt[q, p]
                for p in range(d):
                    for q in range(d):
                        s = 0.0
                        for r in range(d):
                            s += W[t, p, r] * W[t, q, r]
                        A[p, q] -= s
            if not _nb_chol(A, Lc[t]):
                good = False
                break
            for p in range(d):
                ld += 2.0 * np.log(Lc[t, p, p])
        ok[c] = good
        if not good:
            logdet[c] = np.nan
            continue
        logdet[c] = ld
        # solve
        y = np.empty((n, d, k))
        for t in range(n):
            i = s0 + t
            for p in range(d):
                for q in range(k):
                    s = rhs[i, p, q]
                    if t > 0:
                        for r in range(d):
                            s -= W[t, p, r] * y[t - 1, r, q]
                    y[t, p, q] = s
            _nb_lsolve(Lc[t], y[t])
        for t in range(n - 1, -1, -1):
            if t < n - 1:
                for p in range(d):
                    for q in range(k):
                        s = 0.0
                        for r in range(d):
                            s += W[t + 1, r, p] * y[t + 1, r, q]
                        y[t, p, q] -= s
            _nb_ltsolve(Lc[t], y[t])
        for t in range(n):
            x[s0 + t] = y[t]
        if not inverse:
            continue
        # selected inverse
        S_next = np.zeros((d, d))
        for t in range(n - 1, -1, -1):
            i = s0 + t
            Li = np.eye(d)
            _nb_lsolve(Lc[t], Li)  # L_t^-1
            if t < n - 1:
                # M = W_{t+1}^T S_{t+1,t+1}; S_{t,t+1} = -L_t^-T M
                M = np.zeros((d, d))
                for p in range(d):
                    for q in range(d):
                        s = 0.0
                        for r in range(d):
                            s += W[t + 1, r, p] * S_next[r, q]
                        M[p, q] = s
                _nb_ltsolve(Lc[t], M)
                for p in range(d):
                    for q in range(d):
                        cov_off[i + 1, q, p] = -M[p, q]  # S_{t+1,t} = S_{t,t+1}^T
                # Li <- L_t^-1 - W_{t+1}^T S_{t+1,t}
                for p in range(d):
                    for q in range(d):
                        s = 0.0
                        for r in range(d):
                            s += W[t + 1, r, p] * cov_off[i + 1, r, q]
                        Li[p, q] -= s
            _nb_ltsolve(Lc[t], Li)
            for p in range(d):
                for q in range(d):
                    v = 0.5 * (Li[p, q] + Li[q, p])
                    cov[i, p, q] = v
                    S_next[p, q] = v


def solve_chains(D: torch.Tensor, O: torch.Tensor, starts, rhs: torch.Tensor | None = None,
                 inverse: bool = False, backend: str = "auto") -> BlockSolve:
    """Several independent chains packed end to end (one per mouse), CPU (numba) or any device (torch).

    Parameters
    ----------
    D : ``(N, d, d)`` diagonal blocks of all chains, packed.
    O : ``(N, d, d)``; ``O[i] = H[i, i - 1]`` (ignored, taken as 0, at the first block of each chain).
    starts : ``(C + 1,)`` int, chain c is blocks ``starts[c]:starts[c + 1]`` (non-empty).
    rhs : ``(N, d)`` or ``(N, d, k)`` or None.
    inverse : also return the diagonal blocks ``cov`` ``(N, d, d)`` of H^-1 and ``cov_off`` ``(N, d, d)``,
        ``cov_off[i] = (H^-1)[i, i - 1]`` (0 at chain starts).
    backend : ``"numba"`` (CPU tensors, not differentiable), ``"torch"`` (cyclic reduction, any device,
        differentiable) or ``"auto"`` (numba on CPU unless autograd is needed).

    Returns a :class:`BlockSolve` with per-chain ``logdet`` and ``ok`` ``(C,)`` and packed ``x``.
    """
    starts_np = np.asarray(torch.as_tensor(starts).cpu(), dtype=np.int64)
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend: must be 'auto', 'numba' or 'torch', got {backend!r}")
    if np.any(np.diff(starts_np) <= 0) or starts_np[0] != 0 or starts_np[-1] != D.shape[0]:
        raise ValueError(f"starts: must increase strictly from 0 to N = {D.shape[0]}, got {starts_np.tolist()}")
    vec = rhs is not None and rhs.ndim == 2
    b = rhs[..., None] if vec else rhs
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (D, O, b))
    if backend == "auto":
        backend = "numba" if D.device.type == "cpu" and not needs_grad and D.dtype == torch.float64 else "torch"
    first = torch.zeros(D.shape[0], dtype=torch.bool, device=D.device)
    first[torch.as_tensor(starts_np[:-1], device=D.device)] = True
    if backend == "numba":
        N, d, _ = D.shape
        Dn = np.ascontiguousarray(D.detach().cpu().numpy(), dtype=np.float64)
        On = np.ascontiguousarray(O.detach().cpu().numpy(), dtype=np.float64)
        bn = np.zeros((N, d, 1)) if b is None else np.ascontiguousarray(b.detach().cpu().numpy(), dtype=np.float64)
        C = len(starts_np) - 1
        x = np.zeros_like(bn)
        logdet, okn = np.zeros(C), np.zeros(C, dtype=np.bool_)
        cov = np.zeros((N, d, d)) if inverse else np.zeros((1, d, d))
        cov_off = np.zeros((N, d, d)) if inverse else np.zeros((1, d, d))
        _nb_chains(Dn, On, bn, starts_np, inverse, x, logdet, okn, cov, cov_off)
        t = lambda a: torch.as_tensor(a, device=D.device)  # noqa: E731
        xt = None if b is None else t(x)[..., 0] if vec else t(x)
        return BlockSolve(xt, t(logdet), t(okn), None, t(cov) if inverse else None,
                          t(cov_off) if inverse else None)
    Oz = torch.where(first[:, None, None], torch.zeros((), dtype=O.dtype, device=O.device), O)
    res = solve(D[None], Oz[None, 1:], None if b is None else b[None], inverse)
    owner = torch.as_tensor(np.repeat(np.arange(len(starts_np) - 1), np.diff(starts_np)), device=D.device)
    logdet = torch.zeros(len(starts_np) - 1, dtype=D.dtype, device=D.device).index_add(0, owner, res.logdet_blocks[0])
    okc = torch.full_like(logdet, bool(res.ok[0]), dtype=torch.bool)
    x = None if b is None else (res.x[0][..., 0] if vec else res.x[0])
    cov_off = None
    if inverse:
        cov_off = torch.cat([torch.zeros_like(D[:1]), res.cov_off[0]], 0)
        cov_off = torch.where(first[:, None, None], torch.zeros((), dtype=D.dtype, device=D.device), cov_off)
    return BlockSolve(x, logdet, okc, res.logdet_blocks[0], res.cov[0] if inverse else None, cov_off)
