"""Shared assertion of the kernel tests: a fused value, gradient and Hessian against autograd (float64)."""
import numpy as np
import torch


def assert_matches_autograd(f, theta, nll: float, grad: np.ndarray, hess: np.ndarray, rtol: float = 1e-12) -> None:
    """``f(theta)`` (a torch scalar function of a float64 vector) and its autograd derivatives equal the
    kernel's ``nll``, ``grad`` and ``hess`` to ``rtol`` (relative to the largest entry, at least 1)."""
    th = torch.tensor(theta, dtype=torch.float64)
    gt = torch.autograd.functional.jacobian(f, th).numpy()
    Ht = torch.autograd.functional.hessian(f, th).numpy()
    assert abs(float(f(th)) - nll) <= rtol * abs(nll)
    assert np.abs(gt - grad).max() <= rtol * max(1.0, np.abs(gt).max())
    assert np.abs(Ht - hess).max() <= rtol * max(1.0, np.abs(Ht).max())
