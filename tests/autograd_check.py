"""Shared assertions of the kernel tests: a fused value, gradient and Hessian against autograd (float64)."""
import numpy as np
import torch

from mouse_rl.fit.batch import TrialBatch
from mouse_rl.fit.likelihood import choice_logprob
from mouse_rl.params import NetParams


def assert_matches_autograd(f, theta, nll: float, grad: np.ndarray, hess: np.ndarray, rtol: float = 1e-12) -> None:
    """``f(theta)`` (a torch scalar function of a float64 vector) and its autograd derivatives equal the
    kernel's ``nll``, ``grad`` and ``hess`` to ``rtol`` (relative to the largest entry, at least 1)."""
    th = torch.tensor(theta, dtype=torch.float64)
    gt = torch.autograd.functional.jacobian(f, th).numpy()
    Ht = torch.autograd.functional.hessian(f, th).numpy()
    assert abs(float(f(th)) - nll) <= rtol * abs(nll)
    assert np.abs(gt - grad).max() <= rtol * max(1.0, np.abs(gt).max())
    assert np.abs(Ht - hess).max() <= rtol * max(1.0, np.abs(Ht).max())


def column(b: TrialBatch, m: int) -> TrialBatch:
    """Column ``m`` of a batch as a batch of one mouse."""
    s = slice(m, m + 1)
    return TrialBatch(b.mice[s], b.contrast[:, s], b.choice[:, s], b.reward[:, s], b.valid[:, s], b.session[:, s],
                      b.row[:, s], b.n_trials[s])


def assert_columns_match_reference(b: TrialBatch, theta: np.ndarray, free: list, nll, grad, hess, encoding: str,
                                   positive: bool, use_lapse: bool = True) -> None:
    """The kernel's ``nll``, ``grad``, ``hess`` of every column m of ``b`` (at ``theta[m]``, THETA order) equal
    autograd through the reference likelihood (:func:`choice_logprob`, i.e. ``network.trial_update``) in the
    THETA positions ``free``."""
    for m in range(b.shape[1]):
        col = column(b, m)

        def f(th, m=m, col=col):
            full = torch.tensor(theta[m], dtype=torch.float64).clone().index_put((torch.tensor(free),), th)
            p = NetParams(*[full[i:i + 1] for i in range(len(full))])
            return -choice_logprob(col, p, encoding, positive, None, use_lapse).sum()

        assert_matches_autograd(f, theta[m][free], nll[m], grad[m][free], hess[m][np.ix_(free, free)])
