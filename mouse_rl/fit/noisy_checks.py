"""Issue 10's labels and posterior-predictive checks for the noisy learner (:mod:`mouse_rl.fit.statespace`).

Two questions of a fitted noisy learner, each answered with the project's existing definitions:

* **Labels** (:func:`noisy_labels`): the model-derived learner side of each mouse is read from the model's
  P(Right) on the mouse's own trials -- here the P(Right) of the MAP weight trajectory with the fitted beta
  and lapse -- by :func:`mouse_rl.fit.labels.strategy_labels`, the definition ``bench/fit_real_mice.py
  --trust`` uses for the deterministic fit (late right - left slope difference, last 5 sessions, thresholded
  by :func:`mouse_rl.analysis.label_learner_side`). Caveat: the MAP trajectory is a *smoother*: trial t's
  weights are conditioned on all of the mouse's choices, later ones included, so these labels are in-sample.
* **Generative check** (:func:`check_noisy`): free-running copies of each fitted mouse on its own stimulus
  sequence and session lengths. A copy starts from the mouse's fitted (MAP) weights on its first trial and on
  every trial chooses from its own P(Right), is rewarded by the task's rule and learns by the model's
  transition (:func:`mouse_rl.fit.statespace.transition`, which wraps :func:`mouse_rl.network.trial_update`)
  plus the fitted noise, in the noisy model's own parametrisation::

      z_{t+1} = transition(z_t; x_t, choice_t, reward_t, eta) + s_t * eps_t,   eps_t ~ N(0, I)

  (``z`` = log-weights for ``noise="log"``, the weights for ``noise="linear"``; ``s_t`` = the per-trial sds
  within a session and the session-boundary sds on the step into a new session,
  :func:`mouse_rl.fit.statespace.noise_sds`; a frozen group has neither learning nor noise.) The copies'
  choices are summarised by the same code as the deterministic check (:mod:`mouse_rl.fit.checks`: session
  accuracy band coverage, early bias, late slope difference, modal learner side; 5-95 % bands).

Random numbers are counter-based (:mod:`envs.rng`) per copy, with the seeds of
:func:`mouse_rl.fit.checks.copy_seeds`: choices from the ``CHOICE`` stream and the rewarded side at zero
contrast from ``ZERO_REWARD_SIDE`` (the streams of :func:`mouse_rl.fit.checks.free_run`, so copies with every
sd = 0 are the deterministic network's free-running copies; tested), the noise from :data:`NOISE_STREAM` at
counter ``9 t + j`` (weight j, transition out of trial t).

Inputs are tables, so a saved fit can be checked again: ``params`` (``NoisyFit.params``, one row per mouse)
and ``weights`` (``NoisyFit.weights``, one row per trial); the model variant (``noise``, ``frozen``,
``sigma_per``, ``encoding``) is not stored in them and must be passed as fitted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from envs import rng

from ..analysis.metrics import require_columns
from ..network import encode, learning_reward
from ..rollout import GivenStimuli, SampledChoices
from ..schema import WEIGHT_COLUMNS
from . import statespace as ss
from .batch import TrialBatch, make_batch, prepare_trials
from .checks import CheckResult, _compare, _mouse_metrics, _session_table, copy_seeds

#: Random stream of the copies' weight noise (streams 1-4: :mod:`envs.rng`; 7: :mod:`mouse_rl.fit.drift`;
#: 101: optogenetics).
NOISE_STREAM = 12
#: Trials of noise drawn at once (the draws are pure hashes: the block size does not change them).
_BLOCK = 256


def _per_mouse(params: pd.DataFrame, mice, columns) -> pd.DataFrame:
    """Rows of ``params`` in the order of ``mice``; a ValueError names missing mice, columns or bad values."""
    require_columns(params, ["mouse", *columns], "params")
    p = params.assign(mouse=params["mouse"].astype(str)).drop_duplicates("mouse").set_index("mouse")
    missing = [m for m in mice if m not in p.index]
    if missing:
        raise ValueError(f"params: no row for mice {missing}")
    p = p.loc[list(mice), list(columns)]
    for c in columns:
        v = p[c].to_numpy(float)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"params[{c!r}]: must be finite, got {v[~np.isfinite(v)][0]!r}")
    return p


def fitted_table(trials: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """The trials with the fit's per-trial ``p_right`` and MAP weights (:data:`WEIGHT_COLUMNS`) beside them,
    prepared-table order: the teacher-forced table :func:`mouse_rl.fit.labels.strategy_labels` reads."""
    require_columns(weights, ["mouse", "session", "trial", "p_right", *WEIGHT_COLUMNS], "weights")
    df = prepare_trials(trials)
    w = weights[["mouse", "session", "trial", "p_right", *WEIGHT_COLUMNS]].assign(
        mouse=weights["mouse"].astype(str))
    out = df.drop(columns=[c for c in ("p_right", *WEIGHT_COLUMNS) if c in df.columns]).merge(
        w, on=["mouse", "session", "trial"], how="left", validate="one_to_one")
    if out["p_right"].isna().any():
        first = out.loc[out["p_right"].isna(), ["mouse", "session", "trial"]].iloc[0].tolist()
        raise ValueError(f"weights: no row (or a NaN p_right) for trial {first} (mouse, session, trial) of trials")
    return out


def noisy_labels(trials: pd.DataFrame, params: pd.DataFrame, weights: pd.DataFrame, encoding: str = "magnitude",
                 side_threshold: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model-derived and behavioural learner sides of a noisy fit (:func:`mouse_rl.fit.labels.strategy_labels`).

    ``trials``: the fitted trial table; ``params``: ``NoisyFit.params`` (``mouse``, ``beta``, ``lapse``);
    ``weights``: ``NoisyFit.weights`` (per trial ``p_right`` at the MAP weights, with beta and lapse, and the
    MAP weights); ``encoding``: the fit's (for the end-of-session policy labels only). Returns
    ``strategy_labels``'s ``(per_mouse, per_session)``: ``learner_side_data`` / ``learner_side_model`` and
    ``late_slope_diff_data`` / ``late_slope_diff_model`` (P(Right) units) per mouse.
    """
    from .labels import strategy_labels

    fitted = fitted_table(trials, weights)
    _per_mouse(params, sorted(fitted["mouse"].unique()), ["beta", "lapse"])
    return strategy_labels(fitted, params, side_threshold=side_threshold, encoding=encoding)


