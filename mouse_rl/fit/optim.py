"""Batched minimisation of independent per-column objectives (mice x restarts).

The objective returns one negative log-likelihood per batch column; columns
share no parameters, so the gradient of the sum is each column's own
gradient. Adam treats every coordinate separately; L-BFGS sees the sum of
per-trial-normalised objectives. Both keep the best point of every column.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch
from tqdm.auto import tqdm

METHODS = ("adam", "lbfgs")


@contextlib.contextmanager
def torch_threads(n: int | None = 1):
    """Run the block with ``n`` torch intra-op CPU threads, restoring the caller's setting on exit.

    The unrolled models run thousands of tiny ops; on CPU intra-op threads
    only add synchronisation (measured up to 20x slower per trial on a busy
    2-core machine), so the hot loops default to one thread. ``None``: leave
    the setting alone. The setting is process-wide: the library only changes
    it inside a call that takes a ``threads`` argument, and always restores it.
    """
    old = torch.get_num_threads()
    if n is None or int(n) == old:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def minimize_batched(objective: Callable[[torch.Tensor], torch.Tensor], u0: torch.Tensor, scale: torch.Tensor,
                     method: str = "lbfgs", max_iter: int = 100, lr: float | None = None,
                     progress: bool = True, desc: str = "fit", threads: int | None = 1
                     ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """See :func:`_minimize`; runs with ``threads`` intra-op threads, the caller's setting restored on return
    (``None``: unchanged; see :func:`torch_threads`)."""
    with torch_threads(threads):
        return _minimize(objective, u0, scale, method, max_iter, lr, progress, desc)


def _minimize(objective, u0, scale, method, max_iter, lr, progress, desc):
    """Minimise ``objective(u)`` (``(B,)`` values) over ``u`` ``(B, P)``.

    Parameters
    ----------
    objective : maps ``(B, P)`` parameters to ``(B,)`` losses (differentiable).
    u0 : start points.
    scale : ``(B,)`` positive divisors (e.g. trial counts) so every column has
        per-trial loss units for L-BFGS.
    method : ``"lbfgs"`` (default) or ``"adam"``.
    max_iter : L-BFGS iterations or Adam steps.
    lr : Adam step size in unconstrained units (default 0.05) / L-BFGS initial step (default 1).

    Returns
    -------
    u_best : ``(B, P)`` best point of each column.
    f_best : ``(B,)`` objective there.
    info : ``{"n_evals", "seconds", "history"}`` (history: sum of f per evaluation).
    """
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    u = u0.detach().clone().requires_grad_(True)
    best_u = u0.detach().clone()
    best_f = torch.full((u0.shape[0],), float("inf"), dtype=u0.dtype, device=u0.device)
    history: list[float] = []
    t0 = time.perf_counter()
    max_eval = max_iter if method == "adam" else int(max_iter * 1.25)  # L-BFGS line searches evaluate more often
    bar = tqdm(total=max_eval, desc=desc, unit="eval", disable=not progress, leave=False)

    def evaluate():
        nonlocal best_u, best_f
        f = objective(u)
        with torch.no_grad():
            fin = torch.isfinite(f)
            better = fin & (f < best_f)
            best_f = torch.where(better, f.detach(), best_f)
            best_u = torch.where(better[:, None], u.detach(), best_u)
        f = torch.where(fin, f, torch.zeros_like(f))  # a diverged column must not poison the others
        history.append(float(f.detach().sum()))
        return f

    if method == "adam":
        opt = torch.optim.Adam([u], lr=lr or 0.05)
        for _ in range(max_iter):
            opt.zero_grad()
            f = evaluate()
            (f / scale).sum().backward()
            with torch.no_grad():
                u.grad.nan_to_num_(0.0)
            opt.step()
            bar.update(1)
    else:
        opt = torch.optim.LBFGS([u], lr=lr or 1.0, max_iter=max_iter, max_eval=max_eval, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            loss = (evaluate() / scale).sum()
            loss.backward()
            with torch.no_grad():
                u.grad.nan_to_num_(0.0)
            bar.update(1)
            return loss

        opt.step(closure)
        with torch.no_grad():
            evaluate()  # the final point (not counted by the bar)
    bar.close()
    return best_u, best_f, {"n_evals": len(history), "seconds": time.perf_counter() - t0, "history": history}


def batched_hessian(objective: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor,
                    method: str = "autograd", step: float = 1e-3, threads: int | None = 1) -> torch.Tensor:
    """Per-column Hessians ``(B, P, P)`` of a column-separable objective.

    Because column b's loss depends only on ``u[b]``, the Hessian of the sum is
    block diagonal. ``"autograd"``: row j of every block is d/du of
    ``sum_b grad_b[j]`` (P double-backward passes). ``"fd"``: central
    differences of the exact gradient, ``(g(u + h e_j) - g(u - h e_j)) / 2h``
    with ``h = step`` (2P first-order passes; for objectives without second
    derivatives, e.g. the compiled network unroll), symmetrised. ``threads``: torch intra-op threads during
    the call, the caller's setting restored on return (``None``: unchanged; see :func:`torch_threads`).
    """
    if method not in ("autograd", "fd"):
        raise ValueError(f"method: must be 'autograd' or 'fd', got {method!r}")
    with torch_threads(threads):
        return _hessian(objective, u) if method == "autograd" else _hessian_fd(objective, u, step)


def _gradient(objective, u):
    u = u.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(u).sum(), u)
    return g.detach()


def _hessian_fd(objective, u, step):
    rows = []
    for j in range(u.shape[1]):
        e = torch.zeros_like(u)
        e[:, j] = step
        rows.append((_gradient(objective, u + e) - _gradient(objective, u - e)) / (2 * step))
    H = torch.stack(rows, dim=1)
    return 0.5 * (H + H.transpose(1, 2))


def _hessian(objective, u):
    u = u.detach().clone().requires_grad_(True)
    f = objective(u).sum()
    (g,) = torch.autograd.grad(f, u, create_graph=True)
    rows = []
    for j in range(u.shape[1]):
        (h,) = torch.autograd.grad(g[:, j].sum(), u, retain_graph=j < u.shape[1] - 1, allow_unused=True)
        rows.append(torch.zeros_like(u) if h is None else h)
    return torch.stack(rows, dim=1).detach()
