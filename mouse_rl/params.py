"""Model hyperparameters, per mouse.

Every numeric field may be a scalar (shared by the cohort) or a sequence /
tensor with one value per mouse. :meth:`ModelParams.tensors` broadcasts them
to ``(n_mice,)`` tensors on the requested device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np
import torch

ENCODINGS = ("side", "magnitude", "graded")
ZERO_REWARD_MODES = ("expected", "random")


class NetParams(NamedTuple):
    """Per-mouse hyperparameter tensors, each of shape ``(n_mice,)``."""

    eta: torch.Tensor
    beta: torch.Tensor
    w0: torch.Tensor
    k: torch.Tensor
    s0: torch.Tensor
    b_L: torch.Tensor
    b_R: torch.Tensor
    lapse: torch.Tensor
    #: per-side skew of the initial stimulus channels (an option; 0 = mouse_rl/MODEL.md; see PARAMS).
    #: Last, with a default, so that code building NetParams from the eight MODEL.md fields keeps working.
    stim_skew: torch.Tensor | float = 0.0
    #: stimulus cross-talk (an option; 0 = mouse_rl/MODEL.md; see PARAMS and :func:`mouse_rl.network.encode`).
    crosstalk: torch.Tensor | float = 0.0
    #: fading innate side preference (an option; 0 = mouse_rl/MODEL.md; see PARAMS and
    #: :func:`mouse_rl.network.side_preference`): its size (logit units) and time constant (trials).
    side_pref: torch.Tensor | float = 0.0
    side_pref_tau: torch.Tensor | float = 1000.0


@dataclass(frozen=True)
class ParamSpec:
    """Everything the library knows about one numeric hyperparameter (the one registry).

    Attributes
    ----------
    name : field name in :class:`ModelParams` / :class:`NetParams`.
    default : model default (mouse_rl/MODEL.md).
    legal : ``(lower, upper, lower inclusive)`` range a user may set.
    transform : ``"log"``, ``"logit"`` or ``"identity"`` (an unbounded parameter): the unconstrained
        coordinate used in fitting.
    fit_bounds : natural-unit box of fitting (keeps every fitted network finite).
    init_range : natural-unit box of the free-running fit's start design (:mod:`mouse_rl.fit.freerun`, widened
        there) and of :attr:`start_range` where that is not given.
    start_range : natural-unit box the Sobol restart design of the MAP fits is spread over
        (:meth:`mouse_rl.fit.transforms.ParamTransform.starts`; log/logit/identity scale); empty = ``init_range``.
    fit_start : start value of restart 0 (the default, moved off a 0 boundary).
    prior_centre, prior_sd : weakly informative Gaussian prior of MAP fits, in the
        unconstrained coordinate (centre given in natural units, sd in log / logit / natural units).
    flag : command-line option.
    unit : unit / meaning for help texts.
    recovery_range : ``(low, high, scale)`` natural-unit range that parameter-recovery studies draw true
        values from, ``scale`` ``"log"`` (log-uniform) or ``"linear"``: a simulated population (it may
        reach 0, unlike ``init_range``, where the fit starts).
    """

    name: str
    default: float
    legal: tuple
    transform: str
    fit_bounds: tuple
    init_range: tuple
    fit_start: float
    prior_centre: float
    prior_sd: float
    flag: str
    unit: str
    recovery_range: tuple = ()
    start_range: tuple = ()


#: The parameter registry, in :class:`NetParams` order. Priors: lapse logit-normal around 0.02 (95%: 0.001-0.3),
#: so the lapse cannot drift to its bound to absorb the start of learning; beta log-normal around 9
#: (95%: 1.3-64); the learning and initial-weight parameters get sd 2 (a factor e^4 = 55 either way).
#: ``stim_skew`` (an option, not fitted by default: ``fit_mice(free=(..., "stim_skew"))``, ``mouse-rl fit
#: --fit-skew``) skews the initial strength of the two stimulus channels: with e = exp(stim_skew / 2), the
#: cortical gains start at a_L0 = w0 / e, a_R0 = w0 e and the striatal stimulus weights at U[., L]0 = s0 / e,
#: U[., R]0 = s0 e. In the deep network a channel's plateau (escape) time grows like ln(1 / (a0 U0)), so a skew
#: lets a fit say one stimulus is learned much later than the other (one-sided learners). Skewing the gain
#: alone was tried first and closed less of the generative gap (the fitted s0 is often >> w0, and then the
#: striatal weights, not the gain, set the plateau). Prior N(0, 2^2); 0 = mouse_rl/MODEL.md.
#: ``crosstalk`` (an option, not fitted by default: ``fit_mice(free=(..., "crosstalk"))``, ``mouse-rl fit
#: --fit-crosstalk``) lets a grating also drive the other side's stimulus channel: the stimulus inputs become
#: x_L + g x_R and x_R + g x_L (side encoding: left [1, g, 1], right [g, 1, 1], zero unchanged;
#: :func:`mouse_rl.network.encode`), generalisation between the two stimuli. With g > 0 a left learner's
#: "stimulus -> Left" association also pulls right-stimulus choices to Left, the non-monotonic late
#: psychometric 15 of the 25 Liebana mice show and the MODEL.md network cannot make (README, "The mice's
#: non-monotonic late psychometric"). Prior logit-normal around 0.1 with sd 2 (95%: 0.002-0.85); 0 = MODEL.md.
#: ``side_pref`` rho and ``side_pref_tau`` tau (an option, fitted together: ``fit_mice(free=(..., "side_pref",
#: "side_pref_tau"))``, ``mouse-rl fit --fit-side-pref``): an innate side preference added to the policy's logit,
#: rho exp(-t / tau) with t the trial index from the mouse's first trial (:func:`mouse_rl.network.side_preference`):
#: the start bias of a naive mouse without the bias weights, so that it fades whatever the constant channel
#: learns. It acts on the choice only (learning uses the choice made, not its probability). Priors N(0, 3^2) for
#: rho and log-normal around 2000 trials with sd 2 for tau (95%: 40-100,000 trials); rho = 0 = MODEL.md.
#: ``start_range``: the MAP fits' Sobol restarts spread over where fitted optima of real mice lie (on the 25
#: Liebana mice beta reaches 175, w0 3.8, s0 6.7, the bias weights their bound 10 and the lapse 0.35, far outside
#: ``init_range``); on those mice this box found optima 42 and 96 log-posterior units better in total for fit
#: seeds 0 and 1 (README, fits you can trust).
PARAMS: dict[str, ParamSpec] = {s.name: s for s in (
    ParamSpec("eta", 0.0026, (0.0, 1.0, False), "log", (1e-6, 0.2), (5e-4, 2e-2), 0.0026, 0.0026, 2.0,
              "--eta", "learning rate per trial", (0.005, 0.03, "log")),
    ParamSpec("beta", 9.0, (0.0, 1000.0, True), "log", (1e-2, 200.0), (2.0, 20.0), 9.0, 9.0, 1.0,
              "--beta", "softmax inverse temperature (1 / value unit)", (4.0, 15.0, "linear"),
              start_range=(2.0, 200.0)),
    ParamSpec("w0", 0.05, (0.0, 100.0, True), "log", (1e-6, 10.0), (0.01, 0.5), 0.05, 0.05, 2.0,
              "--w0", "initial stimulus cortical gain; small = deep, 1 = shallow", (0.02, 0.2, "log"),
              start_range=(0.01, 5.0)),
    ParamSpec("k", 1.0, (0.0, 100.0, True), "log", (1e-3, 10.0), (0.5, 2.0), 1.0, 1.0, 1.0,
              "--k", "initial bias cortical gain", (0.5, 2.0, "log")),
    ParamSpec("s0", 0.2, (0.0, 100.0, True), "log", (1e-6, 10.0), (0.05, 0.5), 0.2, 0.2, 2.0,
              "--s0", "initial striatal stimulus weights", (0.1, 0.4, "linear"),
              start_range=(0.05, 8.0)),
    ParamSpec("b_L", 0.0, (0.0, 100.0, True), "log", (1e-6, 10.0), (0.01, 0.3), 0.05, 0.05, 2.0,
              "--b-left", "initial left bias weight U[L, b]", (0.0, 0.3, "linear"),
              start_range=(0.01, 10.0)),
    ParamSpec("b_R", 0.0, (0.0, 100.0, True), "log", (1e-6, 10.0), (0.01, 0.3), 0.05, 0.05, 2.0,
              "--b-right", "initial right bias weight U[R, b]", (0.0, 0.3, "linear"),
              start_range=(0.01, 10.0)),
    ParamSpec("lapse", 0.0, (0.0, 1.0, True), "logit", (1e-6, 0.5), (0.005, 0.1), 0.02, 0.02, 1.5,
              "--lapse", "lapse rate; P(R) <- lapse/2 + (1 - lapse) P(R)", (0.0, 0.1, "linear"),
              start_range=(0.005, 0.3)),
    ParamSpec("stim_skew", 0.0, (-20.0, 20.0, True), "identity", (-10.0, 10.0), (-2.0, 2.0), 0.0, 0.0, 2.0,
              "--stim-skew", "per-side skew of the initial stimulus channels: a_L0, U[., L]0 scaled by "
              "exp(-skew/2), a_R0, U[., R]0 by exp(+skew/2); 0 = symmetric (MODEL.md)", (-3.0, 3.0, "linear")),
    ParamSpec("crosstalk", 0.0, (0.0, 1.0, True), "logit", (1e-4, 0.95), (0.02, 0.5), 0.1, 0.1, 2.0,
              "--crosstalk", "stimulus cross-talk: a grating drives the other side's stimulus input by this fraction "
              "(side encoding: left [1, g, 1], right [g, 1, 1]); 0 = MODEL.md", (0.0, 0.5, "linear"),
              start_range=(0.01, 0.8)),
    ParamSpec("side_pref", 0.0, (-50.0, 50.0, True), "identity", (-15.0, 15.0), (-3.0, 3.0), 0.0, 0.0, 3.0,
              "--side-pref", "innate side preference (logit units, + = Right) added to the policy, fading as "
              "exp(-trial / side_pref_tau); 0 = MODEL.md", (-3.0, 3.0, "linear")),
    ParamSpec("side_pref_tau", 1000.0, (0.0, 1e9, False), "log", (30.0, 1e5), (300.0, 5000.0), 2000.0, 2000.0, 2.0,
              "--side-pref-tau", "time constant of the innate side preference (trials from the first)",
              (300.0, 3000.0, "log"), start_range=(100.0, 20000.0)),
)}


def check_names(names, option: str = "free") -> tuple[str, ...]:
    """``names`` (one name or several) as a tuple of registry parameters; a ValueError naming ``option`` if
    empty, unknown or repeated."""
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise ValueError(f"{option}: give at least one parameter; choose from {', '.join(PARAMS)}")
    unknown = [name for name in names if name not in PARAMS]
    if unknown:
        raise ValueError(f"{option}: unknown parameter(s) {unknown}; choose from {', '.join(PARAMS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{option}: duplicate names in {list(names)}")
    return names

_RANGES = {name: spec.legal for name, spec in PARAMS.items()}


@dataclass(frozen=True)
class ModelParams:
    """Hyperparameters of the cortex -> striatum network (mouse_rl/MODEL.md sections 2-3).

    Parameters
    ----------
    eta : learning rate per trial (dimensionless), in (0, 1]. Default 0.0026.
    beta : softmax inverse temperature (1 / value unit). Default 9.
    w0 : initial cortical gain of the two stimulus channels. Small = deep. Default 0.05.
    k : initial cortical gain of the constant (bias) channel. Default 1.
    s0 : initial striatal weight of every stimulus entry of U. Default 0.2.
    b_L, b_R : initial striatal bias weights U[L, b], U[R, b]. Default 0.
    lapse : lapse rate; P(R) <- lapse/2 + (1 - lapse) P(R). Default 0.
    stim_skew : per-side skew of the initial stimulus channels: a_L0 = w0 / e, a_R0 = w0 e, U[., L]0 = s0 / e,
        U[., R]0 = s0 e with e = exp(stim_skew / 2). Default 0 (mouse_rl/MODEL.md). An option: it lets one
        stimulus channel start on a much longer plateau than the other.
    crosstalk : stimulus cross-talk g in [0, 1]: the stimulus inputs become x_L + g x_R and x_R + g x_L
        (:func:`mouse_rl.network.encode`). Default 0 (mouse_rl/MODEL.md). An option: generalisation between
        the two stimuli.
    side_pref, side_pref_tau : innate side preference rho (logit units, + = Right) and its time constant tau
        (trials, > 0): rho exp(-t / tau) is added to the policy's logit on trial t (from the mouse's first
        trial; :func:`mouse_rl.network.side_preference`). Default rho = 0 (mouse_rl/MODEL.md), tau = 1000.
    encoding : ``"side"`` (x = [1,0,1] left, [0,1,1] right, [0,0,1] zero) or
        ``"magnitude"`` (x = [max(-c,0), max(c,0), 1]) or ``"graded"`` (x = [g(c_L), g(c_R), 1], a
        saturating contrast response with g(1) = 1: :func:`mouse_rl.network.graded_contrast`).
    positive : take absolute values of all weights after each update.
    zero_reward : reward the model learns from at c = 0: ``"expected"`` (0.5)
        or ``"random"`` (the drawn reward).
    jitter : std of the Gaussian jitter added to every initial weight.
    """

    eta: object = PARAMS["eta"].default
    beta: object = PARAMS["beta"].default
    w0: object = PARAMS["w0"].default
    k: object = PARAMS["k"].default
    s0: object = PARAMS["s0"].default
    b_L: object = PARAMS["b_L"].default
    b_R: object = PARAMS["b_R"].default
    lapse: object = PARAMS["lapse"].default
    encoding: str = "side"
    positive: bool = True
    zero_reward: str = "expected"
    jitter: float = 1e-5
    stim_skew: object = PARAMS["stim_skew"].default
    crosstalk: object = PARAMS["crosstalk"].default
    side_pref: object = PARAMS["side_pref"].default
    side_pref_tau: object = PARAMS["side_pref_tau"].default

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.zero_reward not in ZERO_REWARD_MODES:
            raise ValueError(f"zero_reward: must be one of {ZERO_REWARD_MODES}, got {self.zero_reward!r}")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise ValueError(f"jitter: must be finite and >= 0, got {self.jitter}")
        for name, (lo, hi, lo_incl) in _RANGES.items():
            value = getattr(self, name)
            arr = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value, dtype=float)
            if arr.ndim > 1:
                raise ValueError(f"{name}: give a scalar or one value per mouse, got shape {arr.shape}")
            bad = ~np.isfinite(arr) | (arr > hi) | ((arr < lo) if lo_incl else (arr <= lo))
            if bad.any():
                first = arr.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
                bracket = "[" if lo_incl else "("
                raise ValueError(f"{name}: must lie in {bracket}{lo}, {hi}], got {float(first)!r}")

    @classmethod
    def numeric_fields(cls) -> tuple[str, ...]:
        return NetParams._fields

    def replace(self, **changes) -> "ModelParams":
        return replace(self, **changes)

    def n_mice_hint(self) -> int | None:
        """Number of mice implied by per-mouse fields (None if all scalar)."""
        sizes = {int(np.shape(getattr(self, f))[0]) for f in NetParams._fields if np.ndim(getattr(self, f)) == 1}
        if len(sizes) > 1:
            raise ValueError(f"per-mouse parameters have inconsistent lengths {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def tensors(self, n_mice: int, device=None, dtype=torch.float32) -> NetParams:
        """Broadcast every numeric field to a ``(n_mice,)`` tensor."""
        out = []
        for name in NetParams._fields:
            value = getattr(self, name)
            value = torch.as_tensor(value if torch.is_tensor(value) else np.array(value), dtype=dtype, device=device)
            if value.ndim == 1 and value.shape[0] not in (1, n_mice):
                raise ValueError(f"{name}: {value.shape[0]} per-mouse values for {n_mice} mice")
            out.append(value.expand(n_mice).clone() if value.ndim == 0 or value.shape[0] == 1 else value)
        return NetParams(*out)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
assert tuple(PARAMS) == NetParams._fields, "PARAMS must follow NetParams order"
