"""Optogenetic stimulation of a teaching signal, vs. adding the same amount of reward.

Model (mouse_rl/MODEL.md section 5): on a stimulated trial, add ``kappa`` to one
teaching signal (``delta_tot``, ``delta_stim`` or ``delta_const``) before the
weight update. Because each signal owns one weight block, stimulating
``delta_stim`` changes only ``U[choice, L-stim/R-stim]`` (and, with the side
encoding, only the column of the stimulus shown, by exactly
``eta * kappa * h_j``); adding ``kappa`` to the *reward* instead raises all
three signals and so changes the cortex, the stimulus and the bias weights.

Implementation: the optional ``delta_offset`` argument of
:func:`mouse_rl.network.trial_update` (``(..., 3)`` added to (delta_tot,
delta_stim, delta_const)); the update equations are not duplicated here.

Timing: the network makes one update per trial, so a stimulus-timed and an
outcome-timed pulse both add ``kappa`` to that trial's delta. Timing decides
what the trigger may depend on: a ``"stimulus"``-timed pulse can be
contingent only on the stimulus (``contingency`` "all" or "stimulus"); an
``"outcome"``-timed pulse may also depend on the choice or the reward.

The simulation loop (:func:`simulate_opto`) mirrors
:func:`mouse_rl.simulate.simulate_cohort` (same :class:`envs.CohortEnv`,
counter RNG streams and update), so with no protocol it reproduces
``simulate_cohort`` exactly for the same seeds; control, stimulated and
reward-added cohorts from the same seeds see the same stimulus sequence.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from envs import rng
from mouse_rl.analysis import session_metrics
from mouse_rl.network import TrialStep, Weights, trial_update
from mouse_rl.params import ModelParams

from ._common import DELTAS

__all__ = ["SIGNALS", "OPTO_STREAM", "OptoProtocol", "OptoComparison", "stimulated", "signal_offset",
           "opto_step", "simulate_opto", "compare_opto"]

#: What a protocol may add ``kappa`` to: one teaching signal (in ``delta_offset`` order) or the reward.
SIGNALS = DELTAS + ("reward",)
TIMINGS = ("stimulus", "outcome")
CONTINGENCIES = ("all", "stimulus", "choice", "reward")
#: Counter-RNG stream of the "is this trial stimulated" draws (probability < 1).
OPTO_STREAM = 101


@dataclass(frozen=True)
class OptoProtocol:
    """Which trials are stimulated and what is added.

    signal : "delta_tot" | "delta_stim" | "delta_const" (optogenetics) or
        "reward" (add ``kappa`` to the reward the network learns from).
    kappa : amount added (reward units).
    timing : "stimulus" or "outcome" (see module doc).
    contingency : "all" trials, trials whose "stimulus" is on ``side``, whose
        "choice" is ``side``, or "reward" (rewarded trials; ``side`` ignored).
    side : 0 = Left, 1 = Right (stimulus side or chosen action).
    probability : fraction of eligible trials stimulated (per-mouse counter RNG).
    sessions : (first, last) sessions with stimulation, inclusive; None = all.
    """

    signal: str = "delta_stim"
    kappa: float = 0.5
    timing: str = "outcome"
    contingency: str = "stimulus"
    side: int = 1
    probability: float = 1.0
    sessions: tuple | None = None

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"signal: must be one of {SIGNALS}, got {self.signal!r}")
        if self.timing not in TIMINGS:
            raise ValueError(f"timing: must be one of {TIMINGS}, got {self.timing!r}")
        if self.contingency not in CONTINGENCIES:
            raise ValueError(f"contingency: must be one of {CONTINGENCIES}, got {self.contingency!r}")
        if self.timing == "stimulus" and self.contingency in ("choice", "reward"):
            raise ValueError(f"contingency: a stimulus-timed pulse cannot depend on the {self.contingency} "
                             "(not known at stimulus onset); use timing='outcome'")
        if self.side not in (0, 1):
            raise ValueError(f"side: must be 0 (Left) or 1 (Right), got {self.side!r}")
        if not (np.isfinite(self.kappa)):
            raise ValueError(f"kappa: must be finite, got {self.kappa!r}")
        if not 0 <= self.probability <= 1:
            raise ValueError(f"probability: must lie in [0, 1], got {self.probability!r}")
        if self.sessions is not None and (len(self.sessions) != 2 or self.sessions[0] > self.sessions[1]):
            raise ValueError(f"sessions: must be (first, last) with first <= last, got {self.sessions!r}")


def stimulated(protocol: OptoProtocol, signed_contrast, choice, reward, session: int, seeds, t: int) -> torch.Tensor:
    """Boolean ``(n_mice,)``: which mice are stimulated on global trial ``t``."""
    c = signed_contrast
    if protocol.contingency == "all":
        mask = torch.ones_like(c, dtype=torch.bool)
    elif protocol.contingency == "stimulus":
        mask = (c > 0) if protocol.side == 1 else (c < 0)
    elif protocol.contingency == "choice":
        mask = choice == protocol.side
    else:
        mask = reward > 0.5
    if protocol.sessions is not None and not protocol.sessions[0] <= session <= protocol.sessions[1]:
        mask = torch.zeros_like(mask)
    if protocol.probability < 1:
        mask = mask & (rng.uniform(seeds, OPTO_STREAM, t) < protocol.probability)
    return mask


def signal_offset(signal: str, kappa, mask: torch.Tensor, dtype=torch.float32) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(delta_offset ``(..., 3)`` or None, reward addition ``(...)``) for stimulated ``mask``."""
    amount = kappa * mask.to(dtype)
    if signal == "reward":
        return None, amount
    if signal not in SIGNALS:
        raise ValueError(f"signal: must be one of {SIGNALS}, got {signal!r}")
    offset = torch.zeros(*mask.shape, 3, dtype=dtype, device=mask.device)
    offset[..., SIGNALS.index(signal)] = amount
    return offset, torch.zeros_like(amount)