def rule_only_weights(trials: pd.DataFrame, params: pd.DataFrame, weights: pd.DataFrame, noise: str = "linear",
                      frozen=("a",), sigma_per: str = "column", encoding: str = "magnitude",
                      zero_reward: str = "expected") -> pd.DataFrame:
    """The noisy fit's learning rule alone, teacher-forced: a copy of ``weights`` whose MAP weights and
    ``p_right`` are replaced by the sigma = 0 rollout of the rule on the mouse's own choices and rewards
    (:func:`mouse_rl.fit.statespace.rollout`), from the MAP weights of its first trial, at the fitted eta,
    beta and lapse. Causal (trial t sees trials < t only), unlike the MAP trajectory (a smoother); feed it to
    :func:`noisy_labels` for labels that owe nothing to the fitted noise."""
    df = prepare_trials(trials)
    data = ss.pack(df, encoding, zero_reward, prepared=True, noise=noise, frozen=frozen, sigma_per=sigma_per)
    names = ["eta", "beta", "lapse", "w0", "k", "s0", "b_L", "b_R"]
    p = _per_mouse(params, data.mice, names)
    hp = {n: torch.tensor(p[n].to_numpy(float), dtype=torch.float64) for n in names}
    z0 = copy_inputs(params, weights, data.mice, noise, frozen, sigma_per)["z0"]
    z = torch.zeros(len(df), 9, dtype=torch.float64)
    z[torch.as_tensor(data.starts[:-1])] = z0
    with torch.no_grad():
        z = ss._pin(data, ss.rollout(data, hp, z, start=np.ones(data.n_mice, dtype=np.int64)), hp)
        lapse = hp["lapse"][data.mouse] if bool((hp["lapse"] != 0).any()) else None
        pr = ss.prob_right(z, data.x, hp["beta"][data.mouse], lapse, noise)
    w = np.exp(z.numpy()) if noise == "log" else z.numpy()
    out = df[["mouse", "session", "trial"]].copy()
    out[list(WEIGHT_COLUMNS)] = w
    out["p_right"] = pr.numpy()
    return out


