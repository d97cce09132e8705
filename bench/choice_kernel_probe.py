"""Benchmark (a probe): choice history -- a choice kernel on the policy -- on the real mice.

Learning from the mouse's own choices, the fitted network's P(Right) leaves a residual towards the mouse's
previous choice in every mouse, after a rewarded choice, an error and a zero-contrast trial alike. The probe
adds to each trial's logit a choice kernel kappa h_t: h_t = (1 - alpha) h_{t-1} + alpha s_{t-1}, s = +1 for a
Right choice and -1 for a Left one, h = 0 at a session's first trial (kappa in logit units). Two-stage, as the
session effects (:mod:`mouse_rl.fit.session_effects`): theta held at the teacher-forced fit (default, or
``--fit-crosstalk --fit-side-pref``), each mouse's kappa fitted by maximum likelihood for each alpha of the grid,
without and with the session effects (their sds held at the two-stage fit; the marginal of
:func:`~mouse_rl.fit.session_effects.marginal_loglik` with kappa h_t in each trial's offset). Then the
free-running copies (50 per mouse, point estimate, check seed 1) with the session effects, without and with the
kernel (each mouse's kappa at the alpha of the largest gain over the session effects): a copy's kernel follows
its own choices. The copies run the library's reference rollout (:func:`mouse_rl.rollout.rollout`, the one
learning rule) with a choice source that puts the session effects and the kernel on each trial's logit; with
kappa = 0 its choices are the check's (:func:`mouse_rl.fit.checks.free_run`), choice for choice (asserted).

Writes ``OUT/summary.json`` and ``OUT/kappa.csv``; prints the tables.

Usage::

    python bench/choice_kernel_probe.py --out bench/results/choice_kernel/default
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


def choice_kernel(choice, session, valid, alpha: float):
    """``(T, B)`` kernel h of every trial from the choices (0 / 1) before it in its session (0 at a session's
    first trial and on padding)."""
    import numpy as np

    T, B = choice.shape
    h = np.zeros((T, B))
    s = 2.0 * choice - 1.0
    for t in range(1, T):
        same = (session[t] == session[t - 1]) & valid[t]
        h[t] = np.where(same, (1 - alpha) * h[t - 1] + alpha * s[t - 1], 0.0)
    return h


class KernelChoices:
    """A choice source for :func:`mouse_rl.rollout.rollout`: the sampled choices of
    :class:`~mouse_rl.rollout.SampledChoices` with each trial's logit z (the network's beta (Q_R - Q_L) plus the
    side preference ``pref``) replaced by gain_t (z - pref_t) + pref_t + offset_t + kappa h_t, h the copy's own
    choice kernel. ``pref``, ``offset``, ``gain``: ``(T, B)`` tensors; ``lapse``, ``kappa``: ``(B,)``."""

    def __init__(self, seeds, dtype, lapse, kappa, alpha, session, valid, pref, offset, gain):
        import torch

        from mouse_rl.rollout import SampledChoices

        self.sampled = SampledChoices(seeds, dtype)
        self.lapse, self.kappa, self.alpha = lapse, kappa, alpha
        self.session, self.valid, self.pref, self.offset, self.gain = session, valid, pref, offset, gain
        self.h = torch.zeros(len(kappa), dtype=dtype)

    def __call__(self, t, p):
        import torch

        if t > 0:
            self.h = torch.where(self.session[t] == self.session[t - 1], self.h, 0.0)
        q = ((p - 0.5 * self.lapse) / (1 - self.lapse)).clamp(0.0, 1.0)
        z = torch.logit(q)  # the network's logit with the preference, inverted from its P(Right)
        z = self.gain[t] * (z - self.pref[t]) + self.pref[t] + self.offset[t] + self.kappa * self.h
        choice = self.sampled(t, 0.5 * self.lapse + (1 - self.lapse) * torch.sigmoid(z))
        step = (1 - self.alpha) * self.h + self.alpha * (2.0 * choice - 1.0)
        self.h = torch.where(self.valid[t], step, self.h)
        return choice


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    real_mice.add_arguments(ap, "bench/results/choice_kernel/default")
    ap.add_argument("--fit-crosstalk", action="store_true")
    ap.add_argument("--fit-side-pref", action="store_true")
    ap.add_argument("--alphas", nargs="+", type=float, default=[1.0, 0.5, 0.2, 0.1, 0.05],
                    help="kernel rates to profile (each in (0, 1])")
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--check-seed", type=int, default=1)
    args = ap.parse_args(argv)
    real_mice.check_arguments(ap, args)
    if not all(0 < a <= 1 for a in args.alphas):
        ap.error(f"--alphas: each must be in (0, 1], got {args.alphas}")
    if args.copies < 10:
        ap.error(f"--copies: must be >= 10 for 5-95% bands, got {args.copies}")

    import numpy as np
    import pandas as pd
    import torch
    from scipy.optimize import minimize_scalar

    from mouse_rl.fit import fit_mice
    from mouse_rl.fit.batch import make_batch
    from mouse_rl.fit.checks import _compare, _mouse_metrics, _session_table, copy_seeds, free_run
    from mouse_rl.fit.likelihood import teacher_forced_p_right, teacher_forced_values
    from mouse_rl.fit.session_effects import fit_session_effects, marginal_loglik, session_gains, session_offsets
    from mouse_rl.fit.transforms import with_options
    from mouse_rl.network import init_weights, preference_offsets
    from mouse_rl.rollout import GivenStimuli, rollout

    df = real_mice.load(args)
    free = with_options(crosstalk=args.fit_crosstalk, side_pref=args.fit_side_pref)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {args.threads}",
               "load_before": os.getloadavg(), "free": list(free), "n_mice": int(df["mouse"].nunique()),
               "copies": args.copies, "check_seed": args.check_seed}
    t0 = time.perf_counter()
    res = fit_mice(df, free=free, per_trial=False)
    summary["fit_seconds"] = time.perf_counter() - t0
    tr = res.transform
    order = np.argsort(res.params["mouse"].astype(str).to_numpy(), kind="stable")
    u = res.u[order]
    batch = make_batch(df, tr.fixed.zero_reward, "cpu", torch.float64, prepared=True)
    params = tr.params(torch.as_tensor(u, dtype=torch.float64))
    value, offset, lapse = teacher_forced_values(batch, params, tr.fixed.encoding, tr.fixed.positive)
    valid, choice, session = batch.valid.numpy(), batch.choice.numpy(), batch.session.numpy()
    T, M = value.shape

    # the data fact: the residual of the fit's P(Right) towards the previous choice, by its outcome
    p_right = teacher_forced_p_right(batch, params, tr.fixed.encoding, tr.fixed.positive)
    same = np.zeros_like(valid)
    same[1:] = valid[1:] & valid[:-1] & (session[1:] == session[:-1])
    prev_c, prev_r = np.zeros((T, M)), np.zeros((T, M))
    prev_c[1:], prev_r[1:] = batch.contrast.numpy()[:-1], batch.reward.numpy()[:-1]
    towards = (choice - p_right) * np.where(np.roll(choice, 1, axis=0) == 1, 1.0, -1.0)
    kinds = {"rewarded": (prev_c != 0) & (prev_r == 1), "error": (prev_c != 0) & (prev_r == 0), "zero": prev_c == 0}
    summary["residual_towards_previous_choice"] = {k: float(towards[same & v].mean()) for k, v in kinds.items()}
    summary["mice_residual_positive"] = int(sum(towards[same[:, m], m].mean() > 0 for m in range(M)))

    effects = fit_session_effects(df, res.params)
    bias_sd, gain_sd = effects["session_bias_sd"].to_numpy(), effects["session_gain_sd"].to_numpy()
    summary["session_effects_gain"] = float(effects["loglik_gain"].sum())

    def kappa_fit(h, m, with_effects):
        k = valid[:, m]
        sds = (bias_sd[m], gain_sd[m]) if with_effects else (0.0, 0.0)

        def nll(kappa):
            return -marginal_loglik(value[k, m], offset[k, m] + kappa * h[k, m], choice[k, m] == 1, session[k, m],
                                    lapse[m], *sds)

        r = minimize_scalar(nll, bounds=(-5.0, 10.0), method="bounded", options={"xatol": 1e-4})
        return nll(0.0) - r.fun, r.x

    rows = []
    for alpha in args.alphas:
        h = choice_kernel(choice, session, valid, alpha)
        for m, mouse in enumerate(batch.mice):
            gain_plain, kappa_plain = kappa_fit(h, m, False)
            gain_se, kappa_se = kappa_fit(h, m, True)
            rows.append({"alpha": alpha, "mouse": mouse, "kappa": kappa_plain, "loglik_gain": gain_plain,
                         "kappa_with_session_effects": kappa_se, "loglik_gain_over_session_effects": gain_se})
        print(f"alpha {alpha} done", flush=True)
    kappas = pd.DataFrame(rows)
    profile = kappas.groupby("alpha").agg(loglik_gain=("loglik_gain", "sum"), kappa_median=("kappa", "median"),
                                          gain_over_session_effects=("loglik_gain_over_session_effects", "sum"),
                                          kappa_with_session_effects_median=("kappa_with_session_effects", "median"))
    summary["profile"] = profile.reset_index().to_dict("records")
    alpha = float(profile["gain_over_session_effects"].idxmax())
    summary["alpha"] = alpha
    kappa = kappas[kappas["alpha"] == alpha]["kappa_with_session_effects"].to_numpy()

    K = args.copies
    big = batch.repeat(K)
    seeds = copy_seeds(batch.mice, K, args.check_seed).reshape(-1)
    bparams = tr.params(torch.as_tensor(np.tile(u, (K, 1)), dtype=torch.float64))
    soff = session_offsets(big, seeds, np.tile(bias_sd, K))
    sgain = session_gains(big, seeds, np.tile(gain_sd, K))
    pref = preference_offsets(bparams, 0, T)
    pref = torch.zeros((T, K * M), dtype=torch.float64) if pref is None else pref
    real = _session_table(batch, choice)
    real_m = _mouse_metrics(real)

    def copies(kap):
        src = KernelChoices(torch.as_tensor(seeds), torch.float64, bparams.lapse,
                            torch.as_tensor(np.tile(kap, K), dtype=torch.float64), alpha, big.session, big.valid,
                            pref, soff, sgain)
        out = torch.zeros((T, K * M), dtype=torch.int64)

        def record(trial):
            out[trial.t] = torch.where(big.valid[trial.t], trial.choice, 0)

        with torch.no_grad():
            rollout(init_weights(bparams), bparams, GivenStimuli(big.contrast, torch.as_tensor(seeds)), src, 0, T,
                    encoding=tr.fixed.encoding, positive=tr.fixed.positive, zero_reward=tr.fixed.zero_reward,
                    learn=big.valid, recorder=record)
        return out.numpy()

    t0 = time.perf_counter()
    with torch.no_grad():
        library, _ = free_run(big, bparams, seeds, tr.fixed.encoding, tr.fixed.positive, tr.fixed.zero_reward,
                              offset=soff, gain=sgain)
    plain = copies(np.zeros(M))
    summary["kappa0_choices_equal_free_run"] = bool(np.array_equal(plain, library.numpy()))
    assert summary["kappa0_choices_equal_free_run"], "the probe's rollout with kappa = 0 is not the check's free run"
    kernel = copies(kappa)
    summary["copies_seconds"] = time.perf_counter() - t0
    for name, ch in (("copies_session_effects", plain), ("copies_session_effects_kernel", kernel)):
        sim = _session_table(big, ch)
        check = _compare(batch.mice, K, real, sim, real_m, _mouse_metrics(sim))
        ps = check.per_session
        summary[name] = {**{k: check.summary[k] for k in CHECK_KEYS},
                         "above": float((ps["accuracy"] > ps["accuracy_hi"]).mean()),
                         "below": float((ps["accuracy"] < ps["accuracy_lo"]).mean()),
                         "copies_median_accuracy": float(ps["accuracy_median"].mean())}
    summary["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    kappas.to_csv(args.out / "kappa.csv", index=False)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    pd.set_option("display.width", 200)
    print(json.dumps({k: summary[k] for k in ("residual_towards_previous_choice", "mice_residual_positive",
                                              "session_effects_gain", "alpha")}, default=float))
    print(profile.round(2).to_string())
    for name in ("copies_session_effects", "copies_session_effects_kernel"):
        print(name, json.dumps(summary[name], default=float))
    return summary


if __name__ == "__main__":
    main()