def opto_step(weights: Weights, x, choice, reward, eta, signal: str, kappa, positive: bool = True,
              mask: torch.Tensor | None = None) -> TrialStep:
    """One learning step with ``kappa`` added to ``signal`` (on ``mask``; default all)."""
    mask = torch.ones(choice.shape, dtype=torch.bool, device=choice.device) if mask is None else mask
    offset, extra = signal_offset(signal, kappa, mask, reward.dtype)
    return trial_update(weights, x, choice, reward + extra, eta, positive, delta_offset=offset)


def simulate_opto(protocol: OptoProtocol | None = None, n_mice: int = 30, n_sessions: int = 25,
                  trials_per_session: int | None = None, params: ModelParams | None = None, task=None,
                  seed: int = 0, seeds=None, device="cpu", dtype=torch.float32,
                  record_weights: bool = False):
    """Train a cohort with stimulation (``protocol``; None = control). Returns a
    :class:`mouse_rl.simulate.CohortResult` whose trial table also has
    ``stimulated`` (bool) and, with ``record_weights``, the weight columns per
    trial (weights *before* that trial's update). The logged ``delta_*``
    include the added ``kappa``; ``reward`` is the task reward (without it).
    This is :func:`mouse_rl.simulate.simulate_cohort` with a stimulation hook.
    """
    from mouse_rl.simulate import simulate_cohort  # noqa: PLC0415

    def hook(t, session, c, choice, reward, seeds_):
        mask = stimulated(protocol, c, choice, reward, session, seeds_, t)
        offset, extra = signal_offset(protocol.signal, protocol.kappa, mask, dtype)
        return mask, offset, extra

    result = simulate_cohort(n_mice, n_sessions, trials_per_session, params, task, seed, seeds, device, dtype,
                             record_weights="trial" if record_weights else "session", progress=False,
                             stimulation=None if protocol is None else hook)
    if protocol is None:
        result.trials["stimulated"] = False
    result.meta["protocol"] = None if protocol is None else asdict(protocol)
    return result


#: The arms of :func:`compare_opto`, in plotting order.
ARMS = ("control", "opto", "reward")


@dataclass
class OptoComparison:
    """``trials`` / ``weights``: the three arms stacked (column ``arm``:
    "control", "opto", "reward"); ``summary``: per arm and session, accuracy
    on c != 0 and P(Right) per stimulus side (``p_right_left/zero/right``),
    both from :func:`mouse_rl.analysis.session_metrics`, fraction stimulated
    and the session-end weights; ``protocol``: the optogenetic protocol."""

    trials: pd.DataFrame
    weights: pd.DataFrame
    summary: pd.DataFrame
    protocol: OptoProtocol

    def plot(self, columns=("accuracy", "p_right_left", "p_right_right", "a_L", "a_R", "U_Lb", "U_Rb")):
        """Figure: one panel per summary column vs session, one line per arm."""
        import seaborn as sns  # noqa: PLC0415

        from ._common import figure  # noqa: PLC0415

        fig, axes = figure(len(columns), (3.2, 2.8))
        for ax, col in zip(axes, columns):
            sns.lineplot(data=self.summary, x="session", y=col, hue="arm", hue_order=list(ARMS), ax=ax,
                         errorbar=("se", 1), legend=ax is axes[-1])
            ax.set(title=col)
        return fig


def _stack_arms(tables: dict) -> pd.DataFrame:
    """One table per arm -> one table with an ordered categorical ``arm`` column."""
    out = pd.concat([table.assign(arm=arm) for arm, table in tables.items()], ignore_index=True)
    out["arm"] = pd.Categorical(out["arm"], categories=ARMS, ordered=True)
    return out


def compare_opto(protocol: OptoProtocol, **kwargs) -> OptoComparison:
    """Simulate control, ``protocol`` and the same protocol with ``signal="reward"`` from the same seeds.

    ``kwargs`` go to :func:`simulate_opto` (n_mice, n_sessions, params, seed, ...).
    """
    if protocol.signal == "reward":
        raise ValueError("protocol.signal: give an optogenetic signal (delta_*); the reward arm is added for you")
    runs = {"control": simulate_opto(None, **kwargs), "opto": simulate_opto(protocol, **kwargs),
            "reward": simulate_opto(replace(protocol, signal="reward"), **kwargs)}
    trials = _stack_arms({arm: r.trials for arm, r in runs.items()})
    weights = _stack_arms({arm: r.weights for arm, r in runs.items()})
    behaviour = _stack_arms({arm: session_metrics(r.trials) for arm, r in runs.items()})
    keys = ["arm", "mouse", "session"]
    stimulated = trials.groupby(keys, observed=True)["stimulated"].mean().reset_index()
    p_right = [c for c in behaviour.columns if c.startswith("p_right_")]
    summary = behaviour[keys + ["accuracy"]].merge(stimulated, on=keys, how="left")
    summary = summary.merge(behaviour[keys + p_right], on=keys).merge(weights, on=keys, how="left")
    return OptoComparison(trials, weights, summary, protocol)
