"""Per-column trust-region Newton: closed-form minima, bounds, creases, column independence."""
import numpy as np
import pytest

from mouse_rl.fit.newton import _tr_steps, minimize_newton


def rosenbrock(u, cols):
    x, y = u[:, 0], u[:, 1]
    f = (1 - x) ** 2 + 100 * (y - x**2) ** 2
    g = np.stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)], -1)
    H = np.empty((len(u), 2, 2))
    H[:, 0, 0] = 2 - 400 * (y - x**2) + 800 * x**2
    H[:, 0, 1] = H[:, 1, 0] = -400 * x
    H[:, 1, 1] = 200
    return f, g, H


def test_rosenbrock_from_many_starts():
    u0 = np.array([[-1.2, 1.0], [2.0, -1.0], [0.0, 0.0], [-2, 3]])
    lo, hi = np.full(2, -5.0), np.full(2, 5.0)
    u, f, info = minimize_newton(rosenbrock, u0, lo, hi, max_iter=200, gtol=1e-9)
    np.testing.assert_allclose(u, 1.0, atol=1e-6)
    assert info["converged"].all() and set(info["reason"]) == {"gradient"}


def test_bound_is_respected_and_converges_there():
    def quad(u, cols):  # minimum at u = 3, box ends at 1
        return ((u - 3) ** 2).sum(1), 2 * (u - 3), np.broadcast_to(2 * np.eye(u.shape[1]), (len(u), 2, 2)).copy()

    u, f, info = minimize_newton(quad, np.zeros((1, 2)), np.full(2, -1.0), np.full(2, 1.0))
    np.testing.assert_allclose(u, 1.0)
    assert info["reason"][0] == "gradient"  # projected gradient is zero at the active bound


def test_crease_minimum_is_found_and_labelled():
    """|x - 0.3| + (y + 0.1)^2 has its minimum on a crease where the gradient never vanishes."""
    def crease(u, cols):
        x, y = u[:, 0], u[:, 1]
        f = np.abs(x - 0.3) + (y + 0.1) ** 2
        g = np.stack([np.sign(x - 0.3), 2 * (y + 0.1)], -1)
        H = np.zeros((len(u), 2, 2))
        H[:, 1, 1] = 2
        return f, g, H

    u, f, info = minimize_newton(crease, np.array([[2.0, 1.0], [-1.0, -2.0]]), np.full(2, -5.0), np.full(2, 5.0),
                                 gtol=1e-8, ftol=1e-12)
    np.testing.assert_allclose(u[:, 0], 0.3, atol=1e-5)
    np.testing.assert_allclose(u[:, 1], -0.1, atol=1e-5)
    assert set(info["reason"]) == {"crease"} and info["converged"].all()


def test_orders_give_the_same_path_with_cheaper_evaluations():
    """With ``orders=True`` the crease search asks for gradients only at its samples and values only on its
    line search (the rest zeroed here, as a kernel of that order returns): same iterates, same result."""
    asked = []

    def crease(u, cols, order=2):
        asked.append(order)
        x, y = u[:, 0], u[:, 1]
        f = np.abs(x - 0.3) + np.cosh(y + 0.1)
        g = np.stack([np.sign(x - 0.3), np.sinh(y + 0.1)], -1) * (order >= 1)
        H = np.zeros((len(u), 2, 2))
        H[:, 1, 1] = np.cosh(y + 0.1) * (order >= 2)
        return f, g, H

    kw = dict(lower=np.full(2, -5.0), upper=np.full(2, 5.0), gtol=1e-8, ftol=1e-12)
    u0 = np.array([[2.0, 1.0], [-1.0, -2.0], [0.5, 0.3]])
    plain = minimize_newton(lambda u, c: crease(u, c), u0, **kw)
    n_plain = len(asked)
    asked.clear()
    cheap = minimize_newton(crease, u0, orders=True, **kw)
    assert {0, 1, 2} <= set(asked) and n_plain > 0
    np.testing.assert_array_equal(plain[0], cheap[0])
    np.testing.assert_array_equal(plain[1], cheap[1])
    assert list(plain[2]["reason"]) == list(cheap[2]["reason"])
    np.testing.assert_array_equal(plain[2]["n_iter"], cheap[2]["n_iter"])


def test_columns_do_not_interact():
    u0 = np.array([[-1.2, 1.0], [2.0, -1.0], [0.5, 0.5]])
    lo, hi = np.full(2, -5.0), np.full(2, 5.0)
    together = minimize_newton(rosenbrock, u0, lo, hi, max_iter=30)
    for j in range(3):
        alone = minimize_newton(rosenbrock, u0[j:j + 1], lo, hi, max_iter=30)
        assert np.array_equal(together[0][j], alone[0][0]) and together[1][j] == alone[1][0]
        assert together[2]["n_iter"][j] == alone[2]["n_iter"][0]


