"""Cross-validation of choice models on the same folds: time-aware and interleaved.

Every model follows one small protocol (:class:`CVModel`): it is built from a
prepared trial table (:func:`mouse_rl.fit.prepare_trials`), ``fit(train_mask)``
fits on the choices of the rows in ``train_mask`` and ``score(mask)`` returns
per-mouse log-likelihoods of the rows in ``mask``. Masks are boolean arrays
over the prepared table's rows. Sequential learners (the network, Q-learning)
see *every* trial (the mouse's own stimulus, choice and reward) in both
phases; held-out choices are only excluded from the objective.

Schemes
-------
``"time"``: fit on each mouse's first sessions (``train_frac`` of them), score
the later sessions; the learner keeps learning through them from the mouse's
own choices. ``"interleaved"``: hold out every ``every``-th trial of each mouse
(``n_folds`` offsets, default 1).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch

from tqdm.auto import tqdm

from ..params import ModelParams, NetParams
from ..network import init_weights
from .batch import TrialBatch, make_batch, prepare_trials
from .fitting import fit_batch, make_transform
from .learner import BatchedLearner
from .objective import KernelObjective
from .population import MapFit
from .prior import GaussianPrior
from .transforms import DEFAULT_FREE

SCHEMES = ("time", "interleaved")


class CVModel(Protocol):
    name: str

    def fit(self, train_mask: np.ndarray) -> "CVModel": ...

    def score(self, mask: np.ndarray) -> pd.DataFrame: ...


def score_frame(mice, loglik, n, plugin=None) -> pd.DataFrame:
    """Per-mouse score table: ``loglik`` (nats), ``n_trials``, ``bits_per_trial`` (mean log2 P(choice)).

    ``plugin``: the point-estimate log-likelihoods when ``loglik`` is a
    posterior predictive (adds ``loglik_plugin`` and ``bits_per_trial_plugin``).
    """
    loglik, n = np.asarray(loglik, float), np.asarray(n, float)
    out = pd.DataFrame({"mouse": list(mice), "loglik": loglik, "n_trials": n.astype(int),
                        "bits_per_trial": loglik / np.maximum(n, 1) / math.log(2)})
    if plugin is not None:
        out["loglik_plugin"] = np.asarray(plugin, float)
        out["bits_per_trial_plugin"] = out["loglik_plugin"] / np.maximum(n, 1) / math.log(2)
    return out


def time_split(trials: pd.DataFrame, train_frac: float = 0.5, n_train_sessions: int | None = None):
    """Rows of each mouse's first sessions (train) and of the rest (test).

    ``n_train_sessions`` (same for every mouse) overrides ``train_frac``; else
    each mouse trains on ``max(1, floor(train_frac * n_sessions))`` sessions.
    Returns ``(train_mask, test_mask)`` over the rows of ``prepare_trials(trials)``.
    """
    df = prepare_trials(trials)
    rank = df.groupby("mouse")["session"].rank(method="dense")
    n_sess = df.groupby("mouse")["session"].transform("nunique")
    k = np.full(len(df), n_train_sessions) if n_train_sessions is not None else \
        np.maximum(1, np.floor(train_frac * n_sess.to_numpy()))
    train = (rank.to_numpy() <= k)
    return train, ~train


def interleaved_split(trials: pd.DataFrame, every: int = 10, offset: int = 0):
    """Hold out each mouse's trials whose index (from 0, over all its sessions) is ``offset`` mod ``every``."""
    df = prepare_trials(trials)
    idx = df.groupby("mouse").cumcount().to_numpy()
    test = idx % every == offset % every
    return ~test, test


def folds(trials: pd.DataFrame, scheme: str = "time", n_folds: int = 1, every: int = 10, train_frac: float = 0.5):
    """List of ``(train_mask, test_mask)`` for a scheme (``n_folds`` offsets for interleaved)."""
    if scheme == "time":
        return [time_split(trials, train_frac)]
    if scheme == "interleaved":
        return [interleaved_split(trials, every, f) for f in range(n_folds)]
    raise ValueError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")