def copy_inputs(params: pd.DataFrame, weights: pd.DataFrame, mice, noise: str, frozen=(),
                sigma_per: str = "column") -> dict:
    """Per-mouse inputs of the copies, rows in the order of ``mice`` (tensors, float64).

    ``z0`` ``(M, 9)``: the state on the mouse's first trial (MAP weights; their log for ``noise="log"``);
    ``eta``, ``beta``, ``lapse`` ``(M,)``; ``sd_trial``, ``sd_day`` ``(M, 9)``: the fitted noise sds within a
    session and across a session boundary (state units; 0 on a frozen group).
    """
    if noise not in ss.NOISE:
        raise ValueError(f"noise: must be one of {ss.NOISE}, got {noise!r}")
    if sigma_per not in ss.SIGMA_PER:
        raise ValueError(f"sigma_per: must be one of {ss.SIGMA_PER}, got {sigma_per!r}")
    latent = ss._latent_mask(frozen)
    frozen = tuple(frozen or ())
    sigmas = []  # the noise sds of the latent groups (a frozen group's do not enter the model: 0)
    if "a" not in frozen:
        sigmas += ["sigma_a", "sigma_day_a"]
    if "U" not in frozen:
        sigmas += ["sigma_U", "sigma_day_U"] if sigma_per == "group" else [*ss.COLUMN_SIGMAS, *ss.COLUMN_DAY_SIGMAS]
    p = _per_mouse(params, list(mice), ["eta", "beta", "lapse", *sigmas])
    for c in sigmas:
        if (p[c] < 0).any():
            raise ValueError(f"params[{c!r}]: noise sds must be >= 0, got {p[c].min()!r}")
    for c, lo, hi in (("eta", 0, np.inf), ("beta", 0, np.inf), ("lapse", 0, 1)):
        if ((p[c] < lo) | (p[c] > hi)).any():
            raise ValueError(f"params[{c!r}]: must lie in [{lo}, {hi}], got {p[c].min()!r} .. {p[c].max()!r}")
    zero = np.zeros(len(p))
    all_sds = ["sigma_a", "sigma_day_a", "sigma_U", "sigma_day_U", *ss.COLUMN_SIGMAS, *ss.COLUMN_DAY_SIGMAS]
    hp = {c: torch.tensor(p[c].to_numpy(float) if c in p else zero, dtype=torch.float64)
          for c in ["eta", "beta", "lapse", *all_sds]}
    idx = torch.arange(len(p))
    keep = torch.ones(9, dtype=torch.float64) if latent is None else latent.double()
    require_columns(weights, ["mouse", "session", "trial", *WEIGHT_COLUMNS], "weights")
    first = (weights.assign(mouse=weights["mouse"].astype(str)).sort_values(["mouse", "session", "trial"])
             .groupby("mouse").head(1).set_index("mouse"))
    missing = [m for m in mice if m not in first.index]
    if missing:
        raise ValueError(f"weights: no rows for mice {missing}")
    w0 = torch.as_tensor(first.loc[list(mice), list(WEIGHT_COLUMNS)].to_numpy(float, copy=True), dtype=torch.float64)
    if not bool(torch.isfinite(w0).all()):
        raise ValueError("weights: the first trial's weights must be finite")
    if noise == "log" and bool((w0 <= 0).any()):
        raise ValueError("weights: noise='log' needs positive weights")
    return {"z0": w0.clamp(min=ss.W_FLOOR).log() if noise == "log" else w0,
            "eta": hp["eta"], "beta": hp["beta"], "lapse": hp["lapse"],
            "sd_trial": ss.noise_sds(hp, idx, sigma_per) * keep, "sd_day": ss.noise_sds(hp, idx, sigma_per, True) * keep}


def _boundaries(batch: TrialBatch) -> torch.Tensor:
    """``(T, B)`` bool: the step out of trial t enters a new session (trial t + 1 is real, another session)."""
    out = torch.zeros_like(batch.valid)
    out[:-1] = batch.valid[1:] & (batch.session[1:] != batch.session[:-1])
    return out


