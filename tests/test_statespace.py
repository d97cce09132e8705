"""The noisy learner (mouse_rl.fit.statespace): block-tridiagonal algebra, sigma -> 0 limit, Newton, evidence
gradient, and recovery on simulated noisy learners. Small problems, except the recovery test (marked slow)."""

import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl.fit import log_likelihood
from mouse_rl.fit import statespace as ss
from mouse_rl.fit.banded import dense, solve, solve_chains
from mouse_rl.params import ModelParams


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _random_chain(lens, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    N = sum(lens)
    R = torch.randn(N, d, d, generator=g, dtype=torch.float64)
    D = R @ R.mT + 4 * torch.eye(d, dtype=torch.float64)
    O = 0.4 * torch.randn(N, d, d, generator=g, dtype=torch.float64)
    b = torch.randn(N, d, generator=g, dtype=torch.float64)
    return D, O, b, np.concatenate([[0], np.cumsum(lens)])


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_block_tridiagonal_matches_dense(backend):
    D, O, b, starts = _random_chain([1, 2, 7, 12], 3)
    res = solve_chains(D, O, starts, b, inverse=True, backend=backend)
    for c in range(len(starts) - 1):
        s, e = starts[c], starts[c + 1]
        H = dense(D[None, s:e], O[None, s + 1:e])[0]
        Hi = torch.linalg.inv(H).reshape(e - s, 3, e - s, 3)
        torch.testing.assert_close(res.x[s:e].reshape(-1), torch.linalg.solve(H, b[s:e].reshape(-1)))
        torch.testing.assert_close(res.logdet[c], torch.linalg.slogdet(H)[1])
        for t in range(e - s):
            torch.testing.assert_close(res.cov[s + t], Hi[t, :, t])
            if t:
                torch.testing.assert_close(res.cov_off[s + t], Hi[t, :, t - 1])


def test_cyclic_reduction_batched_and_differentiable():
    D, O, b, _ = _random_chain([9], 2, seed=3)
    D = D[None].repeat(2, 1, 1, 1).requires_grad_(True)
    res = solve(D, O[None, 1:].repeat(2, 1, 1, 1), b[None].repeat(2, 1, 1))
    (g,) = torch.autograd.grad(res.logdet.sum(), D)
    H = dense(D.detach(), O[None, 1:].repeat(2, 1, 1, 1))
    Hi = torch.linalg.inv(H[0]).reshape(9, 2, 9, 2)
    torch.testing.assert_close(g[0, 4], Hi[4, :, 4])  # d logdet / dD_t = (H^-1)_tt


def _short(n_mice=2, n_sessions=2, tps=25, seed=1, **hyper):
    hyper = dict(dict(sigma_a=0.03, sigma_U=0.03, eta=0.02, sigma_init=0.2), **hyper)
    return ss.simulate_noisy(n_mice, hyper, n_sessions=n_sessions, trials_per_session=tps, seed=seed)


def test_sigma_to_zero_is_the_deterministic_network():
    df, _ = _short(n_mice=3, tps=40)
    data = ss.pack(df)
    tiny = dict(sigma_a=1e-5, sigma_U=1e-5, sigma_day_a=1e-4, sigma_day_U=1e-4, sigma_init=1e-3, eta=0.01, beta=7.0)
    hp = ss.HyperSet(3, (), tiny).natural()
    z = ss.rollout(data, hp)
    lp = ss.choice_logp(z, data.x, data.choice, hp["beta"][data.mouse], None)
    ll = torch.zeros(3, dtype=torch.float64).index_add(0, data.mouse, lp)
    ref = log_likelihood(df, ModelParams(eta=0.01, beta=7.0, b_L=0.05, b_R=0.05))
    torch.testing.assert_close(ll, ref, rtol=0, atol=1e-10)
    score = torch.ones(len(df), dtype=torch.bool)
    mode = ss.find_mode(data, hp, score, z0=z)
    E, _ = ss.log_evidence(data, hp, score, mode)
    torch.testing.assert_close(E, ref, rtol=0, atol=2e-3)  # Laplace evidence -> the network's likelihood


def test_newton_step_and_exact_hessian_match_dense():
    df, _ = _short(n_mice=1, tps=15)
    data = ss.pack(df)
    hp = ss.HyperSet(1, (), dict(sigma_a=0.05, sigma_U=0.05, eta=0.02)).natural()
    score = torch.ones(len(df), dtype=torch.bool)
    z = ss.rollout(data, hp) + 0.05 * torch.randn(len(df), 9, generator=torch.Generator().manual_seed(0),
                                                   dtype=torch.float64)
    t = ss.joint_terms(data, z, hp, score, order=2)

    def L(flat):
        return ss.joint_terms(data, flat.reshape(-1, 9), hp, score, graph=True).L.sum()

    H = torch.autograd.functional.hessian(L, z.reshape(-1))
    De, Oe = ss.exact_hessian_blocks(data, z, hp, score)
    torch.testing.assert_close(dense(De[None], Oe[None, 1:])[0], -H)
    Hgn = dense(t.D[None], t.O[None, 1:])[0]  # Gauss-Newton step: banded solve = dense solve
    step = solve_chains(t.D, t.O, data.starts, t.g).x
    torch.testing.assert_close(step.reshape(-1), torch.linalg.solve(Hgn, t.g.reshape(-1)))
    mode = ss.find_mode(data, hp, score, z0=z, tol=1e-14)
    g = ss.joint_terms(data, mode.z, hp, score, order=1).g
    assert float(g.abs().max()) < 1e-6
    De, Oe = ss.exact_hessian_blocks(data, mode.z, hp, score)  # exact Newton step at the mode
    res = solve_chains(De, Oe, data.starts, g)
    assert bool(res.ok.all())
    torch.testing.assert_close(res.x.reshape(-1), torch.linalg.solve(dense(De[None], Oe[None, 1:])[0], g.reshape(-1)))


def test_evidence_gradient_matches_finite_differences():
    df, _ = _short(n_mice=2, tps=20, seed=4)
    data = ss.pack(df)
    hs = ss.HyperSet(2, ss.DEFAULT_FREE, dict(sigma_a=0.05, sigma_U=0.04, eta=0.02))
    score = torch.ones(len(df), dtype=torch.bool)
    score[::7] = False
    u = hs.u.clone()
    direction = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    beta = torch.zeros_like(u).index_fill(1, torch.tensor([1]), 1.0)
    for v in (direction, beta):  # random and beta directions
        exact, fd = evidence_slopes(data, hs, score, v, tol=1e-20, max_iter=40)
        torch.testing.assert_close(exact, fd, rtol=1e-4, atol=1e-5)


def evidence_slopes(data, hs, score, v, tol, max_iter, h=1e-5):
    """Directional derivative of the Laplace evidence along ``v`` at ``hs.u``: (exact gradient, central difference)."""
    u = hs.u.clone()
    mode = ss.find_mode(data, hs.natural(u), score, tol=tol, max_iter=max_iter)
    grad, _ = ss.evidence_gradient(data, hs, u, score, mode, exact=True)

    def E(uu):
        m = ss.find_mode(data, hs.natural(uu), score, z0=mode.z, tol=tol, max_iter=max_iter)
        return ss.log_evidence(data, hs.natural(uu), score, m)[0]

    return (grad * v).sum(-1), (E(u + h * v) - E(u - h * v)) / (2 * h)


@pytest.mark.slow
def test_recovery_of_eta_and_sigma_and_band_coverage():
    """Issue 12's recovery test: 10 simulated noisy learners of the recommended variant (linear noise, gains
    frozen) with spread eta and sigma, 20 sessions x 250 trials each (about a real mouse), beta and the
    session jumps known; eta by evidence under a population prior across the mice. r(log eta) and r(log
    sigma) >= 0.8, the true weights inside the 95 % bands on >= 90 % of trials. This is seed 0 of
    `python bench/fit_noisy.py --recovery --noise linear --frozen a --sim-sessions 20 --sim-trials 250
    --known-beta --population eta` (seeds 1 and 2 pass as well, README; without the population prior seed 1
    fails: r(log eta) = 0.72)."""
    rng = np.random.default_rng(0)
    n = 10
    eta = np.exp(rng.uniform(np.log(0.003), np.log(0.03), n))
    sigma = np.exp(rng.uniform(np.log(0.005), np.log(0.04), n))
    fixed = dict(sigma_day_a=0.05, sigma_day_U=0.05, sigma_init=0.1)
    df, z_true = ss.simulate_noisy(n, dict(eta=eta, sigma_a=sigma, sigma_U=sigma, **fixed), n_sessions=20,
                                   trials_per_session=250, seed=0, noise="linear", frozen=("a",))
    fit = ss.fit_noisy(df, free=("eta", "sigma_U"), fixed=fixed, start="defaults", noise="linear", frozen=("a",),
                       population=("eta",))
    p = fit.params
    assert np.corrcoef(np.log(eta), np.log(p["eta"]))[0, 1] >= 0.8
    assert np.corrcoef(np.log(sigma), np.log(p["sigma_U"]))[0, 1] >= 0.8
    cols = [j for j, c in enumerate(ss.WEIGHT_COLUMNS) if c.startswith("U")]  # the gains are frozen (known)
    sd = fit.weights[[ss.WEIGHT_COLUMNS[j] + "_sd" for j in cols]].to_numpy()
    inside = np.abs(fit.z.numpy()[:, cols] - z_true.numpy()[:, cols]) <= 1.96 * sd
    assert inside.mean() >= 0.9
    assert fit.population["eta"]["converged"]


def test_population_mle_is_the_marginal_likelihood_maximum():
    """Independent truth: with Gaussian likelihoods the population mean and sd maximise the exact marginal
    likelihood, computed here directly as a density of each mouse's likelihood mean (2-D, with a non-pooled
    coordinate correlated to the pooled one and integrated out under its own prior; one mouse uninformative
    about the pooled coordinate)."""
    from scipy.optimize import minimize
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    B, mu, tau, c_N, s_N = 14, -4.5, 0.6, 0.3, 1.5
    u_true = np.column_stack([rng.normal(mu, tau, B), rng.normal(c_N, s_N, B)])
    covs = []
    for i in range(B):
        sd = rng.uniform(0.2, 1.0, 2)
        r = rng.uniform(-0.7, 0.7)
        covs.append(np.array([[sd[0] ** 2, r * sd[0] * sd[1]], [r * sd[0] * sd[1], sd[1] ** 2]]))
    covs[0][0, 0], covs[0][0, 1], covs[0][1, 0] = 1e8, 0.0, 0.0  # says nothing about the pooled coordinate
    ell = np.array([rng.multivariate_normal(u_true[i], covs[i]) for i in range(B)])
    A = np.linalg.inv(np.array(covs))  # the evidence exp(-(u - ell)'A(u - ell)/2): Hessian -A, gradient A(ell - u)
    u_now = rng.normal(size=(B, 2)) * 0.3 + ell * 0.5  # wherever a search stopped: the answer must not care
    g = (A @ (ell - u_now)[..., None])[..., 0]
    got_mu, got_tau = ss._population_mle(torch.tensor(u_now), torch.tensor(A), torch.tensor(g), [0],
                                         torch.tensor([0.0, c_N]), torch.tensor([2.0, s_N]), step=1e9)

    def nll(x):
        pop = np.diag([np.exp(2 * x[1]), s_N ** 2])
        return -sum(multivariate_normal.logpdf(ell[i], mean=[x[0], c_N], cov=covs[i] + pop) for i in range(B))

    ref = minimize(nll, [0.0, 0.0], method="Nelder-Mead", options=dict(xatol=1e-8, fatol=1e-10, maxiter=4000)).x
    assert abs(got_mu[0] - ref[0]) < 1e-3 and abs(np.log(got_tau[0]) - ref[1]) < 2e-3
    assert abs(ref[0] - mu) < 0.6  # and the estimate is near the truth


def test_population_prior_options_are_validated():
    df, _ = _short(n_mice=2, tps=20)
    with pytest.raises(ValueError, match="population: 'eta' is not a free hyperparameter"):
        ss.fit_noisy(df, free=("sigma_U",), population=("eta",), start="defaults")
    with pytest.raises(ValueError, match="population: a population prior needs at least 3 mice, got 2"):
        ss.fit_noisy(df, free=("sigma_U",), population=("sigma_U",), start="defaults")


def test_default_fit_moves_the_noise_off_its_start():
    """With the default free set (eta from the deterministic fit) the evidence search fits the noise: the
    objective rises from its start and the sigmas leave their prior centres (it used to stop at once)."""
    df, _ = _short(n_mice=2, n_sessions=3, tps=80, sigma_a=0.05, sigma_U=0.05, sigma_day_a=0.3, sigma_day_U=0.3)
    fit = ss.fit_noisy(df, max_outer=6, network_kw=dict(n_restarts=2))
    assert "eta" not in ss.DEFAULT_FREE
    assert fit.history[-1]["objective_total"] > fit.history[0]["objective_total"] + 1.0
    # every mouse's search moved: its evidence rose and a sigma left its start by > 10 % (a stalled search
    # leaves both exactly where they were; how far the optimum lies depends on the network start's fit)
    assert (np.array(fit.history[-1]["evidence"]) > np.array(fit.history[0]["evidence"])).all()
    names = ("sigma_a", "sigma_U", "sigma_day_a", "sigma_day_U")
    moved = np.column_stack([np.abs(np.log(fit.params[n]) - np.log(ss.HYPERS[n].default)) for n in names])
    assert (moved.max(1) > 0.1).all(), moved


def test_fit_noisy_table_and_errors():
    df, _ = _short(n_mice=2, tps=20)
    fit = ss.fit_noisy(df, free=("sigma_U",), max_outer=1, start="defaults")
    assert list(fit.params["mouse"]) == sorted(df["mouse"].unique())
    assert {"log_evidence", "eta", "sigma_U", "converged"} <= set(fit.params)
    assert len(fit.weights) == len(df) and {"U_RR", "U_RR_lo", "U_RR_hi"} <= set(fit.weights)
    w = fit.weights
    assert (w["U_RR_lo"] <= w["U_RR"]).all() and (w["U_RR"] <= w["U_RR_hi"]).all()
    from mouse_rl.fit.statespace_plots import model_slopes, plot_noisy_weights

    fig = plot_noisy_weights(fit, fit.params["mouse"][0], n_draws=20)
    assert len(fig.axes) == 3
    sl = model_slopes(fit, fit.params["mouse"][1], n_draws=20)
    assert (sl["left_slope_lo"] <= sl["left_slope_hi"]).all() and len(sl["bias"]) == 40
    with pytest.raises(ValueError, match="mouse: 'nobody' not in the fit"):
        model_slopes(fit, "nobody")
    with pytest.raises(ValueError, match="hyperparameter: unknown name 'sigma'"):
        ss.fit_noisy(df, free=("sigma",))
    with pytest.raises(ValueError, match="eta: must lie in"):
        ss.fit_noisy(df, fixed=dict(eta=-1.0))
    with pytest.raises(ValueError, match="score_rows"):
        ss.fit_noisy(df, score_rows=np.ones(3, bool))


def test_cli_fit_noisy_network(tmp_path):
    from mouse_rl.cli import main
    from mouse_rl.simulate import simulate_cohort

    trials = simulate_cohort(2, 2, 60, seed=8, dtype=torch.float64).trials
    data = tmp_path / "cohort.parquet"
    trials.to_parquet(data)
    out = tmp_path / "noisy"
    assert main(["fit", str(data), "--out", str(out), "--model", "noisy-network", "--restarts", "1", "--quiet"]) == 0
    params = pd.read_csv(out / "noisy_params.csv")
    assert sorted(params["mouse"]) == sorted(trials["mouse"].unique())
    assert np.isfinite(params["log_evidence"]).all()
    assert (out / "noisy_weights.parquet").exists() and len(list((out / "plots").glob("*_noisy.png"))) == 2
    assert main(["fit", str(data), "--out", str(tmp_path / "bad"), "--model", "noisy-network", "--cv", "time"]) == 2
    assert main(["fit", str(data), "--out", str(tmp_path / "bad"), "--model", "noisy-network", "--fit-skew"]) == 2
    for ignored in (["--max-iter", "5"], ["--ml"], ["--no-lapse"], ["--eta", "0.01"], ["--device", "cpu", "--samples", "3"]):
        assert main(["fit", str(data), "--out", str(tmp_path / "bad"), "--model", "noisy-network", *ignored]) == 2
    lin = tmp_path / "linear"  # the linear-noise variant with frozen gains
    assert main(["fit", str(data), "--out", str(lin), "--model", "noisy-network", "--restarts", "1", "--quiet",
                 "--noise", "linear", "--frozen", "a", "--encoding", "magnitude", "--sigma-per", "column",
                 "--no-plots"]) == 0
    w = pd.read_parquet(lin / "noisy_weights.parquet")
    lin_params = pd.read_csv(lin / "noisy_params.csv")
    assert np.isfinite(lin_params["log_evidence"]).all() and "sigma_U_stimL" in lin_params.columns
    assert (w.groupby("mouse")[["a_L", "a_R", "a_b"]].nunique() == 1).all().all()  # frozen: one value per mouse
    two = tmp_path / "two_starts"  # the README's best configuration: two starts, the higher evidence kept
    assert main(["fit", str(data), "--out", str(two), "--model", "noisy-network", "--restarts", "1", "--quiet",
                 "--noise", "linear", "--frozen", "a", "--encoding", "magnitude", "--sigma-per", "column",
                 "--noisy-start", "network", "psytrack", "--give-up", "3", "10", "--no-plots"]) == 0
    two_params = pd.read_csv(two / "noisy_params.csv")
    assert set(two_params["start"]) <= {"network", "psytrack"}
    assert (two_params["log_evidence"].to_numpy() >= lin_params["log_evidence"].to_numpy() - 1e-6).all()
    for bad in (["--give-up", "2.5", "1", "--noisy-start", "network", "psytrack"], ["--give-up", "3", "10"],
                ["--noisy-start", "network", "network"], ["--noisy-population", "eta"],
                ["--noisy-population", "sigma_U", "--sigma-per", "column"]):
        assert main(["fit", str(data), "--out", str(tmp_path / "bad"), "--model", "noisy-network", *bad]) == 2


def test_cli_fit_noisy_population_prior(tmp_path, capsys):
    """--noisy-population runs end to end and reports the population prior (its effect on recovery is
    tested on the library: test_recovery_of_eta_and_sigma_and_band_coverage)."""
    from mouse_rl.cli import main

    df, _ = _short(n_mice=3, n_sessions=2, tps=40, seed=5)
    data = tmp_path / "cohort.parquet"
    df.to_parquet(data)
    assert main(["fit", str(data), "--model", "noisy-network", "--restarts", "1", "--quiet", "--no-plots",
                 "--noise", "linear", "--frozen", "a", "--out", str(tmp_path / "pop"),
                 "--noisy-population", "beta"]) == 0
    assert "population prior of beta: mean" in capsys.readouterr().out
    pop = pd.read_csv(tmp_path / "pop" / "noisy_params.csv")
    assert len(pop) == 3 and np.isfinite(pop["log_evidence"]).all()


def test_non_finite_evidence_is_never_converged(monkeypatch):
    df, _ = _short(n_mice=2, tps=20)
    real = ss.log_evidence

    def broken(data, hp, score, mode, inverse=False):  # the Laplace Hessian of mouse 0 fails
        E, sol = real(data, hp, score, mode, inverse)
        return torch.where(torch.arange(len(E)) == 0, torch.nan, E), sol

    monkeypatch.setattr(ss, "log_evidence", broken)
    fit = ss.fit_noisy(df, free=(), start="defaults")
    assert list(fit.params["converged"]) == [False, True]
    assert fit.params["status"][0].startswith("evidence not finite") and fit.params["status"][1] == "converged"


def test_unconverged_map_weights_are_named_without_a_search(monkeypatch):
    """At given hyperparameters (no evidence search) a mouse is unconverged when the Newton search for its MAP
    weights is: the status names that search, not the evidence search's iteration limit."""
    df, _ = _short(n_mice=2, tps=20)
    real = ss.find_mode
    monkeypatch.setattr(ss, "find_mode", lambda *a, **kw: real(*a, **dict(kw, max_iter=1)))
    fit = ss.fit_noisy(df, free=(), start="defaults")
    assert not fit.params["converged"].any()
    assert (fit.params["status"] == "MAP weights unconverged after 1 Newton iterations (decrement above "
            "tolerance)").all()


def test_linear_noise_frozen_group_gradient_and_pinning():
    """noise="linear", frozen=("a",): the frozen gains sit at w_init (also when w0 / k change), carry no
    prior terms, and the exact evidence gradient (incl. through w0, which moves the pinned gains) matches
    finite differences."""
    df, _ = ss.simulate_noisy(2, dict(eta=0.01, sigma_U=0.05, sigma_init=0.3), n_sessions=2, trials_per_session=20,
                              seed=5, noise="linear", frozen=("a",))
    data = ss.pack(df, noise="linear", frozen=("a",))
    hs = ss.HyperSet(2, ("beta", "sigma_U", "sigma_day_U", "w0", "s0"), dict(eta=0.01, sigma_U=0.05))
    score = torch.ones(len(df), dtype=torch.bool)
    u = hs.u.clone()
    mode = ss.find_mode(data, hs.natural(u), score, tol=1e-16, max_iter=12)
    hp = hs.natural(u)
    torch.testing.assert_close(mode.z[:, :3], ss._init_mean(hp, "linear")[data.mouse, :3], rtol=0, atol=0)
    assert not bool(ss.pack(df).latent is not None)  # default: every coordinate latent
    v = torch.randn(u.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact, fd = evidence_slopes(data, hs, score, v, tol=1e-16, max_iter=12)
    torch.testing.assert_close(exact, fd, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="frozen: unknown weight group 'b'"):
        ss.pack(df, frozen=("b",))
    with pytest.raises(ValueError, match="at least one weight group"):
        ss.pack(df, frozen=("a", "U"))
    with pytest.raises(ValueError, match="noise: must be one of"):
        ss.pack(df, noise="relu")


def test_newton_search_raises_the_objective():
    """The trust-region Newton search climbs monotonically and ends at least as high as BFGS (measured:
    -92.3227 in 2 iterations vs -92.3240 in 3, from -92.6943)."""
    df, _ = _short(n_mice=2, n_sessions=2, tps=40, sigma_a=0.05, sigma_U=0.05)
    kw = dict(free=("beta", "sigma_a", "sigma_U"), start="defaults", max_outer=4)
    fit = ss.fit_noisy(df, search="newton", **kw)
    obj = [h["objective_total"] for h in fit.history]
    assert all(b >= a - 1e-9 for a, b in zip(obj, obj[1:])), obj
    assert obj[-1] > obj[0] + 0.3, obj
    ref = ss.fit_noisy(df, search="bfgs", **kw).history[-1]["objective_total"]
    assert obj[-1] >= ref - 1e-3, (obj, ref)
    with pytest.raises(ValueError, match="search: must be one of"):
        ss.fit_noisy(df, search="adam")


def _affine_case(n_mice=2, tps=15, lapse=0.1, seed=5, **hyper):
    """Linear noise, frozen gains, magnitude encoding: the transition is affine and the log-odds linear."""
    hyper = dict(dict(eta=0.02, sigma_U=0.05, sigma_init=0.3, lapse=lapse, w0=0.7, k=0.9), **hyper)
    df, z = ss.simulate_noisy(n_mice, hyper, n_sessions=2, trials_per_session=tps, seed=seed, noise="linear",
                              frozen=("a",), encoding="magnitude", contrasts=(-1.0, -0.25, 0.0, 0.25, 1.0))
    return df, z, hyper


def test_affine_fast_exact_hessian_matches_dense():
    """noise="linear", frozen=("a",): the exact Hessian by one Hessian-vector product (rank-one likelihood
    block, no second derivatives of the rule) equals the dense autograd Hessian, with a lapse."""
    df, _, hyper = _affine_case()
    data = ss.pack(df, encoding="magnitude", noise="linear", frozen=("a",))
    assert data.affine and not ss.pack(df).affine and not ss.pack(df, noise="linear").affine
    hp = ss.HyperSet(2, (), hyper).natural()
    score = torch.ones(len(df), dtype=torch.bool)
    score[::4] = False
    z = ss.rollout(data, hp) + 0.3 * torch.randn(len(df), 9, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64)
    De, Oe = ss.exact_hessian_blocks(data, z, hp, score)

    def L(flat):
        return ss.joint_terms(data, flat.reshape(-1, 9), hp, score, graph=True).L.sum()

    H = -torch.autograd.functional.hessian(L, z.reshape(-1))
    lat = data.latent.repeat(len(df))
    H = H * (lat[:, None] & lat[None, :]).to(H.dtype) + torch.diag((~lat).to(H.dtype))  # latent block only
    torch.testing.assert_close(dense(De[None], Oe[None, 1:])[0], H)
    t = ss.joint_terms(data, z, hp, score, order=2)  # with a lapse the exact Hessian is not Gauss-Newton's
    assert float((De - t.D).abs().max()) > 1e-3


def test_affine_jacobian_cache_follows_eta():
    """The cached Jacobian of the affine rule is recomputed when eta changes (else the blocks would be stale)."""
    df, _, hyper = _affine_case(tps=10)
    data = ss.pack(df, encoding="magnitude", noise="linear", frozen=("a",))
    score = torch.ones(len(df), dtype=torch.bool)
    hp1 = ss.HyperSet(2, (), hyper).natural()
    hp2 = ss.HyperSet(2, (), dict(hyper, eta=0.2)).natural()
    z = ss.rollout(data, hp1)
    ss.joint_terms(data, z, hp1, score, order=2)  # fills the cache at eta = 0.02
    t2 = ss.joint_terms(data, z, hp2, score, order=2)
    fresh = ss.joint_terms(ss.pack(df, encoding="magnitude", noise="linear", frozen=("a",)), z, hp2, score, order=2)
    torch.testing.assert_close(t2.O, fresh.O, rtol=0, atol=0)
    torch.testing.assert_close(t2.D, fresh.D, rtol=0, atol=0)
    t1 = ss.joint_terms(data, z, hp1, score, order=2)
    assert float((t1.O - t2.O).abs().max()) > 1e-3


def test_probit_predictive_matches_quadrature():
    """Held-out predictive by the probit approximation against Gauss-Hermite quadrature of
    E[P(choice)] under the trial's Gaussian log-odds (exactly Gaussian here: linear in the state)."""
    df, _, hyper = _affine_case(n_mice=1, tps=40, sigma_U=0.2, sigma_init=1.0)
    score = np.ones(len(df), bool)
    score[::3] = False  # held-out trials: wide posteriors
    fit = ss.fit_noisy(df, free=(), fixed=hyper, score_rows=score, start="defaults", encoding="magnitude",
                       noise="linear", frozen=("a",))
    data, hp = fit.data, fit.hyper.natural()
    beta, lapse = hp["beta"][0], hp["lapse"][0]
    a = fit.z[:, :3]  # frozen gains
    v = torch.zeros(len(df), 9, dtype=torch.float64)  # d log-odds / dz: beta a_j x_j (+ on U_R, - on U_L)
    v[:, 6:] = beta * a * data.x
    v[:, 3:6] = -beta * a * data.x
    mu = (v[:, 3:] * fit.z[:, 3:]).sum(-1)
    s = ((v[:, None, :] @ fit.cov @ v[:, :, None])[:, 0, 0]).sqrt()
    assert float(s[~torch.as_tensor(score)].min()) > 0.3  # a real average, not a point
    x, w = np.polynomial.hermite_e.hermegauss(80)
    ell = mu.numpy()[:, None] + s.numpy()[:, None] * x[None]
    pr = 1 / (1 + np.exp(-ell))
    pr = float(lapse) / 2 + (1 - float(lapse)) * pr
    p_ch = np.where(df["choice"].to_numpy()[:, None] == 1, pr, 1 - pr) @ w / w.sum()
    probit = np.exp(ss.trial_logp(fit, "probit").numpy())
    np.testing.assert_allclose(probit, p_ch, rtol=0, atol=0.01)  # the probit approximation's known accuracy
    assert np.abs(np.exp(ss.trial_logp(fit, "plugin").numpy()) - p_ch).max() > 0.02  # the average matters
    with pytest.raises(ValueError, match="predictive: must be one of"):
        ss.trial_logp(fit, "mean")


def test_column_sigmas_default_free_and_gradient():
    """sigma_per="column": the default free set, the noise sds per column of U, and the exact evidence
    gradient against finite differences."""
    assert ss.default_free() == ss.DEFAULT_FREE
    assert ss.default_free(("a",), "column") == ("beta", *ss.COLUMN_SIGMAS, *ss.COLUMN_DAY_SIGMAS)
    with pytest.raises(ValueError, match="sigma_per: must be one of"):
        ss.default_free((), "row")
    hyper = dict(sigma_U_stimL=0.02, sigma_U_stimR=0.05, sigma_U_bias=0.1, sigma_day_U_stimL=0.1,
                 sigma_day_U_stimR=0.3, sigma_day_U_bias=0.5)
    df, _, base = _affine_case(tps=20, **hyper)
    data = ss.pack(df, encoding="magnitude", noise="linear", frozen=("a",), sigma_per="column")
    hs = ss.HyperSet(2, ss.default_free(("a",), "column"), base)
    hp = hs.natural()
    sd = ss.noise_sds(hp, torch.tensor([0]), "column")[0]
    torch.testing.assert_close(sd[3:], torch.tensor([0.02, 0.05, 0.1] * 2, dtype=torch.float64))
    score = torch.ones(len(df), dtype=torch.bool)
    score[::5] = False
    v = torch.randn(hs.u.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact, fd = evidence_slopes(data, hs, score, v, tol=1e-16, max_iter=12)
    torch.testing.assert_close(exact, fd, rtol=1e-4, atol=1e-5)


def _search_case():
    """Three affine mice (per-column sds) whose evidence searches stop at different iterations."""
    df, _, hyper = _affine_case(n_mice=3, tps=60, lapse=0.05)
    kw = dict(noise="linear", frozen=("a",), encoding="magnitude", sigma_per="column", start="defaults",
              max_outer=12, fixed=dict(eta=hyper["eta"], w0=hyper["w0"], k=hyper["k"], lapse=hyper["lapse"]))
    return df, kw


def _numeric(params):
    return params.drop(columns=["mouse", "start", "status", "fit_seconds"]).to_numpy(float)


def test_active_set_search_equals_the_full_search_and_one_mouse_alone():
    """The active-set BFGS (stopped mice no longer solved) gives exactly the full search's result, which
    solves every mouse on every iteration (a stopped mouse takes zero steps there); and a mouse fitted alone
    gets what it gets in the batch (the per-mouse arithmetic is independent of the batch)."""
    df, kw = _search_case()
    act = ss.fit_noisy(df, active_set=True, **kw)
    full = ss.fit_noisy(df, active_set=False, **kw)
    done = [h["n_done"] for h in act.history]
    assert 0 < done[len(done) // 2] < 3, done  # some mice stopped well before the others: the active set was used
    np.testing.assert_array_equal(_numeric(act.params), _numeric(full.params))
    torch.testing.assert_close(act.z, full.z, rtol=0, atol=0)
    torch.testing.assert_close(act.cov, full.cov, rtol=0, atol=0)
    for b in (int(np.argmin(act.params["converged"].to_numpy())),):  # a mouse that searches to the end
        mouse = act.params["mouse"].iloc[b]
        alone = ss.fit_noisy(df[df["mouse"] == mouse], **kw)
        a, m = alone.params.iloc[0], act.params.iloc[b]
        for name in ("log_evidence", "loglik", "beta", *ss.COLUMN_SIGMAS, *ss.COLUMN_DAY_SIGMAS):
            assert a[name] == pytest.approx(m[name], rel=1e-9, abs=1e-9), (mouse, name)
        assert a["converged"] == m["converged"]


def test_several_starts_keep_the_higher_evidence_per_mouse():
    """start=("defaults", "psytrack"): per mouse, the search that ends at the higher Laplace evidence is kept,
    with that start's fixed hyperparameters (eta = 0 and no lapse for the PsyTrack-like start); a give-up margin
    no mouse reaches changes nothing."""
    df, kw = _search_case()
    kw["fixed"] = {k: v for k, v in kw["fixed"].items() if k not in ("eta", "lapse")}  # each start its own
    kw.update(max_outer=6)
    one = {s: ss.fit_noisy(df, **dict(kw, start=s)) for s in ("defaults", "psytrack")}
    both = ss.fit_noisy(df, **dict(kw, start=("defaults", "psytrack")))
    E = np.column_stack([one[s].params["log_evidence"] for s in ("defaults", "psytrack")])
    np.testing.assert_allclose(both.params["log_evidence"], E.max(1), rtol=1e-10)
    winner = np.where(E[:, 1] > E[:, 0], "psytrack", "defaults")
    assert list(both.params["start"]) == list(winner)
    assert set(winner) == {"defaults", "psytrack"}  # each start wins a mouse here: the merge is exercised
    for b, s in enumerate(winner):
        for name in ("eta", "lapse", "beta", "sigma_U_bias", "w0"):
            assert both.params[name].iloc[b] == pytest.approx(one[s].params[name].iloc[b], rel=1e-9, abs=1e-12)
        rows = (both.data.mouse == b)
        torch.testing.assert_close(both.z[rows], one[s].z[rows], rtol=1e-8, atol=1e-8)
    assert (one["psytrack"].params["eta"] == 0).all() and (one["psytrack"].params["lapse"] == 0).all()
    lazy = ss.fit_noisy(df, **dict(kw, start=("defaults", "psytrack"), give_up=(1, 1e6)))
    np.testing.assert_array_equal(_numeric(lazy.params), _numeric(both.params))
    with pytest.raises(ValueError, match="start: must be one of"):
        ss.fit_noisy(df, **dict(kw, start=("defaults", "defaults")))


def test_affine_transition_as_c_plus_Jz_matches_the_rule():
    """Affine model: the cached map c + J z (joint terms, rollout) equals the rule itself, which runs when eta
    carries a graph (the cache is bypassed), and a subset of mice carries the cache by row."""
    df, _, hyper = _affine_case(n_mice=3, tps=20)
    data = ss.pack(df, encoding="magnitude", noise="linear", frozen=("a",))
    hp = ss.HyperSet(3, (), hyper).natural()
    hp_rule = dict(hp, eta=hp["eta"].clone().requires_grad_(True))
    assert ss._cacheable(data, hp) and not ss._cacheable(data, hp_rule)
    z = ss.rollout(data, hp)
    torch.testing.assert_close(z, ss.rollout(data, hp_rule), rtol=0, atol=1e-12)
    score = torch.ones(len(df), dtype=torch.bool)
    zz = z + 0.2 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a, b = ss.joint_terms(data, zz, hp, score, order=2), ss.joint_terms(data, zz, hp_rule, score, order=2)
    torch.testing.assert_close(a.L, b.L.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(a.g, b.g.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a.O, b.O.detach(), rtol=1e-12, atol=1e-12)
    idx = torch.tensor([0, 2])
    sub, rows = ss._subset(data, idx)
    fresh = ss.pack(df[df["mouse"].isin([data.mice[0], data.mice[2]])], encoding="magnitude", noise="linear",
                    frozen=("a",))
    hs_sub = ss.HyperSet(3, (), hyper).subset(idx).natural()
    t_sub, t_fresh = ss.joint_terms(sub, zz[rows], hs_sub, score[rows], 2), \
        ss.joint_terms(fresh, zz[rows], hs_sub, score[rows], 2)
    assert "J" in sub.cache
    torch.testing.assert_close(t_sub.D, t_fresh.D, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t_sub.L, t_fresh.L, rtol=1e-12, atol=1e-12)


def test_latent_solve_is_the_full_solve_bit_for_bit():
    """The solve on the latent coordinates only (a frozen group cut out) equals the full 9 x 9 solve bit for
    bit on the CPU path: step, log det, covariances, also for a chain that fails (no positive definite
    factor) and for latent coordinates that are not one block."""
    g = torch.Generator().manual_seed(0)
    starts = np.array([0, 10, 30, 37])
    N = starts[-1]
    R = torch.randn(N, 9, 9, generator=g, dtype=torch.float64)
    D0 = R @ R.mT + 4 * torch.eye(9, dtype=torch.float64)
    O = 0.4 * torch.randn(N, 9, 9, generator=g, dtype=torch.float64)
    mouse = torch.repeat_interleave(torch.arange(3), torch.as_tensor(np.diff(starts)))
    for lat in (ss._latent_mask(("a",)), ss._latent_mask(("U",)),
                torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0], dtype=torch.bool)):
        data = ss.Packed(mice=["a", "b", "c"], starts=starts, mouse=mouse, x=None, choice=None, reward=None,
                         contrast=None, session=None, trans=None, day=None, latent=lat)
        D = D0.clone()
        j = int(torch.nonzero(lat)[0])
        D[33, j, j] = -50.0  # the third chain is not positive definite
        Dm, Om = ss._mask_blocks(data, D, O)
        b = torch.randn(N, 9, generator=g, dtype=torch.float64) * lat
        ours, full = ss._solve(data, Dm, Om, b, inverse=True), solve_chains(Dm, Om, starts, b, inverse=True)
        assert ours.ok.tolist() == full.ok.tolist() == [True, True, False]
        for name in ("x", "cov", "cov_off"):
            torch.testing.assert_close(getattr(ours, name), getattr(full, name), rtol=0, atol=0)
        torch.testing.assert_close(ours.logdet, full.logdet, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("lapse", [0.0, 0.08])
def test_affine_closed_form_terms_and_gradient_match_autograd(lapse):
    """Affine model: the closed-form joint terms (L, gradient, Gauss-Newton and exact blocks) and evidence
    gradient equal the autograd path through the rule and the policy (taken when a hyperparameter carries a
    graph, or with ``closed_form=False``), with and without a lapse, also with the lapse, s0 and sigma_init
    free; and a changed noise sd is not served from the cached prior blocks."""
    hyper = dict(eta=0.02, sigma_init=0.3, lapse=lapse, w0=0.7, k=0.9, sigma_U_stimL=0.02, sigma_U_stimR=0.05,
                 sigma_U_bias=0.1, sigma_day_U_stimL=0.1, sigma_day_U_stimR=0.3, sigma_day_U_bias=0.5)
    kw = dict(noise="linear", frozen=("a",), encoding="magnitude", sigma_per="column")
    df, _ = ss.simulate_noisy(3, hyper, n_sessions=3, trials_per_session=30, seed=4, **kw)
    data = ss.pack(df, **kw)
    free = ss.default_free(("a",), "column") + (("lapse", "s0", "sigma_init") if lapse else ())
    hs = ss.HyperSet(3, free, hyper)
    hp = hs.natural()
    score = torch.ones(len(df), dtype=torch.bool)
    score[::5] = False
    z = ss.rollout(data, hp) + 0.3 * torch.randn(len(df), 9, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64)
    fast = ss.joint_terms(data, z, hp, score, order=2)
    assert fast.lik is not None  # the closed form was taken
    hp_graph = dict(hp, beta=hp["beta"].clone().requires_grad_(True))
    slow = ss.joint_terms(data, z, hp_graph, score, order=2)
    assert slow.lik is None
    for name in ("L", "g", "D", "O"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name).detach(), rtol=1e-12, atol=1e-11)
    De, Oe = ss.exact_hessian_blocks(data, z, hp, score, base=fast)
    Ds, Os = ss.exact_hessian_blocks(data, z, hp_graph, score, base=slow)
    torch.testing.assert_close(De, Ds, rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(Oe, Os, rtol=0, atol=0)
    if lapse:
        assert float((De - fast.D).abs().max()) > 1e-3  # with a lapse the exact blocks are not Gauss-Newton's
    mode = ss.find_mode(data, hp, score, tol=1e-14, max_iter=20)
    for exact in (False, True):
        g1, E1 = ss.evidence_gradient(data, hs, hs.u, score, mode, exact=exact)
        g2, E2 = ss.evidence_gradient(data, hs, hs.u, score, mode, exact=exact, closed_form=False)
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(E1, E2, rtol=0, atol=0)
    louder = dict(hp, sigma_U_bias=hp["sigma_U_bias"] * 2)  # the cached prior blocks follow the noise sds
    fresh = ss.joint_terms(ss.pack(df, **kw), z, louder, score, order=2)
    cached = ss.joint_terms(data, z, louder, score, order=2)
    torch.testing.assert_close(cached.D, fresh.D, rtol=0, atol=0)
    torch.testing.assert_close(cached.O, fresh.O, rtol=0, atol=0)
    assert float((cached.D - fast.D).abs().max()) > 1e-3


def test_lanes_make_a_trial_value_independent_of_its_batch_position():
    """Torch's sigmoid / logaddexp / log1p round differently by position in a tensor; through ``_lanes`` a
    value depends only on its input, so a mouse gets the same closed-form terms in any batch."""
    x = torch.randn(777, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
    p = torch.rand(777, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.4
    for fn, args in ((torch.sigmoid, (x,)), (torch.logaddexp, (x, 0.5 * x)), (torch.log1p, (-p,))):
        full = ss._lanes(fn, *args)
        for a, n in ((1, 50), (130, 333), (500, 277), (3, 5)):
            part = ss._lanes(fn, *(v[a:a + n] for v in args))
            torch.testing.assert_close(part, full[a:a + n], rtol=0, atol=0)


def test_closed_form_fit_equals_the_autograd_fit():
    """fit_noisy(closed_form=True) (closed-form affine terms, latent-only solves) gives the autograd code
    path's fit (closed_form=False) to rounding: the same evidence search, hyperparameters, modes and bands;
    with two starts and a give-up margin (the recommended setting) and one mouse whose search stops early."""
    df, kw = _search_case()
    kw = dict(kw, start=("defaults", "psytrack"), give_up=(2, 5.0), max_outer=8)
    kw["fixed"] = {k: v for k, v in kw["fixed"].items() if k not in ("eta", "lapse")}
    fast = ss.fit_noisy(df, closed_form=True, **kw)
    slow = ss.fit_noisy(df, closed_form=False, **kw)
    assert fast.data.closed_form and not slow.data.closed_form
    assert list(fast.params["start"]) == list(slow.params["start"])
    np.testing.assert_allclose(_numeric(fast.params), _numeric(slow.params), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(fast.z, slow.z, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fast.cov, slow.cov, rtol=1e-7, atol=1e-11)
    assert [h["n_done"] for h in fast.history] == [h["n_done"] for h in slow.history]
    with pytest.raises(ValueError, match="closed_form: must be True or False"):
        ss.fit_noisy(df, closed_form="yes", **kw)


def test_damped_step_of_a_mouse_does_not_depend_on_its_batch_partner():
    df, _ = _short(n_mice=2, tps=15)
    both = ss.pack(df)
    first = df["mouse"] == sorted(df["mouse"].unique())[0]
    alone = ss.pack(df[first].reset_index(drop=True))
    n0 = len(alone.mouse)
    D, O, g, _ = _random_chain([len(both.mouse)], ss.D_STATE, seed=3)
    D[:n0] -= 12 * torch.eye(ss.D_STATE, dtype=torch.float64)  # mouse 0: indefinite, needs the damping
    D[n0:] *= 1e6  # its partner: positive definite, on another scale
    step_both = ss._damped_step(both, D, O, g)
    step_alone = ss._damped_step(alone, D[:n0], O[:n0], g[:n0])
    assert torch.isfinite(step_alone).all() and step_alone.abs().sum() > 0
    torch.testing.assert_close(step_both[:n0], step_alone, rtol=1e-12, atol=0)
