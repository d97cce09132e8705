"""Learning models as forecasters: population prior from the reference cohort, MAP on the context,
and a predictive that runs the model's own stochastic learning through the unobserved sessions.

For a forecast mouse with context fit ``u_m`` and Laplace posterior ``C_m`` (under the
population ``N(mu, Sigma)`` fitted by :func:`mouse_rl.fit.population.fit_population` to
the reference mice's contexts), draw ``K`` parameter vectors ``u_k ~ N(u_m, C_m)`` (draw 0 =
``u_m``); run each teacher-forced through the mouse's context, then free-running (sampling its
own choices, learning from its own rewards) through the gap and horizon schedule (the real
stimuli and number of trials of each session). The forecast P(Right) of a horizon trial is
the mean over the K copies of each copy's P(Right) before that trial, so it averages over
parameter uncertainty and over the model's own learning noise.

Reference mice are fitted on their contexts only: their gap is unobserved, so the horizon
cannot be teacher-forced without its preceding sessions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data._tidy import derive_reward, split_contrast
from ..fit.population import fit_population
from ..fit.predictive import laplace_samples
from .glm import LogisticGLM, early_bias


def placeholder_table(schedule: pd.DataFrame) -> pd.DataFrame:
    """A schedule as a trial table the learners can batch: choice 0 (Left) and its task reward as
    placeholders. Free-running copies never read them (they sample their own choices)."""
    out = schedule.drop(columns=[c for c in ("phase",) if c in schedule]).copy()
    out["choice"] = 0
    out["reward"] = derive_reward(out["signed_contrast"], out["choice"])
    out["feedbackType"] = 2 * out["reward"] - 1
    return out


def copies_mean_by_row(p, n_copies: int, batch, table: pd.DataFrame, schedule: pd.DataFrame) -> np.ndarray:
    """Mean over the copies of P(Right) ``p`` ``(T, n_copies * M)`` (column ``k * M + m``: copy k of mouse m),
    run on ``batch`` (of the prepared ``table``), for every row of ``schedule``, in its row order."""
    p = torch.as_tensor(p)
    p_mean = p.reshape(p.shape[0], n_copies, -1).mean(1)
    keys = ["mouse", "session", "trial"]
    by_row = pd.Series(batch.to_rows(p_mean), index=pd.MultiIndex.from_frame(table[keys].astype({"mouse": str})))
    return by_row.reindex(pd.MultiIndex.from_frame(schedule[keys].astype({"mouse": str}))).to_numpy()


class LearnerForecaster:
    """A :class:`~mouse_rl.fit.learner.BatchedLearner` family as a forecaster.

    Parameters
    ----------
    factory : builds the learner from a trial table (e.g. ``lambda d: NetworkModel(d)``).
    name : label in the score tables.
    n_copies : K draws x free-running copies per forecast mouse.
    population : fit the population prior on the reference cohort (else the registry prior).
    em_iter : EM iterations of the population fit.
    recalibrate : also return ``<name>_recalibrated``: the forecast passed through a logistic
        recalibration ``P' = sigmoid(a logit P + b)`` fitted on the reference cohort's horizons
        (each reference mouse forecast from its own context as a forecast mouse is; its unobserved
        gap replaced by as many sessions as its session numbers skip, of its mean observed length,
        with stimuli drawn from its observed horizon stimuli); and ``<name>_stacked``: a logistic
        regression on the reference horizons of the choice on the early-bias GLM's horizon terms
        (1, cL, cR, early bias) and the forecast's logit (does the learner add to the GLM?).
    seed : seed of the parameter draws and of the copies' choice streams.
    """

    def __init__(self, factory, name: str, n_copies: int = 100, population: bool = True, em_iter: int = 6,
                 recalibrate: bool = True, seed: int = 0):
        if int(n_copies) != n_copies or n_copies < 1:
            raise ValueError(f"n_copies: must be a positive integer, got {n_copies!r}")
        self.factory, self.name, self.n_copies = factory, name, int(n_copies)
        self.population, self.em_iter, self.recalibrate, self.seed = population, em_iter, recalibrate, seed
        self.calibration = None

    def fit(self, observed: pd.DataFrame, targets) -> "LearnerForecaster":
        ctx = observed[observed["phase"] == "context"]
        ref = ctx[~ctx["mouse"].isin(targets)]
        self.prior = None
        if self.population:
            ref_model = self.factory(ref.drop(columns="phase"))
            self.pop = fit_population(ref_model, n_iter=self.em_iter)
            self.prior = self.pop.prior
            if self.recalibrate or self.tunes_on_reference:
                ref_model.u, ref_model.cov = torch.as_tensor(self.pop.u), torch.as_tensor(self.pop.posterior_cov)
                horizon = observed[~observed["mouse"].isin(targets) & (observed["phase"] == "horizon")]
                schedule = reference_schedule(ref, horizon, self.seed)
                rows = horizon.sort_values(["mouse", "session", "trial"])
                p = self._reference_forecast(ref_model, schedule, rows)
            if self.recalibrate:
                truth = rows["choice"].to_numpy(float)
                self.calibration = fit_recalibration(p, truth)
                self.bias = early_bias(observed[observed["phase"] == "context"])
                self.stack = LogisticGLM("early_bias").fit_design(stack_design(rows, p, self.bias), truth)
        self.context = ctx[ctx["mouse"].isin(targets)].drop(columns="phase")
        model = self.factory(self.context)
        model.fit(np.ones(len(model.trials), dtype=bool), prior=self.prior)
        self.model = model
        return self

    #: Subclasses that choose a setting on the reference cohort's horizons (:meth:`_reference_forecast`)
    #: need the reference forecast even without recalibration.
    tunes_on_reference = False

    def _reference_forecast(self, ref_model, schedule: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
        """Forecasts of the reference mice's horizon ``rows`` (sorted by mouse, session, trial) from their
        context fits ``ref_model`` over ``schedule`` (:func:`reference_schedule`)."""
        return self._forecast(ref_model, schedule)[(schedule["phase"] == "horizon").to_numpy()]

    def _forecast(self, model, schedule: pd.DataFrame) -> np.ndarray:
        """Mean P(Right) over the copies of every schedule row, in the schedule's row order."""
        sched = self.factory(placeholder_table(schedule))  # the same learner family over the schedule
        if list(sched.batch.mice) != list(model.batch.mice):
            raise RuntimeError("forecast: mice of the schedule differ from the fitted context")
        K, M = self.n_copies, len(model.batch.mice)
        draws = laplace_samples(model.u, model.cov, K, self.seed).reshape(K * M, -1).cpu().numpy()
        p = self._copies_p_right(model, draws, sched.batch)  # (T, K * M), column k * M + m
        return copies_mean_by_row(p, K, sched.batch, sched.trials, schedule)

    def _copies_p_right(self, model, draws: np.ndarray, batch) -> np.ndarray:
        """P(Right) ``(T, K * M)`` of the copies at ``draws`` on the schedule ``batch``."""
        return model.forecast_p_right(draws, batch, self.seed)

    def predict(self, schedule: pd.DataFrame):
        """Forecast P(Right) of every schedule row (gap rows too), in the schedule's row order; with
        ``recalibrate``, a dict ``{name: forecast, name_recalibrated: recalibrated forecast}``."""
        p = self._forecast(self.model, schedule)
        if self.calibration is None:
            return p
        return {self.name: p, f"{self.name}_recalibrated": apply_recalibration(p, self.calibration),
                f"{self.name}_stacked": self.stack.predict_design(stack_design(schedule, p, self.bias))}