def free_run_noisy(batch: TrialBatch, z0, eta, beta, lapse, sd_trial, sd_day, seeds, encoding: str = "magnitude",
                   noise: str = "linear", frozen=(), zero_reward: str = "expected", record: bool = False):
    """Free-running noisy learners on each column's own stimuli and sessions (``batch``, ``(T, B)``).

    Parameters
    ----------
    batch : the columns' trials; only stimuli, validity and sessions are used.
    z0 : ``(B, 9)`` state on the first trial (log-weights for ``noise="log"``, weights for ``"linear"``).
    eta, beta, lapse : ``(B,)`` learning rate (per trial), inverse temperature (1 / value unit), lapse rate.
    sd_trial, sd_day : ``(B, 9)`` noise sds (state units) of a step within a session / into a new session.
    seeds : ``(B,)`` per-column seeds (:mod:`envs.rng`).
    encoding, noise, frozen, zero_reward : the model variant, as fitted.
    record : also return the state on every trial ``(T, B, 9)``.

    Returns
    -------
    ``(choice, p_right)`` (or ``(choice, p_right, z)``), each ``(T, B)``: sampled choices (0 = Left,
    1 = Right; 0 on padding) and P(Right) before each choice (0 on padding).
    """
    if noise not in ss.NOISE:
        raise ValueError(f"noise: must be one of {ss.NOISE}, got {noise!r}")
    T, B = batch.shape
    z = _checked(z0, "z0", (B, 9)).clone()
    eta, beta, lapse = (_checked(v, n, (B,)) for v, n in ((eta, "eta"), (beta, "beta"), (lapse, "lapse")))
    sd_trial, sd_day = _checked(sd_trial, "sd_trial", (B, 9)), _checked(sd_day, "sd_day", (B, 9))
    if bool((sd_trial < 0).any()) or bool((sd_day < 0).any()):
        raise ValueError("sd_trial, sd_day: noise sds must be >= 0")
    latent = ss._latent_mask(frozen)
    seeds = rng.as_seed_tensor(seeds)
    if seeds.shape != (B,):
        raise ValueError(f"seeds: expected {B} seeds, got {seeds.shape[0]}")
    c = batch.contrast.to(torch.float64)
    valid, day = batch.valid, _boundaries(batch)
    stim, choices = GivenStimuli(c, seeds), SampledChoices(seeds, torch.float64)
    lap = lapse if bool((lapse != 0).any()) else None
    noisy = bool((sd_trial > 0).any()) or bool((sd_day > 0).any())
    key, j = rng.stream_key(seeds, NOISE_STREAM)[:, None], torch.arange(9)
    out_c = torch.zeros(T, B, dtype=torch.int64)
    out_p = torch.zeros(T, B, dtype=torch.float64)
    zs = torch.zeros(T, B, 9, dtype=torch.float64) if record else None
    with torch.no_grad():
        for t in range(T):
            if noisy and t % _BLOCK == 0:  # standard normals (trial, B, 9), Box-Muller on counter 9 t + j
                cnt = 9 * torch.arange(t, t + _BLOCK)[:, None, None] + j
                u1 = rng.uniform(seeds[:, None], NOISE_STREAM, 2 * cnt, torch.float64, key)
                u2 = rng.uniform(seeds[:, None], NOISE_STREAM, 2 * cnt + 1, torch.float64, key)
                eps = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)
            x = encode(c[t], encoding)
            pr = ss.prob_right(z, x, beta, lap, noise)
            ch = choices(t, pr)
            lr = learning_reward(c[t], stim.outcome(t, ch), zero_reward)
            nxt = ss.transition(z, x, ch, lr, eta, noise, latent)
            if noisy:
                nxt = nxt + torch.where(day[t][:, None], sd_day, sd_trial) * eps[t % _BLOCK]
            v = valid[t]
            out_c[t] = torch.where(v, ch, 0)
            out_p[t] = torch.where(v, pr, 0.0)
            if record:
                zs[t] = z
            z = torch.where(v[:, None], nxt, z)
    return (out_c, out_p, zs) if record else (out_c, out_p)


def _checked(v, name: str, shape) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v, float) if not torch.is_tensor(v) else v, dtype=torch.float64)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: must be finite")
    return t


def check_noisy(trials: pd.DataFrame, params: pd.DataFrame, weights: pd.DataFrame, noise: str = "linear",
                frozen=("a",), sigma_per: str = "column", encoding: str = "magnitude", zero_reward: str = "expected",
                n_copies: int = 50, seed: int = 0, noise_off: bool = False) -> CheckResult:
    """Posterior-predictive check of a noisy fit: ``n_copies`` free-running copies per mouse
    (:func:`free_run_noisy`) summarised by :mod:`mouse_rl.fit.checks` (its bands, metrics and summary).

    ``noise_off``: every noise sd 0 (copies at the fit's eta, beta, lapse and first-trial weights, learning by
    the rule alone). The copies use point estimates (the fit has no posterior over its hyperparameters) and
    start from the MAP weights of the first trial. Returns a :class:`mouse_rl.fit.checks.CheckResult`.
    """
    if isinstance(n_copies, bool) or int(n_copies) != n_copies or n_copies < 2:
        raise ValueError(f"n_copies: must be an integer >= 2, got {n_copies!r}")
    n_copies = int(n_copies)
    df = prepare_trials(trials)
    batch = make_batch(df, zero_reward, "cpu", torch.float64, prepared=True)
    inp = copy_inputs(params, weights, batch.mice, noise, frozen, sigma_per)
    if noise_off:
        inp["sd_trial"], inp["sd_day"] = torch.zeros_like(inp["sd_trial"]), torch.zeros_like(inp["sd_day"])
    rep = lambda v: v.repeat(n_copies, *([1] * (v.dim() - 1)))  # noqa: E731  (copy k, mouse m at k * M + m)
    big = batch.repeat(n_copies)
    seeds = copy_seeds(batch.mice, n_copies, seed).reshape(-1)
    choice, _ = free_run_noisy(big, rep(inp["z0"]), rep(inp["eta"]), rep(inp["beta"]), rep(inp["lapse"]),
                               rep(inp["sd_trial"]), rep(inp["sd_day"]), seeds, encoding, noise, frozen, zero_reward)
    sim = _session_table(big, choice.numpy())
    real = _session_table(batch, batch.choice.cpu().numpy())
    return _compare(batch.mice, n_copies, real, sim, _mouse_metrics(real), _mouse_metrics(sim))
