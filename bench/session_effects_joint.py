"""Benchmark (a probe): θ refitted with the session effects integrated out, against the two-stage fit.

The session effects (:mod:`mouse_rl.fit.session_effects`) are fitted two-stage: θ by teacher forcing without
them, then their sds with θ held. On mice simulated with the effects that procedure puts 83.8% of sessions in
the copies' band against 88.4% at the truth (``bench/check_calibration.py --session-effects``). This probe asks
whether fitting θ with them helps on the real mice: from the default fit and its two-stage sds, θ is refitted by
L-BFGS-B on the marginal log-likelihood (session effects integrated out, each mouse's sds held) plus the fit's
registry prior, with the gradient from :func:`~mouse_rl.fit.session_effects.marginal_terms` (the marginal's
derivatives in each trial's value, offset and lapse) times the per-trial derivatives of the teacher-forced value
by central differences (step 1e-5 in unconstrained units; one fused-kernel pass per side and parameter); then
the sds are refitted at the new θ (rounds of the two steps: ``--rounds``). The checks (50 copies, point
estimate, check seed 1) compare the two-stage and the refitted θ with their sds. The mice share one L-BFGS-B
run over the sum (a probe, not a per-mouse fit).

Writes ``OUT/summary.json`` and ``OUT/joint_round{R}.csv``.

Usage::

    python bench/session_effects_joint.py --out bench/results/session_effects_joint
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import real_mice

sys.path.insert(0, str(real_mice.ROOT))

CHECK_KEYS = ("session_coverage", "late_slope_inside", "early_bias_inside", "late_bias_inside", "side_match",
              "expected_side_match")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_mice.add_arguments(ap, "bench/results/session_effects_joint")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of (θ step, sds step) (default 1)")
    ap.add_argument("--max-evals", type=int, default=150, help="objective evaluations per θ step (default 150)")
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--check-seed", type=int, default=1)
    args = ap.parse_args(argv)
    real_mice.check_arguments(ap, args)
    if args.rounds < 1 or args.max_evals < 1:
        ap.error(f"--rounds and --max-evals: must be >= 1, got {args.rounds} and {args.max_evals}")
    if args.copies < 10:
        ap.error(f"--copies: must be >= 10 for 5-95% bands, got {args.copies}")

    import numpy as np
    import pandas as pd
    import torch
    from scipy.optimize import minimize

    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.batch import make_batch
    from mouse_rl.fit.checks import posterior_predictive_check
    from mouse_rl.fit.likelihood import teacher_forced_values
    from mouse_rl.fit.session_effects import fit_session_effects, marginal_terms

    df = real_mice.load(args)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
               "load_before": os.getloadavg(), "copies": args.copies, "check_seed": args.check_seed}
    t0 = time.perf_counter()
    fit = fit_mice(df, per_trial=False)
    summary["fit_seconds"] = time.perf_counter() - t0
    tr = fit.transform
    order = np.argsort(fit.params["mouse"].astype(str).to_numpy(), kind="stable")
    u0, hessian = fit.u[order], fit.hessian[order]
    batch = make_batch(df, tr.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    M, P = u0.shape
    valid, right, session = batch.valid.numpy(), batch.choice.numpy() == 1, batch.session.numpy()
    prior = tr.registry_prior()
    lower, upper = tr.bounds_u()

    def policy(u):
        return teacher_forced_values(batch, tr.params(torch.as_tensor(u, dtype=torch.float64)), tr.fixed.encoding,
                                     tr.fixed.positive)

    def objective(u, bias_sd, gain_sd, h=1e-5):
        """Minus the marginal log-likelihood plus the prior's penalty, per mouse, and its gradient in u."""
        value, offset, lapse = policy(u)
        moved = [(policy(u + h * e), policy(u - h * e)) for e in np.eye(P)]
        f, g = np.zeros(M), np.zeros((M, P))
        for m in range(M):
            k = valid[:, m]
            ll, dv, do, dl = marginal_terms(value[k, m], offset[k, m], right[k, m], session[k, m], lapse[m],
                                            bias_sd[m], gain_sd[m])
            f[m] = -ll
            for j, ((vp, op, lp), (vm, om, lm)) in enumerate(moved):
                g[m, j] = -(dv @ (vp[k, m] - vm[k, m]) + do @ (op[k, m] - om[k, m]) + dl * (lp[m] - lm[m])) / (2 * h)
        fp, gp, _ = prior.penalty(u)
        return f + fp, g + gp

    def params_table(u):
        p = tr.params(torch.as_tensor(u, dtype=torch.float64))
        return pd.DataFrame({"mouse": batch.mice, **{n: getattr(p, n).numpy() for n in p._fields}})

    def check(u, effects):
        ck = posterior_predictive_check(df, u, hessian, tr, args.copies, args.check_seed, parameter_uncertainty=False,
                                        session_bias_sd=effects["session_bias_sd"].to_numpy(),
                                        session_gain_sd=effects["session_gain_sd"].to_numpy())
        return {k: ck.summary[k] for k in CHECK_KEYS}

    t0 = time.perf_counter()
    effects = fit_session_effects(df, params_table(u0))
    summary["two_stage"] = {"effects_seconds": time.perf_counter() - t0,
                            "marginal_loglik": float(effects["loglik"].sum()),
                            "bias_sd_median": float(effects["session_bias_sd"].median()),
                            "gain_sd_median": float(effects["session_gain_sd"].median()), **check(u0, effects)}
    args.out.mkdir(parents=True, exist_ok=True)
    u = u0.copy()
    for r in range(args.rounds):
        t0 = time.perf_counter()
        bias_sd, gain_sd = effects["session_bias_sd"].to_numpy(), effects["session_gain_sd"].to_numpy()

        def total(x):
            f, g = objective(x.reshape(M, P), bias_sd, gain_sd)
            return f.sum(), g.reshape(-1)

        res = minimize(total, u.reshape(-1), jac=True, method="L-BFGS-B",
                       bounds=list(zip(np.tile(lower, M), np.tile(upper, M))),
                       options={"maxfun": args.max_evals, "ftol": 1e-10, "gtol": 1e-4})
        u = res.x.reshape(M, P)
        theta_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        effects = fit_session_effects(df, params_table(u))
        table = params_table(u).merge(effects, on="mouse")
        table.to_csv(args.out / f"joint_round{r}.csv", index=False)
        before = params_table(u0)
        summary[f"joint_round{r}"] = {
            "theta_seconds": theta_seconds, "evaluations": int(res.nfev), "optimizer": str(res.message),
            "effects_seconds": time.perf_counter() - t0, "marginal_loglik": float(effects["loglik"].sum()),
            "bias_sd_median": float(effects["session_bias_sd"].median()),
            "gain_sd_median": float(effects["session_gain_sd"].median()),
            "median_beta_ratio": float(np.median(table["beta"] / before["beta"])), **check(u, effects)}
        print(r, summary[f"joint_round{r}"], flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