def stack_design(rows: pd.DataFrame, p: np.ndarray, bias: pd.Series) -> np.ndarray:
    """Features of the stacked forecast: the early-bias GLM's horizon terms (1, cL, cR, early bias)
    and the learner's forecast logit."""
    return np.column_stack([np.ones(len(rows)), rows["contrastLeft"].to_numpy(float),
                            rows["contrastRight"].to_numpy(float), rows["mouse"].map(bias).to_numpy(float),
                            _logit(p)])


def reference_schedule(context: pd.DataFrame, horizon: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Gap + horizon schedule of reference mice whose gap is unobserved: the gap gets as many sessions as
    the session numbers skip between context and horizon, each of the mouse's mean observed length, with
    signed contrasts drawn (``default_rng([seed, i])``) from its horizon stimuli."""
    rows = []
    for i, (mouse, h) in enumerate(horizon.groupby("mouse", sort=True)):
        c = context[context["mouse"] == mouse]
        n_gap = int(h["session"].min() - c["session"].max() - 1)
        length = int(round(pd.concat([c, h]).groupby("session").size().mean()))
        gen = np.random.default_rng([int(seed), i])
        sc = gen.choice(h["signed_contrast"].to_numpy(float), size=(max(n_gap, 0), length))
        for j in range(max(n_gap, 0)):
            rows.append(pd.DataFrame({"mouse": mouse, "session": int(c["session"].max()) + 1 + j,
                                      "trial": np.arange(length), "signed_contrast": sc[j], "phase": "gap"}))
        rows.append(h[["mouse", "session", "trial", "signed_contrast"]].assign(phase="horizon"))
    out = pd.concat(rows, ignore_index=True)
    out["contrastLeft"], out["contrastRight"] = split_contrast(out["signed_contrast"])
    return out.sort_values(["mouse", "session", "trial"], kind="stable").reset_index(drop=True)


def fit_recalibration(p: np.ndarray, choice: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """``(a, b)`` of ``P' = sigmoid(a logit P + b)`` maximising the likelihood of ``choice`` (tiny L2 towards (1, 0))."""
    from scipy.optimize import minimize

    z = _logit(p)
    y = np.asarray(choice, float)

    def loss(w):
        s = w[0] * z + w[1]
        q = 1.0 / (1.0 + np.exp(-s))
        d = w - np.array([1.0, 0.0])
        f = np.mean(np.logaddexp(0, s) - y * s) + l2 * np.sum(d**2)
        g = np.array([np.mean((q - y) * z), np.mean(q - y)]) + 2 * l2 * d
        return f, g

    return minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x


def apply_recalibration(p: np.ndarray, ab: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(ab[0] * _logit(p) + ab[1])))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


class PsyTrackForecaster:
    """PsyTrack fitted on each forecast mouse's context, its last weights carried forward."""

    name = "psytrack"

    def fit(self, observed: pd.DataFrame, targets) -> "PsyTrackForecaster":
        from ..baselines import PsyTrackModel

        ctx = observed[(observed["phase"] == "context") & observed["mouse"].isin(targets)].drop(columns="phase")
        self.model = PsyTrackModel(ctx).fit(np.ones(len(ctx), dtype=bool))
        return self

    def predict(self, schedule: pd.DataFrame) -> np.ndarray:
        out = np.empty(len(schedule))
        for mouse, rows in schedule.groupby("mouse", sort=False):
            _, w, _ = self.model.fits[mouse]
            last = w[:, -1]  # bias, cL, cR (alphabetical order of psytrack's weights)
            z = last[0] + last[1] * rows["contrastLeft"].to_numpy(float) + last[2] * rows["contrastRight"].to_numpy(float)
            out[schedule.index.get_indexer(rows.index)] = 1.0 / (1.0 + np.exp(-z))
        return out
