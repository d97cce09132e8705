"""Fitting k, the constant channel's initial cortical gain (an option: MODEL.md fixes k = 1)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mouse_rl.fit import DEFAULT_FREE, fit_mice
from mouse_rl.params import ModelParams
from mouse_rl.simulate import simulate_cohort

#: Two mice per k, one left- and one right-biased at the start (b_L, b_R), so the bias channel matters.
K = np.array([0.25, 0.25, 1.0, 1.0, 4.0, 4.0])


@pytest.fixture(scope="module")
def k_cohort():
    p = ModelParams(eta=0.02, beta=8.0, w0=0.1, s0=0.25, lapse=0.03, k=K,
                    b_L=np.tile([0.4, 0.1], 3), b_R=np.tile([0.1, 0.4], 3))
    return simulate_cohort(len(K), 10, 200, p, seed=3, dtype=torch.float64)


def test_k_is_recovered_in_order(k_cohort, monkeypatch):
    """k sets both the start of the bias values (b k) and their learning rate (eta a_b^2): from 10 sessions
    of 200 trials the fit orders the three k's and finds the large one; the prior (log k ~ N(0, 1)) pulls the
    small one towards 1. The fit is nested: never below the fit with k fixed (less k's prior normaliser,
    0.92 nats) nor below the search with k free alone. 300 iterations: with the default 100, sim0002 (k = 1,
    the flattest: se 0.9) stops at max_iter from the warm start and is flagged not converged."""
    import mouse_rl.fit.fitting as fitting

    res = fit_mice(k_cohort.trials, n_restarts=3, max_iter=300, seed=0, free=(*DEFAULT_FREE, "k"), per_trial=False)
    p = res.params.sort_values("mouse")
    est = p["k"].to_numpy()
    assert "se_k" in p and np.isfinite(p["se_k"]).all()
    assert p["converged"].all()
    small, one, large = est[:2].mean(), est[2:4].mean(), est[4:].mean()
    assert small < one < large, est
    assert np.all(np.abs(np.log(est[4:] / 4.0)) < np.log(1.25)), est
    fixed_k = fit_mice(k_cohort.trials, n_restarts=3, max_iter=300, seed=0, per_trial=False).params.sort_values("mouse")
    assert fixed_k["k"].eq(1.0).all()
    assert np.all(p["log_posterior"].to_numpy() >= fixed_k["log_posterior"].to_numpy() - 0.92 - 1e-6)
    monkeypatch.setattr(fitting, "NESTED_STARTS", {})  # the full search alone
    full = fit_mice(k_cohort.trials, n_restarts=3, max_iter=300, seed=0, free=(*DEFAULT_FREE, "k"), per_trial=False)
    assert np.all(p["log_posterior"].to_numpy() >= full.params.sort_values("mouse")["log_posterior"].to_numpy() - 1e-6)


@pytest.mark.parametrize("flag,name", [("--fit-k", "k"), ("--fit-skew", "stim_skew"), ("--fit-crosstalk", "crosstalk")])
def test_cli_fit_option_then_check(k_cohort, tmp_path, capsys, flag, name):
    """``mouse-rl fit --fit-k`` / ``--fit-skew`` / ``--fit-crosstalk`` frees the option (written, with its standard error; its fixed
    value kept in fit_options.json); ``mouse-rl check`` runs the copies with each mouse's value; a fixed value
    beside the flag, or the flag with another fit, is refused."""
    from mouse_rl.cli import main
    from mouse_rl.params import PARAMS

    path = tmp_path / "trials.parquet"
    k_cohort.trials[k_cohort.trials.mouse.isin(["sim0000", "sim0005"])][
        ["mouse", "session", "trial", "signed_contrast", "choice", "reward"]].to_parquet(path)
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--out", str(out), "--restarts", "1", "--max-iter", "20", flag,
                 "--quiet", "--no-plots"]) == 0
    opts = json.loads((out / "fit_options.json").read_text())
    assert name in opts["free"] and name not in DEFAULT_FREE and opts["fixed"][name] == PARAMS[name].default
    table = pd.read_parquet(out / "fit_results.parquet")
    assert f"se_{name}" in table and (table[name] != PARAMS[name].default).all()
    assert name in capsys.readouterr().out.splitlines()[0].split()  # the printed table's header shows it
    assert main(["check", str(out), "--copies", "4", "--no-plots"]) == 0
    assert "sessions inside the copies' 5-95% band" in capsys.readouterr().out
    fixed_flag = PARAMS[name].flag
    assert main(["fit", str(path), "--out", str(tmp_path / "x"), flag, fixed_flag, "2", "--quiet"]) == 2
    assert fixed_flag in capsys.readouterr().err
    assert main(["fit", str(path), "--out", str(tmp_path / "y"), flag, "--model", "noisy-network"]) == 2
    assert flag in capsys.readouterr().err


def test_warm_starts_join_the_design_and_are_validated(k_cohort):
    """``fit_batch(warm=...)``: per-mouse starts beside the design; a start at a mouse's optimum stays its
    best (Newton only descends); a wrongly shaped array is refused, naming ``warm``."""
    from mouse_rl.fit.batch import make_batch
    from mouse_rl.fit.fitting import fit_batch, make_transform

    batch = make_batch(k_cohort.trials[k_cohort.trials.mouse.isin(["sim0000", "sim0001"])], dtype=torch.float64)
    tr = make_transform()
    first = fit_batch(batch, tr, n_restarts=2, max_iter=300, seed=0)
    opt = first.u.detach().numpy()
    again = fit_batch(batch, tr, n_restarts=1, max_iter=300, seed=5, n_hops=0, warm=opt[None])
    assert again.nll_all.shape[0] == 2  # one design start and the warm one
    np.testing.assert_array_less(np.asarray(again.nll), np.asarray(first.nll) + 1e-6)
    with pytest.raises(ValueError, match="warm"):
        fit_batch(batch, tr, n_restarts=2, seed=0, warm=opt)
    with pytest.raises(ValueError, match="warm"):
        fit_batch(batch, tr, n_restarts=2, method="lbfgs", warm=opt[None])