class NetworkModel(BatchedLearner):
    """The deep network as a :class:`CVModel` (``w0=1`` fixed and not free = shallow control).

    Parameters mirror :func:`mouse_rl.fit.fit_mice`, plus ``predictive``:
    ``"plugin"`` scores held-out choices at the fitted parameters;
    ``"laplace"`` scores them by the Laplace posterior predictive with
    ``n_samples`` draws seeded by ``draw_seed`` (see :mod:`mouse_rl.fit.predictive`;
    the Hessian is taken at the end of ``fit``) and also reports the plug-in score.
    Fits per-mouse trust-region Newton on the fused kernel (:func:`mouse_rl.fit.fit_batch`);
    also the learner of :func:`mouse_rl.fit.population.fit_population`.
    """

    def __init__(self, trials: pd.DataFrame, name: str = "network", n_restarts: int = 8, max_iter: int = 100,
                 method: str = "newton", engine: str = "eager", free=DEFAULT_FREE, fixed: ModelParams | None = None, fit_lapse: bool = True, device="cpu",
                 dtype=torch.float64, seed: int = 0, progress: bool = False, map_prior: bool = True,
                 predictive: str = "plugin", n_samples: int = 64, draw_seed: int = 0):
        super().__init__(predictive, n_samples, draw_seed)
        self.name = name
        self.trials = prepare_trials(trials)
        self.transform = make_transform(free, fixed, fit_lapse)
        self.free = self.transform.free
        self.batch = make_batch(self.trials, self.transform.fixed.zero_reward, device, dtype, prepared=True)
        self.map_prior = map_prior
        self.kw = dict(n_restarts=n_restarts, max_iter=max_iter, method=method, engine=engine, seed=seed,
                       progress=progress)

    @classmethod
    def shallow(cls, trials, name: str = "shallow", **kw) -> "NetworkModel":
        """The shallow control: w0 = 1 fixed."""
        fixed = kw.pop("fixed", None) or ModelParams()
        free = tuple(n for n in kw.pop("free", DEFAULT_FREE) if n != "w0")
        return cls(trials, name=name, free=free, fixed=fixed.replace(w0=1.0), **kw)

    def registry_prior(self) -> GaussianPrior:
        return self.transform.registry_prior()

    def map_fit(self, train_mask, prior: GaussianPrior | None = None, init: np.ndarray | None = None) -> MapFit:
        """Per-mouse Newton fit on the ``train_mask`` choices (learning from every trial before them)."""
        score = self.batch.mask_from_rows(np.asarray(train_mask, dtype=bool))
        last = int(torch.nonzero(score.any(1)).max()) + 1 if bool(score.any()) else 1
        batch = self.batch.crop(last)  # later trials cannot change the training objective
        res = fit_batch(batch, self.transform, score[:last], None, map_prior=self.map_prior, prior=prior,
                        init=init, **self.kw)
        self.result = res
        return MapFit(res.u.detach().cpu().numpy(), np.asarray(res.nll_loglik), np.asarray(res.hessian_loglik))

    def trial_logp(self, u: np.ndarray) -> np.ndarray:
        kobj = KernelObjective(self.batch, self.transform)  # every trial scored and learned from
        return kobj.trial_logp(np.asarray(u, dtype=float), np.arange(len(u)))

    def context_state(self, u: np.ndarray):
        """``(params, weights)`` of the columns ``k * M + m`` (mouse ``m`` at ``u[k * M + m]``) after teacher
        forcing through this model's trials (the lapse zeroed unless the model uses one): where
        :meth:`forecast_p_right`'s free-running copies start."""
        from ..rollout import GivenChoices, GivenTrials, rollout

        K = len(u) // self.batch.shape[1]
        params = self.transform.params(torch.as_tensor(u, dtype=self.batch.contrast.dtype))
        fixed = self.transform.fixed
        use_lapse = "lapse" in self.free or bool(np.any(np.asarray(fixed.lapse) != 0))
        ctx = self.batch.repeat(K)
        with torch.no_grad():
            w = rollout(init_weights(params), params, GivenTrials(ctx.contrast, ctx.reward), GivenChoices(ctx.choice),
                        0, ctx.shape[0], learn=ctx.valid, encoding=fixed.encoding, positive=fixed.positive,
                        zero_reward=fixed.zero_reward, use_lapse=use_lapse)
        if not use_lapse:
            params = params._replace(lapse=torch.zeros_like(params.lapse))
        return params, w

    def forecast_p_right(self, u: np.ndarray, schedule: TrialBatch, seed: int = 0) -> np.ndarray:
        """P(Right) ``(T, n)`` of free-running copies on ``schedule`` (its stimuli and session lengths) after
        teacher forcing through this model's trials; column ``k * M + m`` runs mouse ``m`` at ``u[k * M + m]``
        with choice stream ``copy_seeds`` (see :func:`mouse_rl.fit.checks.copy_seeds`)."""
        from .checks import copy_seeds, free_run

        K = len(u) // self.batch.shape[1]
        params, w = self.context_state(u)
        fixed = self.transform.fixed
        with torch.no_grad():
            seeds = torch.as_tensor(copy_seeds(self.batch.mice, K, seed).reshape(-1))  # column k * M + m
            _, p = free_run(schedule.repeat(K), params, seeds, fixed.encoding, fixed.positive, fixed.zero_reward,
                            init=w)
        return p.cpu().numpy()

    def natural(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta, d1, _ = self.transform.natural(np.asarray(u, dtype=float))
        cols = [NetParams._fields.index(n) for n in self.free]
        return theta[:, cols], d1


def cross_validate(trials: pd.DataFrame, models: dict[str, Callable[[pd.DataFrame], CVModel]],
                   scheme: str = "time", n_folds: int = 1, every: int = 10, train_frac: float = 0.5,
                   progress: bool = False) -> pd.DataFrame:
    """Fit and score every model on the same folds.

    Parameters
    ----------
    trials : trial table (validated and sorted here).
    models : name -> factory taking the prepared table and returning a :class:`CVModel`.
    scheme, n_folds, every, train_frac : see :func:`folds`.

    Returns
    -------
    pandas.DataFrame
        One row per (model, mouse, fold): ``loglik`` (nats), ``n_trials`` and
        ``bits_per_trial`` of held-out choices, ``train_bits_per_trial``,
        ``loglik_plugin`` / ``bits_per_trial_plugin`` (models scored by a
        posterior predictive: the score at the point estimate; NaN otherwise),
        ``fit_seconds`` (batched models: wall time of fitting the whole batch
        of mice for this model and fold, flagged ``batched``; per-mouse models:
        that mouse's fit time) and ``scheme``.
    """
    df = prepare_trials(trials)
    rows = []
    splits = list(folds(df, scheme, n_folds, every, train_frac))
    bar = tqdm(total=len(splits) * len(models), desc=f"cv {scheme}", unit="fit", disable=not progress)
    for fold, (train, test) in enumerate(splits):
        for name, factory in models.items():
            bar.set_postfix_str(f"fold {fold} {name}")
            model = factory(df)
            t0 = time.perf_counter()
            model.fit(train)
            seconds = time.perf_counter() - t0
            held = model.score(test)
            tr = model.score(train)
            held["train_bits_per_trial"] = held["mouse"].map(tr.set_index("mouse")["bits_per_trial"])
            held.insert(0, "model", name)
            held["fold"] = fold
            per_mouse = getattr(model, "fit_seconds_by_mouse", None)
            held["batched"] = per_mouse is None
            held["fit_seconds"] = held["mouse"].map(per_mouse) if per_mouse else seconds
            held["scheme"] = scheme
            rows.append(held)
            bar.update()
    bar.close()
    return pd.concat(rows, ignore_index=True)


def summarise(cv_table: pd.DataFrame) -> pd.DataFrame:
    """Per model: total held-out bits/trial over all mice (trial-weighted) and the per-mouse mean."""
    g = cv_table.groupby(["scheme", "model"])
    out = pd.DataFrame({
        "bits_per_trial_total": g["loglik"].sum() / g["n_trials"].sum() / math.log(2),
        "bits_per_trial_mouse_mean": g["bits_per_trial"].mean(),
        "n_trials": g["n_trials"].sum(),
    })
    per_fold = cv_table.groupby(["scheme", "model", "fold"]).apply(
        lambda d: d["fit_seconds"].iloc[0] if d["batched"].iloc[0] else d["fit_seconds"].sum(), include_groups=False)
    out["fit_seconds_total"] = per_fold.groupby(["scheme", "model"]).sum()
    if "loglik_plugin" in cv_table:  # models scored by a posterior predictive also report the plug-in score
        has = cv_table.dropna(subset=["loglik_plugin"]).groupby(["scheme", "model"])
        out["bits_per_trial_plugin_total"] = has["loglik_plugin"].sum() / has["n_trials"].sum() / math.log(2)
    return out.reset_index()