def test_budget_and_non_finite_start_are_flagged():
    lo, hi = np.full(2, -5.0), np.full(2, 5.0)
    u, f, info = minimize_newton(rosenbrock, np.array([[-1.2, 1.0]]), lo, hi, max_iter=2)
    assert info["reason"][0] == "max_iter" and not info["converged"][0]

    def nan_at_start(u, cols):
        f, g, H = rosenbrock(u, cols)
        return np.where(u[:, 0] == -1.2, np.nan, f), g, H

    u, f, info = minimize_newton(nan_at_start, np.array([[-1.2, 1.0], [0.0, 0.0]]), lo, hi)
    assert list(info["reason"]) == ["non_finite", "gradient"] and list(info["converged"]) == [False, True]


@pytest.mark.parametrize("P", [1, 3, 8])
def test_random_convex_quadratics(P):
    rng = np.random.default_rng(P)
    A = rng.normal(size=(4, P, P))
    H = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(P)
    c = rng.normal(size=(4, P))

    def quad(u, cols):
        d = u - c[cols]
        return 0.5 * np.einsum("bi,bij,bj->b", d, H[cols], d), np.einsum("bij,bj->bi", H[cols], d), H[cols]

    u, f, info = minimize_newton(quad, np.zeros((4, P)), np.full(P, -50.0), np.full(P, 50.0), gtol=1e-10)
    np.testing.assert_allclose(u, c, atol=1e-8)


def test_stall_rule_stops_slow_tails_of_a_first_pass():
    """stall_tol (crease_search=False only): a column stops, "stalled", once it gains at most stall_tol in
    stall_window iterations; off (0) it runs on to the radius collapse or the minimum."""
    u0 = np.array([[-1.2, 1.0], [2.0, -1.0]])
    lo, hi = np.full(2, -5.0), np.full(2, 5.0)
    full = minimize_newton(rosenbrock, u0, lo, hi, max_iter=200, gtol=1e-9, crease_search=False)
    quick = minimize_newton(rosenbrock, u0, lo, hi, max_iter=200, gtol=1e-9, crease_search=False,
                            stall_tol=1e-3, stall_window=3)
    assert (quick[2]["n_iter"] <= full[2]["n_iter"]).all() and (quick[2]["n_iter"] < full[2]["n_iter"]).any()
    assert set(quick[2]["reason"]) <= {"gradient", "stalled"} and (quick[1] < 1e-2).all()
    # with the crease search on, the rule is off: the same path as without it
    a = minimize_newton(rosenbrock, u0, lo, hi, max_iter=200, gtol=1e-9)
    b = minimize_newton(rosenbrock, u0, lo, hi, max_iter=200, gtol=1e-9, stall_tol=1e-3)
    np.testing.assert_array_equal(a[0], b[0])


def test_trust_region_steps_satisfy_the_optimality_conditions():
    """Every column's step solves its subproblem: (H + lam I) p = -g with H + lam I positive semidefinite,
    lam >= 0 and lam (radius - |p|) = 0 (Moré & Sorensen), on its free coordinates; fixed ones do not move
    and the free ones get the step of the reduced problem. Includes definite, indefinite and hard cases."""
    rng = np.random.default_rng(0)
    n, P = 300, 6
    A = rng.standard_normal((n, P, P))
    H = A @ np.swapaxes(A, 1, 2) / P + rng.uniform(-1.5, 0.5, n)[:, None, None] * np.eye(P)
    g = rng.standard_normal((n, P)) * rng.choice([1e-3, 1.0, 10.0], n)[:, None]
    hard = np.arange(n) % 10 == 0  # no gradient along the lowest eigenvector
    ev, V = np.linalg.eigh(H[hard])
    g[hard] -= np.einsum("ni,ni->n", g[hard], V[:, :, 0])[:, None] * V[:, :, 0]
    radius = rng.uniform(0.05, 3.0, n)
    free = rng.random((n, P)) > 0.2
    p = _tr_steps(g, H, free, radius)
    assert not p[~free].any()
    for j in range(n):
        f = free[j]
        if not f.any():
            continue
        h, gj, pj = H[j][np.ix_(f, f)], g[j][f], p[j][f]
        norm = np.linalg.norm(pj)
        assert norm <= radius[j] * (1 + 1e-9)
        lam_min = np.linalg.eigvalsh(h).min()
        if norm < radius[j] * (1 - 1e-9):  # interior: the Newton step of a positive definite model
            assert lam_min > 0
            np.testing.assert_allclose(h @ pj, -gj, rtol=1e-8, atol=1e-10)
        else:  # boundary: a multiplier lam >= max(0, -lam_min) with (h + lam I) p = -g
            r = -gj - h @ pj
            lam = (r @ pj) / (pj @ pj)
            assert lam >= max(0.0, -lam_min) - 1e-7 * max(1.0, abs(lam_min))
            np.testing.assert_allclose(r, lam * pj, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(gj).max()))
