"""Figures of a noisy-learner fit (:func:`mouse_rl.fit.statespace.fit_noisy`): one mouse's weights with bands."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..network import encode
from ..schema import WEIGHT_COLUMNS
from .statespace import NoisyFit, _lapse, prob_right


def model_slopes(fit: NoisyFit, mouse: str, n_draws: int = 200, band: float = 0.95, seed: int = 0) -> dict:
    """P(R) at left / zero / right stimuli on every trial of ``mouse``, and the psychometric slopes.

    Returns arrays over the mouse's trials: ``left_slope = P(R|0) - P(R|L)``, ``right_slope = P(R|R) - P(R|0)``
    and ``bias = P(R|0) - 0.5`` at the MAP weights, each with ``<name>_lo`` / ``<name>_hi``: the ``band``
    interval over ``n_draws`` draws from the trial's marginal posterior ``N(z*_t, cov_t)`` (seeded).
    """
    data = fit.data
    if mouse not in data.mice:
        raise ValueError(f"mouse: {mouse!r} not in the fit (mice: {data.mice})")
    b = data.mice.index(mouse)
    rows = slice(int(data.starts[b]), int(data.starts[b + 1]))
    hp = fit.hyper.natural()
    z, cov = fit.z[rows], fit.cov[rows]
    idx = data.mouse[rows]
    beta, lapse = hp["beta"][idx], _lapse(hp, idx)
    x3 = encode(torch.tensor([-0.5, 0.0, 0.5], dtype=z.dtype, device=z.device))
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn(n_draws, *z.shape, generator=g, dtype=z.dtype).to(z.device)
    C = torch.linalg.cholesky_ex(cov + 1e-12 * torch.eye(9, dtype=z.dtype, device=z.device))[0]
    draws = torch.cat([z[None], z + (C[None] @ eps[..., None])[..., 0]])  # draw 0 = MAP

    def pr(k):
        with torch.no_grad():
            return prob_right(draws, x3[k].expand(*draws.shape[:-1], 3), beta, lapse, data.noise).cpu().numpy()

    pL, p0, pR = pr(0), pr(1), pr(2)
    out = {}
    q = (0.5 - band / 2, 0.5 + band / 2)
    for name, v in (("left_slope", p0 - pL), ("right_slope", pR - p0), ("bias", p0 - 0.5)):
        out[name] = v[0]
        out[f"{name}_lo"], out[f"{name}_hi"] = np.quantile(v[1:], q, axis=0)
    return out


def plot_noisy_weights(fit: NoisyFit, mouse: str | None = None, n_draws: int = 200) -> Figure:
    """Three panels for one mouse, x = trial: cortical gains a (MAP and 95 % band, log scale), striatal
    weights U (same), and the model's psychometric slopes implied by the weights (MAP and band) over the
    mouse's per-session data slopes (dots, :func:`mouse_rl.analysis.session_metrics`, at each session's
    middle trial). Grey lines: session starts; shading beyond the last fitted choice (time-aware) marks
    the forecast.
    """
    from ..analysis import session_metrics

    mouse = fit.data.mice[0] if mouse is None else str(mouse)
    slopes = model_slopes(fit, mouse, n_draws)
    w = fit.weights[fit.weights["mouse"] == mouse].reset_index(drop=True)
    t = np.arange(len(w))
    fig = Figure(figsize=(11, 9), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    for ax, cols in ((ax1, WEIGHT_COLUMNS[:3]), (ax2, WEIGHT_COLUMNS[3:])):
        for i, col in enumerate(cols):
            ax.plot(t, w[col], color=f"C{i}", lw=0.8, label=col)
            ax.fill_between(t, w[f"{col}_lo"], w[f"{col}_hi"], color=f"C{i}", alpha=0.2, lw=0)
        if fit.data.noise == "log":
            ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=len(cols))
    ax1.set(ylabel="cortical gain a", title=f"{mouse}: noisy-learner weights (MAP, 95 % band)")
    ax2.set(ylabel="striatal weight U")
    for i, name in enumerate(("left_slope", "right_slope")):
        ax3.plot(t, slopes[name], color=f"C{i}", lw=0.8, label=f"model {name.replace('_', ' ')}")
        ax3.fill_between(t, slopes[f"{name}_lo"], slopes[f"{name}_hi"], color=f"C{i}", alpha=0.2, lw=0)
    trials = w.assign(signed_contrast=fit.data.contrast[fit.data.mouse == fit.data.mice.index(mouse)].cpu().numpy(),
                      choice=fit.data.choice[fit.data.mouse == fit.data.mice.index(mouse)].cpu().numpy())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = session_metrics(trials[["mouse", "session", "signed_contrast", "choice"]])
    mid = trials.groupby("session").apply(lambda d: d.index.to_numpy().mean(), include_groups=False)
    ax3.plot(mid.loc[sm["session"]].to_numpy(), sm["left_slope"], "o", color="C0", ms=4, label="data left slope")
    ax3.plot(mid.loc[sm["session"]].to_numpy(), sm["right_slope"], "s", color="C1", ms=4, label="data right slope")
    ax3.set(xlabel="trial", ylabel="psychometric slope", ylim=(-0.3, 1))
    ax3.legend(fontsize=7, ncol=2)
    starts = np.flatnonzero(np.diff(w["session"].to_numpy())) + 1
    scored = np.flatnonzero(w["scored"].to_numpy())
    for ax in (ax1, ax2, ax3):
        for s in starts:
            ax.axvline(s, color="grey", lw=0.3)
        if len(scored) and scored[-1] < len(w) - 1:
            ax.axvspan(scored[-1] + 1, len(w) - 1, color="grey", alpha=0.08)
    return fig
