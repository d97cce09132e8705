"""The noisy learner: the network's learning rule as the drift of trial-by-trial weights (issue 12).

Model
-----
The state of mouse m on trial t is its nine weights ``w_t = (a, U)`` (a: 3
cortical gains, U: 2 x 3 striatal matrix, in :data:`mouse_rl.schema.WEIGHT_COLUMNS`
order), kept as log-weights ``z_t = log w_t``::

    z_0      ~ N(log w_init, sigma_init^2 I)
    z_{t+1}  = f_t(z_t) + eps_t,   eps_t ~ N(0, diag s_t^2)
    f_t(z)   = log trial_update(exp z, x_t, choice_t, reward_t; eta)     (mouse_rl.network, positive=True)
    choice_t ~ Bernoulli(P(R | exp z_t, x_t; beta, lapse))              (mouse_rl.network.forward / p_right)

``s_t`` is ``sigma_a`` for the three gains and ``sigma_U`` for the six striatal
weights, and ``sigma_day_a`` / ``sigma_day_U`` on the first trial of a new
session (the overnight jump). ``w_init`` = ``(w0, w0, k)`` and
``[[s0, s0, b_L], [s0, s0, b_R]]`` as in :func:`mouse_rl.network.init_weights`.
The learner is teacher-forced exactly as the deterministic fit is: x, the
choice and the learning reward are the mouse's own, on every trial (also on
held-out ones; only their choice probability is left out of the objective).

Positivity. The network keeps every weight non-negative by ``w <- |w|`` after
each update. Here the noise is added to log-weights, so every weight stays
positive whatever the noise (multiplicative noise: sigma is a relative change
per trial); the deterministic part still applies the network's ``|.|``. A
weight that the rule sets to (almost) exactly 0 is floored at
:data:`W_FLOOR` before the log. With every sigma -> 0 the model is the
deterministic network, trial for trial (``tests/test_statespace.py`` checks
the likelihood against :func:`mouse_rl.fit.log_likelihood`).

Variants (options of :func:`fit_noisy`; the default is the model above)
------------------------------------------------------------------------
``noise="linear"``: the state is the weights themselves, ``w_{t+1} = trial_update(w_t; eta) + eps_t``
(additive Gaussian noise, sds in weight units; the rule without its ``|.|``, so weights may change sign).
``frozen=("a",)`` (or ``("U",)``): that weight group is held at its initial values - it neither learns nor
drifts and is not part of the state (its coordinates are pinned to ``w_init``, carry no prior terms, and
are cut out of the Hessian and of log det H; its band has zero width).

``sigma_per="column"``: U's noise sds per input column instead of per group -- ``sigma_U_stimL``,
``sigma_U_stimR``, ``sigma_U_bias`` within a session and ``sigma_day_U_*`` across a boundary, shared by both rows
of the column. With the variant below they are PsyTrack's per-weight sigma and sigDay
(``tests/test_statespace_psytrack.py`` checks the equivalence with different sds per weight).

PsyTrack as a special case. With ``noise="linear"``, ``frozen=("a",)``, eta = 0, the magnitude encoding
``x = (cL, cR, 1)``, ``w0 = k = c`` and ``b_L = b_R``, the log-odds of R are
``beta c sum_j x_j (U_Rj - U_Lj)``: the differences ``w_j = beta c (U_Rj - U_Lj)`` are PsyTrack's (cL, cR,
bias) weights, a Gaussian random walk with prior mean 0 and sds ``beta c sqrt(2)`` times (sigma_U,
sigma_day_U, sigma_init); the sums ``U_Rj + U_Lj`` are Gaussian coordinates the likelihood does not see and
integrate out exactly. The MAP trajectory is then PsyTrack's (a linear map of it) and the Laplace evidence
equals PsyTrack's (a Laplace evidence is invariant under linear changes of variables and exact in such
coordinates): ``tests/test_statespace_psytrack.py`` checks both against ``psytrack.getMAP`` with the
hyperparameters fixed (300 simulated trials, 3 sessions: weights within 1e-4, evidence within 1e-4 nats;
measured 9e-6 and 6e-6, PsyTrack's own optimiser tolerance). Why a variant: under the default log-weight
noise the eta = 0 model is a random walk on log-weights, whose log-odds are nonlinear in the state, so it
is not PsyTrack's model for any setting; and with both groups latent the log-odds are bilinear in (a, U).

Inference
---------
For given hyperparameters the MAP trajectory ``z*`` maximises the joint log
posterior ``L(z) = sum_t [t scored] log P(choice_t | z_t) + log p(z)``. Its
negative Hessian is block tridiagonal (9 x 9 blocks, one per trial). Newton's
method (:func:`find_mode`) takes exact Newton steps where the exact Hessian is
positive definite and Gauss-Newton steps otherwise (the Gauss-Newton form,
always positive definite: per trial the Bernoulli Fisher
``grad p grad p^T / (p (1 - p))``, per transition ``J^T P J`` on the diagonal
and ``-P J`` off it), with a per-mouse backtracking line search. ``J`` and the
second derivatives come from :func:`torch.func.jvp` / autograd through
:func:`mouse_rl.network.trial_update` (no second implementation of the rule).
Each step is one block-tridiagonal solve, O(T 9^3) per mouse
(:mod:`mouse_rl.fit.banded`: numba on CPU, cyclic reduction in torch elsewhere).
When the model is affine (``noise="linear"`` with the gains frozen: the rule's step is affine in U for fixed
gains and the log-odds are linear in U) two shortcuts are exact: the rule's Jacobian does not depend on the
state, so it is computed once per value of (eta, w0, k) and reused; and the exact Hessian has no second
derivatives of the rule and a rank-one likelihood block per trial, obtained by one Hessian-vector product
(tests check both against dense autograd and fresh computation).

Evidence. The Laplace approximation of ``log p(choices | hyperparameters)``
at the mode, ``E = L(z*) - 1/2 log det H(z*)`` (the 2 pi terms cancel), with
H the Gauss-Newton Hessian above. Hyperparameters are fitted per mouse by
maximising ``E`` plus a weak log-normal hyperprior (:data:`HYPERS`; MAP-II) with
a batched BFGS, by default starting from the deterministic network's MAP fit
(``start="network"``, the sigma -> 0 limit). ``search="newton"``: a trust-region Newton search on a
finite-difference Hessian of the exact gradient, scaled per coordinate (for eta free: :func:`_newton_tr`). Its gradient
(:func:`evidence_gradient`) is exact by default: every explicit dependence
(likelihood, transition densities, and ``log det H`` through P, J, beta and
eta via ``tr(H^-1 dH)`` with the selected inverse) plus the implicit term
``d z*/d theta = H_exact^-1 d grad L / d theta`` (tests check it against finite
differences); ``exact=False`` holds the mode fixed inside ``log det H``
(decoupled; faster, biased in beta).

BFGS starts from 0.1 I, rescaled after the first step by the first curvature pair (``s^T y / y^T y``,
Nocedal & Wright eq. 6.20); a mouse stops when a step gains less than ``tol`` nats and the quasi-Newton
model predicts less than ``tol`` more, or when no step along its direction gains. The search works on an
active set: once a mouse stops, later iterations solve only the others (:func:`_subset`; the same numbers as
solving every mouse every iteration, where a stopped mouse takes zero steps). Several starts
(``start=("network", "psytrack")``): one search from each, and per mouse the one ending at the higher Laplace
evidence is kept (``give_up`` stops a later start's search early for a mouse already far behind).
In the affine variant the rule's transition is evaluated as ``c + J z`` from the cached Jacobian (equal to the
rule to rounding; tested).

Population prior (``population=("eta", "beta")``, an option). Each mouse's evidence can be flat along a
hyperparameter (eta of a mouse whose weights the noise can move as well as the rule; beta against the noise
sds, since the log-odds' noise is beta x sigma), and then the weak prior of :data:`HYPERS` lets it drift.
Empirical Bayes across the mice of the call: a Gaussian population prior on the named transformed
hyperparameters, its mean and sd maximising the Laplace-approximated marginal likelihood (each mouse's
evidence as a Gaussian from its gradient and finite-difference Hessian, :func:`_population_mle`), then every
mouse refitted under it, until the estimates stop moving (:func:`_population_prior`). On simulated noisy
learners this is what makes eta, sigma and the bands recoverable (README).

Closed form of the affine variant (``closed_form=True``, the default; :func:`_affine_terms`,
:func:`_affine_surrogate`). There the log-odds are ``l = beta G . z`` with ``G`` fixed by the inputs and the
frozen gains (:func:`_odds_direction`, one reverse pass through :func:`mouse_rl.network.forward`, cached), so
every likelihood derivative is a scalar function of ``l`` times ``beta G`` or ``beta^2 G G^T``; the prior's
blocks (``J^T P J``, ``diag P``, ``-P J``) depend on the hyperparameters only and are cached. The Newton terms,
the exact Hessian and the evidence gradient (the trace ``tr(S dH)`` reduced to per-trial scalars) then need
no autograd through the rule or the policy, and every block-tridiagonal solve runs on the 6 latent
coordinates instead of 9 (:func:`_solve`). The numbers are those of the autograd path to rounding (tested,
1e-12 relative; the solves bit for bit) and a mouse's numbers do not depend on its batch
(:func:`_lanes`), so the active set stays exact. The whole fit takes about half the time.

Held-out predictive (:func:`trial_logp`): plug-in at the MAP, a sampled average over each trial's marginal
posterior, or its probit (MacKay) approximation ``sigmoid(l* / sqrt(1 + pi s^2 / 8))`` of the log-odds'
posterior ``N(l*, s^2)`` (exactly Gaussian in the affine model; deterministic and cheap).

Bands. ``cov`` = diagonal blocks of ``H^-1`` at the mode: the marginal
posterior of each trial's log-weights is ``N(z*_t, cov_t)``; a weight's 95 %
band is ``exp(z* +- 1.96 sd)`` (log-normal).

Entry point: :func:`fit_noisy` -> :class:`NoisyFit`; cross-validation:
:class:`NoisyNetworkModel`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from torch.func import jvp, vmap

from ..network import Weights, encode, forward, init_weights, learning_reward, log_policy, p_right, stimulus_reward
from ..network import MAX_WEIGHT, flat_weights, trial_update, weights_from_flat
from ..params import ModelParams
from ..schema import WEIGHT_COLUMNS
from .banded import solve_chains
from .batch import learning_reward as table_learning_reward
from .batch import prepare_trials

#: Smallest weight before the log (a weight the rule sets to exactly 0).
W_FLOOR = 1e-12
D_STATE = 9


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: default (natural units), transform, weak hyperprior and fitting box."""

    default: float
    transform: str  # "log" or "logit"
    prior_centre: float
    prior_sd: float  # in the transformed coordinate
    bounds: tuple
    unit: str


#: Hyperparameters of the noisy learner. Noise sds are in log-weight units (relative change). Initial weights
#: are bounded below by 1e-3: the log-weight Jacobian of the rule, (w / w') dw'/dw, explodes for weights near 0.
HYPERS: dict[str, Hyper] = {
    "eta": Hyper(0.0026, "log", 0.0026, 2.0, (1e-6, 0.5), "learning rate per trial"),
    "beta": Hyper(9.0, "log", 9.0, 1.0, (0.01, 200.0), "softmax inverse temperature (1 / value unit)"),
    "sigma_a": Hyper(0.01, "log", 0.01, 2.0, (1e-5, 1.0), "per-trial noise sd of log cortical gains"),
    "sigma_U": Hyper(0.01, "log", 0.01, 2.0, (1e-5, 1.0), "per-trial noise sd of log striatal weights"),
    "sigma_day_a": Hyper(0.1, "log", 0.1, 2.0, (1e-4, 3.0), "noise sd of log gains between sessions"),
    "sigma_day_U": Hyper(0.1, "log", 0.1, 2.0, (1e-4, 3.0), "noise sd of log striatal weights between sessions"),
    "sigma_U_stimL": Hyper(0.01, "log", 0.01, 2.0, (1e-5, 1.0), "per-trial noise sd of U[:, L-stim] (sigma_per='column')"),
    "sigma_U_stimR": Hyper(0.01, "log", 0.01, 2.0, (1e-5, 1.0), "per-trial noise sd of U[:, R-stim] (sigma_per='column')"),
    "sigma_U_bias": Hyper(0.01, "log", 0.01, 2.0, (1e-5, 1.0), "per-trial noise sd of U[:, bias] (sigma_per='column')"),
    "sigma_day_U_stimL": Hyper(0.1, "log", 0.1, 2.0, (1e-4, 3.0), "session-boundary noise sd of U[:, L-stim] (column)"),
    "sigma_day_U_stimR": Hyper(0.1, "log", 0.1, 2.0, (1e-4, 3.0), "session-boundary noise sd of U[:, R-stim] (column)"),
    "sigma_day_U_bias": Hyper(0.1, "log", 0.1, 2.0, (1e-4, 3.0), "session-boundary noise sd of U[:, bias] (column)"),
    "sigma_init": Hyper(1.0, "log", 1.0, 1.0, (1e-3, 5.0), "prior sd of the initial log-weights"),
    "w0": Hyper(0.05, "log", 0.05, 2.0, (1e-3, 10.0), "initial stimulus cortical gain"),
    "k": Hyper(1.0, "log", 1.0, 1.0, (1e-3, 10.0), "initial bias cortical gain"),
    "s0": Hyper(0.2, "log", 0.2, 2.0, (1e-3, 10.0), "initial striatal stimulus weights"),
    "b_L": Hyper(0.05, "log", 0.05, 2.0, (1e-3, 10.0), "initial U[L, b]"),
    "b_R": Hyper(0.05, "log", 0.05, 2.0, (1e-3, 10.0), "initial U[R, b]"),
    "lapse": Hyper(0.0, "logit", 0.02, 1.5, (1e-4, 0.5), "lapse rate"),
}
#: Fitted by evidence by default: beta and the noise. eta is not: at small noise the evidence is extremely narrow
#: in eta (on DAP027 at sigma = 0.01 its gradient was ~3e6 nats per log unit), so the evidence search never
#: moved from its start and left the noise at its prior centre; eta comes from the deterministic network's fit
#: (``start="network"``, the sigma -> 0 limit) unless freed. With eta fixed there, the noise is fitted and the
#: held-out scores improve (README, noisy learner).
DEFAULT_FREE = ("beta", "sigma_a", "sigma_U", "sigma_day_a", "sigma_day_U")
#: Input columns of U (magnitude encoding: cL, cR, 1) and, with ``sigma_per="column"``, the names of their noise sds.
U_COLUMNS = ("stimL", "stimR", "bias")
COLUMN_SIGMAS = tuple(f"sigma_U_{c}" for c in U_COLUMNS)
COLUMN_DAY_SIGMAS = tuple(f"sigma_day_U_{c}" for c in U_COLUMNS)
SIGMA_PER = ("group", "column")
#: Fewest mice a population prior (``population=``) is estimated from.
MIN_POPULATION_MICE = 3


def default_free(frozen=(), sigma_per: str = "group") -> tuple:
    """The default free hyperparameters of a variant: beta and the noise sds of every latent weight group
    (``sigma_per="column"``: one per-trial and one session-boundary sd per input column of U, PsyTrack's
    per-weight sigma and sigDay, instead of ``sigma_U`` / ``sigma_day_U``). A frozen group has no noise sds
    (they would not enter the model)."""
    if sigma_per not in SIGMA_PER:
        raise ValueError(f"sigma_per: must be one of {SIGMA_PER}, got {sigma_per!r}")
    frozen = tuple(frozen or ())
    a = "a" not in frozen
    U = "U" not in frozen
    trial = (["sigma_a"] if a else []) + ((["sigma_U"] if sigma_per == "group" else list(COLUMN_SIGMAS)) if U else [])
    day = (["sigma_day_a"] if a else []) + ((["sigma_day_U"] if sigma_per == "group" else list(COLUMN_DAY_SIGMAS))
                                             if U else [])
    return tuple(["beta", *trial, *day])  # no group frozen, per group: DEFAULT_FREE


def _to_u(name, value):
    h = HYPERS[name]
    v = torch.as_tensor(value, dtype=torch.float64).clamp(*h.bounds)
    return torch.log(v) if h.transform == "log" else torch.log(v) - torch.log1p(-v)


def _from_u(name, u):
    h = HYPERS[name]
    lo, hi = (math.log(h.bounds[0]), math.log(h.bounds[1])) if h.transform == "log" else \
        (math.log(h.bounds[0] / (1 - h.bounds[0])), math.log(h.bounds[1] / (1 - h.bounds[1])))
    u = u.clamp(lo, hi)
    return torch.exp(u) if h.transform == "log" else torch.sigmoid(u)


# ----------------------------------------------------------------------------------------------------------------
# The model, through mouse_rl.network (the one definition of learning and policy)
# ----------------------------------------------------------------------------------------------------------------

NOISE = ("log", "linear")
GROUPS = {"a": slice(0, 3), "U": slice(3, 9)}


def _weights(z: torch.Tensor, noise: str = "log") -> Weights:
    return weights_from_flat(torch.exp(z) if noise == "log" else z)


def transition(z, x, choice, reward, eta, noise: str = "log", latent: torch.Tensor | None = None):
    """Mean of the next state: ``log |trial_update(exp z)|`` (floored at :data:`W_FLOOR`; ``noise="log"``) or
    ``trial_update(z)`` without ``|.|`` (``noise="linear"``). Coordinates outside ``latent`` (a frozen group)
    keep their value: they neither learn nor drift."""
    if noise == "log":
        step = trial_update(_weights(z), x, choice, reward, eta, positive=True)
        out = flat_weights(step.weights).clamp(min=W_FLOOR).log()
    else:
        out = flat_weights(trial_update(_weights(z, noise), x, choice, reward, eta, positive=False).weights)
    return out if latent is None else torch.where(latent, out, z)


def choice_logp(z, x, choice, beta, lapse, noise: str = "log"):
    """log P(observed choice | weights w(z)) in nats, :func:`mouse_rl.network.log_policy`."""
    q = forward(_weights(z, noise), x).q_tot
    return log_policy(q, beta, lapse).gather(-1, choice[..., None])[..., 0]


def prob_right(z, x, beta, lapse, noise: str = "log"):
    """P(R | weights w(z)), :func:`mouse_rl.network.p_right`."""
    return p_right(forward(_weights(z, noise), x).q_tot, beta, lapse)


def log_odds(z, x, beta, noise: str = "log"):
    """Log-odds of R before the lapse, ``beta (Q_R - Q_L)`` with Q from :func:`mouse_rl.network.forward`
    (the argument of the sigmoid in :func:`mouse_rl.network.p_right`), ``(N,)``, nats."""
    q = forward(_weights(z, noise), x).q_tot
    return beta * (q[..., 1] - q[..., 0])


def _row_grad(fn, z, graph: bool = False):
    """Value ``(N,)`` and per-row gradient ``(N, 9)`` of a row-wise scalar map, by one reverse pass."""
    with torch.enable_grad():
        zz = z if (graph and z.requires_grad) else z.detach().requires_grad_(True)
        v = fn(zz)
        g = torch.autograd.grad(v.sum(), zz, create_graph=graph)[0]
    return (v, g) if graph else (v.detach(), g.detach())


def _jacobian(fn, z):
    """Per-row Jacobian ``(N, k, 9)`` of a row-wise map ``fn: (N, 9) -> (N, k)`` by 9 batched jvps."""
    basis = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)[:, None, :].expand(z.shape[-1], *z.shape)
    cols = vmap(lambda v: jvp(fn, (z,), (v,))[1])(basis)  # (9, N, k)
    return cols.permute(1, 2, 0)


# ----------------------------------------------------------------------------------------------------------------
# Packed data of a cohort
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Packed:
    """All mice's trials packed end to end (prepared-table row order): every tensor is ``(N, ...)``.

    ``starts`` ``(B + 1,)``: mouse b owns rows ``starts[b]:starts[b + 1]``; ``mouse`` ``(N,)`` its index;
    ``trans`` ``(N,)`` True where row i has a successor i + 1 of the same mouse; ``day`` ``(N,)`` True where
    that successor starts a new session. Model structure travels with the data: ``noise`` (``"log"`` or
    ``"linear"``) and ``latent`` ``(9,)`` bool (False on the coordinates of a frozen weight group).
    """

    mice: list
    starts: np.ndarray
    mouse: torch.Tensor
    x: torch.Tensor
    choice: torch.Tensor
    reward: torch.Tensor
    contrast: torch.Tensor
    session: np.ndarray
    trans: torch.Tensor
    day: torch.Tensor
    noise: str = "log"
    latent: torch.Tensor | None = None  # None: every coordinate latent
    sigma_per: str = "group"  # "column": U's noise sds per input column (sigma_U_stimL, ...)
    closed_form: bool = True  # affine model: closed-form terms and latent-only solves (see fit_noisy)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # see _transition_jacobian

    @property
    def affine(self) -> bool:
        """True when the transition is affine in the state and the log-odds linear in it: ``noise="linear"``
        with the gains frozen (the rule's U step is linear in U for fixed a; ``forward`` is linear in U)."""
        return self.noise == "linear" and self.latent is not None and not bool(self.latent[GROUPS["a"]].any())

    @property
    def n_mice(self) -> int:
        return len(self.mice)

    @property
    def all_latent(self) -> bool:
        return self.latent is None or bool(self.latent.all())


def _latent_mask(frozen, device=None) -> torch.Tensor | None:
    frozen = tuple(frozen or ())
    bad = [g for g in frozen if g not in GROUPS]
    if bad:
        raise ValueError(f"frozen: unknown weight group {bad[0]!r}; known: {sorted(GROUPS)}")
    if set(frozen) >= set(GROUPS):
        raise ValueError("frozen: at least one weight group must stay latent")
    if not frozen:
        return None
    lat = torch.ones(D_STATE, dtype=torch.bool, device=device)
    for g in frozen:
        lat[GROUPS[g]] = False
    return lat


def pack(trials: pd.DataFrame, encoding: str = "side", zero_reward: str = "expected", device=None,
         dtype=torch.float64, prepared: bool = False, noise: str = "log", frozen=(), sigma_per: str = "group") -> Packed:
    """Pack a trial table (validated and sorted by :func:`mouse_rl.fit.prepare_trials` unless ``prepared``).

    ``noise``, ``frozen``, ``sigma_per``: the model variant (:func:`fit_noisy`)."""
    if noise not in NOISE:
        raise ValueError(f"noise: must be one of {NOISE}, got {noise!r}")
    if sigma_per not in SIGMA_PER:
        raise ValueError(f"sigma_per: must be one of {SIGMA_PER}, got {sigma_per!r}")
    latent = _latent_mask(frozen, device)
    df = trials if prepared else prepare_trials(trials)
    codes, mice = pd.factorize(df["mouse"], sort=True)
    if np.any(np.diff(codes) < 0):
        raise ValueError("trials: rows must be sorted by mouse (use prepare_trials)")
    counts = np.bincount(codes, minlength=len(mice))
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    c = torch.as_tensor(np.array(df["signed_contrast"], dtype=float), dtype=dtype, device=device)
    session = df["session"].to_numpy()
    nxt = np.zeros(len(df), dtype=bool)
    nxt[:-1] = codes[1:] == codes[:-1]
    day = np.zeros(len(df), dtype=bool)
    day[:-1] = nxt[:-1] & (session[1:] != session[:-1])
    return Packed(
        mice=[str(m) for m in mice], starts=starts,
        mouse=torch.as_tensor(codes, dtype=torch.int64, device=device),
        x=encode(c, encoding), choice=torch.as_tensor(np.array(df["choice"], dtype=np.int64), device=device),
        reward=torch.as_tensor(table_learning_reward(df, zero_reward), dtype=dtype, device=device),
        contrast=c, session=session, trans=torch.as_tensor(nxt, device=device),
        day=torch.as_tensor(day, device=device), noise=noise, latent=latent, sigma_per=sigma_per)


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameters
# ----------------------------------------------------------------------------------------------------------------

class HyperSet:
    """Per-mouse hyperparameters: ``free`` names fitted (unconstrained ``u`` ``(B, n_free)``), others fixed.

    ``fixed`` may give any hyperparameter a scalar or per-mouse value (also the start of a free one).
    """

    def __init__(self, n_mice: int, free=DEFAULT_FREE, fixed: dict | None = None, dtype=torch.float64, device=None):
        fixed = dict(fixed or {})
        for name in list(free) + list(fixed):
            if name not in HYPERS:
                raise ValueError(f"hyperparameter: unknown name {name!r}; known: {sorted(HYPERS)}")
        for name, value in fixed.items():
            lo, hi = HYPERS[name].bounds
            arr = np.asarray(value, dtype=float)
            if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n_mice):
                raise ValueError(f"{name}: give a scalar or one value per mouse ({n_mice}), got shape {arr.shape}")
            bad = ~np.isfinite(arr) | (arr < (0 if name in ("lapse", "eta") else lo)) | (arr > hi)
            if bad.any():
                first = float(arr.reshape(-1)[bad.reshape(-1)][0])
                raise ValueError(f"{name}: must lie in [{lo}, {hi}], got {first!r}")
        self.free, self.n_mice, self.dtype, self.device = tuple(free), n_mice, dtype, device
        if "lapse" in self.free and "lapse" not in fixed:
            fixed["lapse"] = HYPERS["lapse"].prior_centre
        self.values = {n: torch.as_tensor(fixed.get(n, HYPERS[n].default), dtype=dtype, device=device).expand(n_mice)
                       .clone() for n in HYPERS}
        self.u = torch.stack([_to_u(n, self.values[n]) for n in self.free], -1).to(device) if self.free else \
            torch.zeros(n_mice, 0, dtype=dtype, device=device)
        self.population: dict = {}  # name -> (mean, sd) of a population prior in the transformed coordinate

    def subset(self, idx: torch.Tensor) -> "HyperSet":
        """The hyperparameters of the mice ``idx`` (values and ``u`` copied by row; same free names)."""
        out = object.__new__(HyperSet)
        out.free, out.n_mice, out.dtype, out.device = self.free, len(idx), self.dtype, self.device
        out.values = {n: v[idx] for n, v in self.values.items()}
        out.u = self.u[idx]
        out.population = dict(self.population)
        return out

    def natural(self, u: torch.Tensor | None = None) -> dict:
        u = self.u if u is None else u
        out = dict(self.values)
        for j, n in enumerate(self.free):
            out[n] = _from_u(n, u[:, j])
        return out

    def log_prior(self, u: torch.Tensor) -> torch.Tensor:
        """Gaussian hyperprior on the free transformed coordinates, ``(B,)``: the weak prior of :data:`HYPERS`,
        or for a name in ``population`` the population prior N(mean, sd^2) estimated across mice
        (:func:`_population_prior`)."""
        lp = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        for j, n in enumerate(self.free):
            h = HYPERS[n]
            centre, sd = self.population.get(n, (_to_u(n, h.prior_centre), h.prior_sd))
            lp = lp - 0.5 * ((u[:, j] - torch.as_tensor(centre).to(u)) / sd) ** 2
        return lp

    def table(self, mice) -> pd.DataFrame:
        nat = self.natural()
        return pd.DataFrame({"mouse": list(mice), **{n: nat[n].detach().cpu().numpy() for n in HYPERS}})


def _init_mean(hp: dict, noise: str = "log") -> torch.Tensor:
    """log w_init (``noise="log"``) or w_init (``"linear"``) ``(B, 9)`` from (w0, k, s0, b_L, b_R) via
    :func:`mouse_rl.network.init_weights`."""
    from ..params import NetParams

    B = hp["w0"].shape[0]
    z = torch.zeros(B, dtype=hp["w0"].dtype, device=hp["w0"].device)
    w = flat_weights(init_weights(NetParams(z, z, hp["w0"], hp["k"], hp["s0"], hp["b_L"], hp["b_R"], z)))
    return w.clamp(min=W_FLOOR).log() if noise == "log" else w


def _pin(data: Packed, z: torch.Tensor, hp: dict) -> torch.Tensor:
    """z with the coordinates of frozen groups set to their initial values (a function of the hyperparameters)."""
    if data.all_latent:
        return z
    return torch.where(data.latent, z, _init_mean(hp, data.noise)[data.mouse])


def _mask_blocks(data: Packed, D, O):
    """Restrict block-tridiagonal (D, O) to the latent coordinates: frozen rows / columns zero, unit diagonal
    (so solves leave frozen coordinates at 0 and log det counts the latent ones only)."""
    if data.all_latent:
        return D, O
    lat = data.latent.to(D.dtype)
    M = lat[:, None] * lat[None, :]
    return D * M + torch.diag(1 - lat), O * M


# ----------------------------------------------------------------------------------------------------------------
# Joint log posterior, its gradient and block-tridiagonal (Gauss-Newton) Hessian
# ----------------------------------------------------------------------------------------------------------------

class Terms:
    """Pieces of the joint log posterior at (z, hyperparameters); tensors carry autograd graphs if asked."""

    def __init__(self, L, g=None, D=None, O=None, lik=None):
        self.L, self.g, self.D, self.O = L, g, D, O
        self.lik = lik  # closed-form affine terms only: see _affine_terms


def noise_sds(hp: dict, idx: torch.Tensor, sigma_per: str = "group", day: bool = False) -> torch.Tensor:
    """Transition noise sds ``(len(idx), 9)`` (state units) of the mice ``idx``: within a session, or across
    a session boundary (``day``). ``sigma_per="group"``: ``sigma_a`` on the gains, ``sigma_U`` on all six
    striatal weights; ``"column"``: ``sigma_U_<col>`` on both rows of U's input column ``col``."""
    pre = "sigma_day_" if day else "sigma_"
    a = hp[pre + "a"][idx, None].expand(-1, 3)
    if sigma_per == "group":
        U = hp[pre + "U"][idx, None].expand(-1, 6)
    else:
        U = torch.stack([hp[f"{pre}U_{c}"][idx] for c in U_COLUMNS], -1).repeat(1, 2)  # rows L, R
    return torch.cat([a, U], -1)


def _precisions(data: Packed, hp: dict):
    """Per-row transition precision ``(N, 9)`` (row i -> i + 1) and initial precision ``(B, 9)``."""
    m = data.mouse
    sd_trial = noise_sds(hp, m, data.sigma_per)
    sd_day = noise_sds(hp, m, data.sigma_per, day=True)
    sd = torch.where(data.day[:, None], sd_day, sd_trial)
    return sd ** -2, (hp["sigma_init"] ** -2)[:, None].expand(-1, D_STATE)


def _lapse(hp, m):
    lapse = hp["lapse"]
    return None if not bool((lapse != 0).any()) and not lapse.requires_grad else lapse[m]


def joint_terms(data: Packed, z: torch.Tensor, hp: dict, score: torch.Tensor, order: int = 0,
                graph: bool = False, need_g: bool = True) -> Terms:
    """Joint log posterior ``L`` per mouse ``(B,)`` (nats; Gaussian 2 pi terms omitted), and with

    ``order >= 1`` its gradient ``g`` ``(N, 9)`` in z, with ``order >= 2`` the Gauss-Newton negative
    Hessian: diagonal blocks ``D`` ``(N, 9, 9)`` and ``O[i] = H[i, i - 1]`` ``(N, 9, 9)``.
    ``graph``: keep autograd graphs (for derivatives in the hyperparameters or in z). ``need_g=False``
    skips the gradient at ``order >= 2``.
    """
    B, m = data.n_mice, data.mouse
    noise, lat = data.noise, data.latent
    need_g = order == 1 or (order >= 2 and need_g)
    if order >= 1 and not graph and _closed_form(data, hp, z):
        return _affine_terms(data, z, hp, score, order, need_g)
    if need_g and not z.requires_grad:
        z = z.detach().requires_grad_(True)
    with torch.enable_grad() if (need_g or graph) else torch.no_grad():
        z_in = z
        z = _pin(data, z, hp)
        beta, lapse = hp["beta"][m], _lapse(hp, m)
        lp = choice_logp(z, data.x, data.choice, beta, lapse, noise)
        L = torch.zeros(B, dtype=z.dtype, device=z.device).index_add(0, m, torch.where(score, lp, 0.0))
        P, P0 = _precisions(data, hp)
        tr = data.trans
        src = torch.nonzero(tr)[:, 0]
        eta = hp["eta"][m[src]]
        zs = z[src]
        if _cacheable(data, hp):  # the affine rule as c + J z (J, c cached; about 10x cheaper than the rule)
            f = _affine_apply(*_affine_map(data, hp), zs)
        else:
            f = transition(zs, data.x[src], data.choice[src], data.reward[src], eta, noise, lat)
        e = z[src + 1] - f
        Pt = P[src]
        keep = 1.0 if lat is None else lat.to(z.dtype)  # frozen coordinates have no prior terms
        ll_tr = 0.5 * (keep * (Pt.log() - Pt * e ** 2)).sum(-1)
        L = L.index_add(0, m[src], ll_tr)
        mu0 = _init_mean(hp, noise)
        z0 = z[torch.as_tensor(data.starts[:-1], device=z.device)]
        L = L + 0.5 * (keep * (P0.log() - P0 * (z0 - mu0) ** 2)).sum(-1)
        out = Terms(L)
        if need_g:
            out.g = torch.autograd.grad(L.sum(), z_in, create_graph=graph, retain_graph=order >= 2 or graph)[0]
            if lat is not None:
                out.g = out.g * keep
        if order >= 2:
            def fn(zz):
                return transition(zz, data.x[src], data.choice[src], data.reward[src], eta, noise, lat)

            J = _transition_jacobian(data, fn, zs if graph else zs.detach(), hp)
            p, gp = _row_grad(lambda zz: prob_right(zz, data.x, beta, lapse, noise), z, graph)  # (N,), (N, 9)
            fisher = torch.where(score, 1.0 / (p * (1 - p)).clamp(min=1e-300), 0.0)
            D = fisher[:, None, None] * gp[:, :, None] * gp[:, None, :]
            JtPJ = J.mT @ (Pt[:, :, None] * J)
            # rows src (and src + 1) are distinct: scatter into zeros and add (the same sums as index_add, which
            # is memory-bound on (N, 9, 9) blocks and about twice as slow)
            D = D + _scatter_rows(D, src, JtPJ)
            prec = P.new_zeros(D.shape[:2])
            prec = prec.index_put((src + 1,), Pt)
            first = torch.as_tensor(data.starts[:-1], device=z.device)
            prec = prec.index_put((first,), P0)  # first rows of a mouse have no incoming transition
            D = D + torch.diag_embed(prec)
            O = _scatter_rows(D, src + 1, -(Pt[:, :, None] * J))
            out.D, out.O = _mask_blocks(data, D, O)
    return out


def _lanes(fn, *xs):
    """``fn(*xs)`` of 1-d tensors, computed on copies padded with zeros to a multiple of 64 elements.

    Torch's CPU kernels of some transcendental functions (sigmoid, logaddexp, log1p) round differently in
    their vectorised body and their scalar tail (or by chunk), so a trial's value would depend on its
    position in the batch; padded, every element goes through the same path and a mouse gets the same
    numbers alone, in a subset or in the whole batch (``tests/test_statespace.py``)."""
    n = xs[0].shape[0]
    k = (-n) % 64
    if k:
        xs = [torch.cat([x, x.new_zeros(k)]) for x in xs]
    return fn(*xs)[:n]


def _choice_terms(y, l, lapse):
    """Per trial, from the signed log-odds ``y`` (of the observed choice) and ``l`` (of R): ``log P(choice)``
    (:func:`mouse_rl.network.log_policy`), ``d log P / dy``, ``d2 log P / dy2`` and the Bernoulli Fisher
    information of ``l``, ``(dp/dl)^2 / (p (1 - p))`` (all ``(N,)``; batch-invariant, :func:`_lanes`)."""
    ls = _lanes(torch.nn.functional.logsigmoid, y)
    s, r = _lanes(torch.sigmoid, y), _lanes(torch.sigmoid, -y)  # sigmoid(y), 1 - sigmoid(y)
    sr = s * r
    if lapse is None:
        return ls, r, -sr, sr
    lp = _lanes(torch.logaddexp, _lanes(torch.log, lapse / 2), _lanes(torch.log1p, -lapse) + ls)
    pc = _lanes(torch.exp, lp)
    k = (1 - lapse) * sr  # dp / dl
    d1 = k / pc
    p = 0.5 * lapse + (1 - lapse) * _lanes(torch.sigmoid, l)
    return lp, d1, k * (r - s) / pc - d1 ** 2, k ** 2 / (p * (1 - p)).clamp(min=1e-300)


def _closed_form(data: Packed, hp: dict, z: torch.Tensor) -> bool:
    """True when :func:`joint_terms` may take the closed form of :func:`_affine_terms`: the affine model
    (:attr:`Packed.affine`, :attr:`Packed.closed_form`) with no autograd graph through the state or the
    hyperparameters."""
    graph = z.requires_grad or any(torch.is_tensor(v) and v.requires_grad for v in hp.values())
    return data.closed_form and data.affine and not graph


def _odds_direction(data: Packed, hp: dict) -> torch.Tensor:
    """``G`` ``(N, 9)``: the gradient of the log-odds of R in the latent state at unit beta, on every trial, in
    the affine model (where the log-odds ``beta G . z`` are linear in the latent z: ``G`` depends only on the
    input x and the frozen gains). One reverse pass through :func:`log_odds` (:func:`mouse_rl.network.forward`),
    cached on ``data`` per value of the frozen gains' (w0, k)."""
    key = torch.stack([hp["w0"].detach(), hp["k"].detach()])
    hit = data.cache.get("G")
    if hit is not None and hit[0].shape == key.shape and bool(torch.equal(hit[0], key)):
        return hit[1]
    hd = {k: v.detach() for k, v in hp.items()}
    z = _pin(data, _init_mean(hd, data.noise)[data.mouse], hd)
    one = torch.ones(len(data.mouse), dtype=z.dtype, device=z.device)
    _, G = _row_grad(lambda zz: log_odds(zz, data.x, one, data.noise), z)
    G = G * data.latent.to(G.dtype)
    data.cache["G"] = (key.clone(), G)
    return G


def _affine_terms(data: Packed, z: torch.Tensor, hp: dict, score: torch.Tensor, order: int,
                  need_g: bool) -> Terms:
    """:func:`joint_terms` of the affine model (``noise="linear"`` with the gains frozen) in closed form, no
    autograd: the same quantities to rounding (tested against the autograd path).

    The transition is ``c + J z`` (:func:`_affine_map`) and the log-odds are ``l = beta G . z``
    (:func:`_odds_direction`), so with ``y = +-l`` (sign of the observed choice) and
    ``log P(choice) = log(lapse / 2 + (1 - lapse) sigmoid(y))`` (:func:`mouse_rl.network.log_policy`) every
    likelihood derivative is a scalar function of ``y`` times ``beta G`` (gradient) or ``beta^2 G G^T``
    (Hessian blocks: the Bernoulli Fisher ``(dp/dl)^2 / (p (1 - p))`` for Gauss-Newton, ``-d2 log P / dl^2``
    for the exact Hessian; equal without a lapse). ``Terms.lik`` keeps ``(G G^T, w_gn, w_exact, D_prior)``, the
    per-trial weights of ``G G^T`` in the two Hessians and the prior's blocks, for :func:`exact_hessian_blocks`."""
    with torch.no_grad():
        z = _pin(data, z.detach(), hp)
        beta = hp["beta"][data.mouse]
        L, g, k = _affine_joint(data, z, hp, score, log_odds(z, data.x, beta, data.noise), need_g)
        out = Terms(L, g)
        if order >= 2:
            b2 = beta ** 2
            w_gn = torch.where(score, k.fisher, 0.0) * b2
            w_ex = torch.where(score, -k.d2, 0.0) * b2
            D_prior, O, GG = _prior_blocks(data, hp, k.P, k.P0, k.J, _odds_direction(data, hp))
            out.D, out.O = D_prior + w_gn[:, None, None] * GG, O  # (not addcmul: its fused multiply-add
            # rounds by position in the vector loop, and a mouse's numbers must not depend on its batch)
            out.lik = (GG, w_gn, w_ex, D_prior)
    return out


def _affine_joint(data: Packed, zp: torch.Tensor, hp: dict, score: torch.Tensor, l: torch.Tensor, need_g: bool):
    """Affine model: the log joint ``L`` ``(B,)`` at the pinned state ``zp`` with log-odds of R ``l`` ``(N,)``,
    its gradient in z ``(N, 9)`` (None unless ``need_g``), and the per-trial pieces the curvature terms reuse
    (``d2``, ``fisher`` of :func:`_choice_terms`; the precisions ``P``, ``P0``; the transition ``J`` and its
    rows ``src``, ``Pt``; the chains' ``first`` rows). Differentiable in ``zp`` and the hyperparameters."""
    B, m = data.n_mice, data.mouse
    keep = data.latent.to(zp.dtype)
    beta, lapse = hp["beta"][m], _lapse(hp, m)
    right = data.choice == 1
    y = torch.where(right, l, -l)
    lp, d1, d2, fisher = _choice_terms(y, l, lapse)
    L = torch.zeros(B, dtype=zp.dtype, device=zp.device).index_add(0, m, torch.where(score, lp, 0.0))
    P, P0 = _precisions(data, hp)
    src = torch.nonzero(data.trans)[:, 0]
    J, c = _affine_map(data, hp)
    e = zp[src + 1] - _affine_apply(J, c, zp[src])
    Pt = P[src]
    L = L.index_add(0, m[src], 0.5 * (keep * (Pt.log() - Pt * e ** 2)).sum(-1))
    first = torch.as_tensor(data.starts[:-1], device=zp.device)
    r0 = zp[first] - _init_mean(hp, data.noise)
    L = L + 0.5 * (keep * (P0.log() - P0 * r0 ** 2)).sum(-1)
    g = None
    if need_g:
        gl = torch.where(score, torch.where(right, d1, -d1), 0.0) * beta
        wP = keep * Pt * e
        g = gl[:, None] * _odds_direction(data, hp)
        g = g.index_add(0, src, (J.mT @ wP[..., None])[..., 0]).index_add(0, src + 1, -wP)
        g = g.index_add(0, first, -keep * P0 * r0)
        g = g * keep
    return L, g, SimpleNamespace(d2=d2, fisher=fisher, P=P, P0=P0, J=J, src=src, Pt=Pt, first=first)


def _prior_blocks(data: Packed, hp: dict, P, P0, J, G):
    """The state prior's share of the Gauss-Newton blocks of the affine model, ``(D_prior, O)`` (``J^T P J``
    and the precisions on the diagonal, ``-P J`` below it; restricted to the latent coordinates by
    :func:`_mask_blocks`), and ``G G^T`` ``(N, 9, 9)``. They do not depend on the state, only on the
    hyperparameters: cached on ``data`` per value of all of them (within one mode search only the likelihood
    weights change)."""
    key = torch.stack([hp[n].detach() for n in sorted(hp)])
    hit = data.cache.get("prior")
    if hit is not None and hit[0].shape == key.shape and bool(torch.equal(hit[0], key)):
        return hit[1], hit[2], hit[3]
    src = torch.nonzero(data.trans)[:, 0]
    first = torch.as_tensor(data.starts[:-1], device=P.device)
    Pt = P[src]
    N = len(data.mouse)
    D = P.new_zeros(N, D_STATE, D_STATE)
    D = _scatter_rows(D, src, J.mT @ (Pt[:, :, None] * J))
    prec = P.new_zeros(D.shape[:2]).index_put((src + 1,), Pt).index_put((first,), P0)
    D = D + torch.diag_embed(prec)
    O = _scatter_rows(D, src + 1, -(Pt[:, :, None] * J))
    D, O = _mask_blocks(data, D, O)
    GG = G[:, :, None] * G[:, None, :]
    data.cache["prior"] = (key.clone(), D, O, GG)
    return D, O, GG


def _scatter_rows(like: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Zeros shaped as ``like`` with ``values`` in the (distinct) ``rows`` (differentiable)."""
    return like.new_zeros(like.shape).index_put((rows,), values)


_J_DEPENDS = ("eta", "w0", "k")  # of the hyperparameters, what the Jacobian of an affine transition depends on


def _transition_jacobian(data: Packed, fn, zs, hp):
    """Per-transition Jacobian ``(n_trans, 9, 9)`` of the rule at ``zs``, by :func:`_jacobian`. When the
    transition is affine in the state (:attr:`Packed.affine`) its Jacobian does not depend on z, only on eta
    and the frozen gains (w0, k): it is computed once per value of those and reused (cached on ``data``)
    unless one of them carries an autograd graph. (Affine up to the rule's saturation at +-MAX_WEIGHT, 1e6,
    far outside any fitted weight.)"""
    if not _cacheable(data, hp):
        return _jacobian(fn, zs)
    return _affine_map(data, hp, fn, zs)[0]


def _cacheable(data: Packed, hp) -> bool:
    return data.affine and not any(hp[n].requires_grad for n in _J_DEPENDS)


def _affine_map(data: Packed, hp, fn=None, zs=None):
    """``(J, c)``: the affine transition of every transition row as ``f(z) = c + J z`` (``(n_trans, 9, 9)``,
    ``(n_trans, 9)``), cached on ``data`` per value of (eta, w0, k) (see :func:`_transition_jacobian`).
    ``fn``, ``zs``: the transition and the (pinned) states to differentiate at; by default the initial mean."""
    key = torch.stack([hp[n].detach() for n in _J_DEPENDS])
    hit = data.cache.get("J")
    if hit is not None and hit[0].shape == key.shape and bool(torch.equal(hit[0], key)):
        return hit[1], hit[2]
    src = torch.nonzero(data.trans)[:, 0]
    if fn is None:
        eta = hp["eta"].detach()[data.mouse[src]]
        fn = lambda zz: transition(zz, data.x[src], data.choice[src], data.reward[src], eta, data.noise,  # noqa: E731
                                   data.latent)
        hd = {k: v.detach() for k, v in hp.items()}
        zs = _pin(data, _init_mean(hd, data.noise)[data.mouse], hd)[src]
    zs = zs.detach()
    with torch.no_grad():
        J = _jacobian(fn, zs).detach()
        c = fn(zs) - (J @ zs[..., None])[..., 0]
    data.cache["J"] = (key.clone(), J, c)
    return J, c


def _transition_index(data: Packed) -> torch.Tensor:
    """Row -> index of its transition among the transition rows (``J``, ``c`` of :func:`_affine_map`); rows
    without a transition (a mouse's last) map to their predecessor's, unused."""
    return (torch.cumsum(data.trans.long(), 0) - 1).clamp(min=0)


def _affine_apply(J, c, z):
    return c + (J @ z[..., None])[..., 0]


def exact_hessian_blocks(data: Packed, z: torch.Tensor, hp: dict, score: torch.Tensor, base: Terms | None = None):
    """Exact negative Hessian of L in block form ``(D, O)`` (second derivatives of the rule and policy included).

    ``base``: the Gauss-Newton terms at the same point, if already computed.
    """
    m, noise, lat = data.mouse, data.noise, data.latent
    base = joint_terms(data, z, hp, score, order=2, need_g=False) if base is None else base
    if base.lik is not None:  # closed form (affine model): the likelihood blocks differ only in their weight
        GG, _, w_ex, D_prior = base.lik
        with torch.no_grad():
            return D_prior + w_ex[:, None, None] * GG, base.O
    with torch.no_grad():
        z = _pin(data, z.detach(), hp)
        P, _ = _precisions(data, hp)
    src = torch.nonzero(data.trans)[:, 0]
    eta, beta, lapse = hp["eta"][m[src]].detach(), hp["beta"][m].detach(), _lapse(hp, m)
    lapse = None if lapse is None else lapse.detach()
    fn = lambda zz: transition(zz, data.x[src], data.choice[src], data.reward[src], eta, noise, lat)  # noqa: E731
    with torch.no_grad():
        f = _affine_apply(*_affine_map(data, hp), z[src]) if _cacheable(data, hp) else fn(z[src])
        r = P[src] * (z[src + 1] - f)  # P e

    def grad_rf(zz):
        with torch.enable_grad():
            zz = zz.detach().requires_grad_(True) if not zz.requires_grad else zz
            return torch.autograd.grad((r * fn(zz)).sum(), zz, create_graph=True)[0]

    def grad_lp(zz):
        with torch.enable_grad():
            zz = zz.detach().requires_grad_(True) if not zz.requires_grad else zz
            lp = torch.where(score, choice_logp(zz, data.x, data.choice, beta, lapse, noise), 0.0)
            return torch.autograd.grad(lp.sum(), zz, create_graph=True)[0]

    if data.affine:
        # The rule is affine in the state (no second derivatives) and log P(choice) depends on z only through
        # the log-odds, linear in the latent z: its latent block is rank one along grad p, so one Hessian-vector product
        # along u = grad p / |grad p| gives it exactly, H_lp = (u^T H_lp u) u u^T (tested against the dense
        # autograd Hessian).
        with torch.no_grad():
            _, gp0 = _row_grad(lambda zz: prob_right(zz, data.x, beta, lapse, noise), z)
            gp0 = gp0 * lat.to(gp0.dtype)  # the latent block (U) is rank one; the frozen rows are masked below
            nrm = gp0.norm(dim=-1, keepdim=True)
            u = torch.where(nrm > 0, gp0 / nrm.clamp(min=1e-300), 0.0)
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            Hu = torch.autograd.grad((grad_lp(zz) * u).sum(), zz)[0]
        H_lp = (Hu * u).sum(-1)[:, None, None] * u[:, :, None] * u[:, None, :]
        H_rf = None
    else:
        H_rf = _hess_rows(grad_rf, z[src])
        H_lp = _hess_rows(grad_lp, z)
    # exact: -d2 log p(choice) ; transition: J^T P J - sum_k (P e)_k d2 f_k
    with torch.no_grad():
        pr, gp = _row_grad(lambda zz: prob_right(zz, data.x, beta, lapse, noise), z)
        fisher = torch.where(score, 1.0 / (pr * (1 - pr)).clamp(min=1e-300), 0.0)
        corr = -fisher[:, None, None] * gp[:, :, None] * gp[:, None, :] - H_lp
        if H_rf is not None:
            corr = corr.index_add(0, src, -H_rf)
        if lat is not None:  # the base blocks are already restricted to the latent coordinates
            corr = corr * (lat[:, None] & lat[None, :]).to(corr.dtype)
        D = base.D.detach() + corr
    return D, base.O.detach()


def _hess_rows(grad_fn, z):
    """Row-wise Hessians ``(N, 9, 9)`` from a row-wise gradient function, by reverse-over-reverse."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        g = grad_fn(z)
        rows = [torch.autograd.grad(g[:, k].sum(), z, retain_graph=k < g.shape[1] - 1)[0] for k in range(g.shape[1])]
    return torch.stack(rows, 1).detach()


# ----------------------------------------------------------------------------------------------------------------
# MAP trajectory (Newton), evidence and its gradient
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class ModeResult:
    z: torch.Tensor  # (N, 9)
    L: torch.Tensor  # (B,)
    n_iter: int
    converged: torch.Tensor  # (B,)
    D: torch.Tensor | None = None
    O: torch.Tensor | None = None
    D_exact: torch.Tensor | None = None  # exact Hessian blocks at z, when the last iteration computed them
    O_exact: torch.Tensor | None = None


def rollout(data: Packed, hp: dict, z: torch.Tensor | None = None, start: np.ndarray | None = None) -> torch.Tensor:
    """Deterministic (sigma = 0) log-weights of every trial ``(N, 9)`` by the rule, all mice advancing together.

    From the initial mean (default), or continuing ``z`` ``(N, 9)`` from per-mouse positions ``start``
    ``(B,)`` (offset within the mouse): rows before ``start`` are kept, the rest follow the rule.
    """
    starts = data.starts
    n = np.diff(starts)
    idx0 = torch.as_tensor(starts[:-1], device=data.x.device)
    eta = hp["eta"].detach()
    if z is None:
        z = torch.empty(len(data.mouse), D_STATE, dtype=data.x.dtype, device=data.x.device)
        cur, first = _init_mean(hp, data.noise).detach(), np.zeros(len(n), dtype=np.int64)
    else:
        z, first = z.detach().clone(), np.asarray(start, dtype=np.int64)
        if np.any(first < 1):
            raise ValueError("start: every mouse needs at least one kept row (start >= 1)")
        prev = idx0 + torch.as_tensor(np.minimum(first, n) - 1, device=z.device)  # last kept row
        with torch.no_grad():
            z = _pin(data, z, hp)
            cur = transition(z[prev], data.x[prev], data.choice[prev], data.reward[prev], eta, data.noise, data.latent)
    affine = _cacheable(data, hp)
    if affine:  # the affine rule as c + J z, per transition row (the rule's own per-step cost is mostly overhead)
        J, c = _affine_map(data, hp)
        tpos = _transition_index(data)
    for t in range(int(first.min()), int(n.max())):
        alive = torch.as_tensor(np.nonzero((n > t) & (first <= t))[0], device=z.device)
        if len(alive) == 0:
            continue
        rows = idx0[alive] + t
        z[rows] = cur[alive]
        with torch.no_grad():
            if affine:
                ti = tpos[rows]
                nxt = _affine_apply(J[ti], c[ti], cur[alive])
            else:
                nxt = transition(cur[alive], data.x[rows], data.choice[rows], data.reward[rows], eta[alive],
                                 data.noise, data.latent)
        cur = cur.clone()
        cur[alive] = nxt
    return z


def _solve(data: Packed, D, O, rhs=None, inverse: bool = False):
    """:func:`mouse_rl.fit.banded.solve_chains` of the mice's chains, on the latent coordinates only.

    The blocks of a model with a frozen group are the identity on its coordinates and zero between them and
    the latent ones (:func:`_mask_blocks`), so the frozen coordinates decouple: their step is 0, their share
    of log det is 0 and their covariance is the identity. The latent ``d x d`` system (6 x 6 with the gains
    frozen) is solved alone and embedded back, about (9 / 6)^3 fewer operations per block. On the CPU (numba)
    path the numbers are the same bit for bit (the full solve only adds exact zeros there; tested)."""
    if data.all_latent or not data.closed_form:
        return solve_chains(D, O, data.starts, rhs, inverse=inverse)
    lat = data.latent.cpu().numpy()
    li = np.flatnonzero(lat)
    if np.all(np.diff(li) == 1):  # one block of coordinates (a frozen group): slices, no gathers
        li = slice(int(li[0]), int(li[-1]) + 1)
        block = (slice(None), li, li)
    else:
        li = torch.as_tensor(li, device=D.device)
        block = (slice(None), li[:, None], li[None, :])
    sol = solve_chains(D[block], O[block], data.starts, None if rhs is None else rhs[:, li], inverse=inverse)
    x = None
    if sol.x is not None:
        x = rhs.new_zeros(rhs.shape)
        x[:, li] = sol.x
    cov = cov_off = None
    if inverse:
        cov = D.new_zeros(D.shape)
        cov[block] = sol.cov
        fr = torch.as_tensor(np.flatnonzero(~lat), device=D.device)
        cov[:, fr, fr] = sol.ok[data.mouse, None].to(D.dtype)  # a failed chain's covariance stays 0
        cov_off = D.new_zeros(D.shape)
        cov_off[block] = sol.cov_off
    return sol._replace(x=x, cov=cov, cov_off=cov_off)


def _damped_step(data: Packed, D, O, g):
    """Gauss-Newton step; a mouse whose factorisation fails numerically gets Levenberg damping (x100 per try),
    starting at 1e-8 times the mean of its own blocks' diagonal (not the batch's: no batch partners)."""
    sol = _solve(data, D, O, g)
    step, ok = sol.x, sol.ok
    m = data.mouse
    size = torch.diagonal(D, dim1=-2, dim2=-1).abs().mean(-1)
    count = torch.as_tensor(np.diff(data.starts), dtype=D.dtype, device=D.device)  # rows of each mouse
    lam = 1e-8 * torch.zeros_like(count).index_add(0, m, size) / count
    eye = torch.eye(D_STATE, dtype=D.dtype, device=D.device)
    for _ in range(8):
        if bool(ok.all()):
            break
        bad = ~ok[m]
        sol = _solve(data, D + torch.where(bad[:, None, None], lam[m, None, None] * eye, 0.0), O, g)
        step = torch.where(bad[:, None], sol.x, step)
        ok = ok | sol.ok
        lam = lam * 100
    return torch.where(ok[m, None], step, 0.0)


def find_mode(data: Packed, hp: dict, score: torch.Tensor, z0: torch.Tensor | None = None, max_iter: int = 50,
              tol: float = 1e-7, hessian: str = "exact") -> ModeResult:
    """MAP log-weights by Newton's method with a per-mouse backtracking line search.

    ``hessian="exact"``: Newton steps on the exact Hessian (a mouse whose exact Hessian is not positive
    definite takes the Gauss-Newton step); ``"gauss-newton"``: Gauss-Newton steps only.

    Stops a mouse when its Newton decrement ``g^T H^-1 g`` (nats) is below ``tol``. Returns the mode, L at it,
    and the Gauss-Newton blocks at the mode.
    """
    z = rollout(data, hp) if z0 is None else _pin(data, z0.detach().clone(), {k: v.detach() for k, v in hp.items()})
    m, B = data.mouse, data.n_mice
    conv = torch.zeros(B, dtype=torch.bool, device=z.device)
    it = 0
    for it in range(1, max_iter + 1):
        t = joint_terms(data, z, hp, score, order=2)
        De = Oe = None
        if hessian == "exact":  # exact Newton where the exact Hessian is positive definite, else Gauss-Newton
            De, Oe = exact_hessian_blocks(data, z, hp, score, base=t)
            sol_e = _solve(data, De, Oe, t.g.detach())
            use = sol_e.ok & torch.isfinite(sol_e.logdet)
            step = torch.nan_to_num(sol_e.x)
            if not bool(use.all()):  # the Gauss-Newton step is needed only where the exact one failed
                gn = _damped_step(data, t.D.detach(), t.O.detach(), t.g.detach())
                step = torch.where(use[m, None], step, gn)
        else:
            step = _damped_step(data, t.D.detach(), t.O.detach(), t.g.detach())
        dec = torch.zeros(B, dtype=z.dtype, device=z.device).index_add(0, m, (t.g.detach() * step).sum(-1))
        conv = dec < tol
        if bool(conv.all()):
            return ModeResult(z, t.L.detach(), it, conv, t.D.detach(), t.O.detach(), De, Oe)
        alpha = torch.where(conv, 0.0, 1.0).to(z.dtype)
        L0 = t.L.detach()
        accepted = conv.clone()
        for _ in range(30):
            z_try = z + alpha[m, None] * step
            L_try = joint_terms(data, z_try, hp, score, order=0).L
            good = (L_try >= L0 + 1e-4 * alpha * dec) & torch.isfinite(L_try)
            new = good & ~accepted
            z = torch.where(new[m, None], z_try, z)
            accepted |= good
            if bool(accepted.all()):
                break
            alpha = torch.where(accepted, alpha, alpha * 0.5)
        if not bool(accepted.all()):  # no ascent possible along the Newton direction: at the mode numerically
            conv |= ~accepted
    t = joint_terms(data, z, hp, score, order=2)
    return ModeResult(z, t.L.detach(), it, conv, t.D.detach(), t.O.detach())


def _trace_surrogate(data: Packed, D, O, cov, cov_off):
    """Per-mouse ``tr(S H)`` over the block-tridiagonal band: its derivative is ``tr(H^-1 dH)`` when S = H^-1."""
    v = (cov * D).sum((-1, -2)) + 2 * (cov_off * O).sum((-1, -2))
    return torch.zeros(data.n_mice, dtype=D.dtype, device=D.device).index_add(0, data.mouse, v)


def log_evidence(data: Packed, hp: dict, score: torch.Tensor, mode: ModeResult, inverse: bool = False):
    """Laplace log evidence per mouse ``(B,)`` at a mode (nats), and the solve (with ``cov`` if ``inverse``)."""
    sol = _solve(data, mode.D, mode.O, None, inverse=inverse)
    return mode.L - 0.5 * sol.logdet, sol


def _affine_surrogate(data: Packed, z: torch.Tensor, hp: dict, score: torch.Tensor, cov, cov_off,
                      need_g: bool):
    """Affine model, closed form: ``S = L - 1/2 tr(S_cov H)`` per mouse ``(B,)`` (the surrogate of
    :func:`evidence_gradient`, whose derivatives are those of the Laplace evidence at fixed covariance) and,
    with ``need_g``, the gradient ``g`` ``(N, 9)`` of ``L`` in z, both with autograd graphs in ``z`` and the
    hyperparameters, without differentiating through the rule or the policy. With ``l = beta G . z``
    (:func:`_odds_direction`) and the transition ``c + J z`` (:func:`_affine_map`) the Gauss-Newton blocks
    are ``w_t G G^T`` plus the prior's ``J^T P J``, ``diag P`` and ``-P J``, so the trace splits into
    per-trial scalars: ``w_t (G^T S_tt G)``, ``P_k (J S_tt J^T)_kk``, ``P_k (S_tt)_kk`` and
    ``P_k (S_t+1,t J)_kk`` (the covariance restricted to the latent coordinates; the frozen ones add a
    constant). Needs eta, w0 and k without graphs (:func:`_cacheable`)."""
    B, m = data.n_mice, data.mouse
    keep = data.latent.to(z.dtype)
    M = keep[:, None] * keep[None, :]
    zp = _pin(data, z, hp)
    beta = hp["beta"][m]
    G = _odds_direction(data, hp)
    L, g, k = _affine_joint(data, zp, hp, score, beta * (G * zp).sum(-1), need_g)
    src, J, Pt, first = k.src, k.J, k.Pt, k.first
    w_gn = torch.where(score, k.fisher, 0.0) * beta ** 2
    with torch.no_grad():  # per-trial traces against the (fixed) covariance, latent coordinates only
        cm, com = cov * M, cov_off * M
        q = ((G[:, :, None] * cm).sum(-2) * G).sum(-1)  # G^T S_tt G
        A = ((J @ cm[src]) * J).sum(-1)  # diag(J S_tt J^T) on transition rows
        dg = torch.diagonal(cm, dim1=-2, dim2=-1)
        Bo = (com[src + 1] * J).sum(-1)  # diag(S_{t+1,t} J^T)
    tr = torch.zeros(B, dtype=z.dtype, device=z.device).index_add(0, m, w_gn * q)
    tr = tr.index_add(0, m[src], (Pt * (A + dg[src + 1] - 2 * Bo)).sum(-1))
    tr = tr + (k.P0 * dg[first]).sum(-1)
    return L - 0.5 * tr, g


def evidence_gradient(data: Packed, hs: HyperSet, u: torch.Tensor, score: torch.Tensor, mode: ModeResult,
                      sol=None, exact: bool = False, closed_form: bool | None = None):
    """Gradient in the free transformed hyperparameters ``u`` ``(B, n_free)`` of the Laplace log evidence.

    ``exact=False``: the mode is held fixed inside log det H (decoupled); ``exact=True``: plus the implicit
    term through ``z*(u)`` (needs the exact Hessian; slower). ``closed_form``: in the affine model with eta,
    w0 and k fixed, differentiate the closed-form terms of :func:`_affine_surrogate` (the same gradient to
    rounding, several times cheaper) instead of the rule and the policy; None (default): as
    :attr:`Packed.closed_form`. Returns ``(grad, evidence)``.
    """
    if sol is None or sol.cov is None:
        sol = _solve(data, mode.D, mode.O, None, inverse=True)
    cov, cov_off = sol.cov.detach(), sol.cov_off.detach()
    u = u.detach().requires_grad_(True)
    hp = hs.natural(u)
    z = mode.z.detach().requires_grad_(exact)
    with torch.enable_grad():
        if (data.closed_form if closed_form is None else closed_form) and _cacheable(data, hp):
            S, g = _affine_surrogate(data, z, hp, score, cov, cov_off, need_g=exact)
        else:
            t = joint_terms(data, z, hp, score, order=2, graph=True, need_g=exact)
            S, g = t.L - 0.5 * _trace_surrogate(data, t.D, t.O, cov, cov_off), t.g
        if not exact:
            grad = torch.autograd.grad(S.sum(), u)[0]
        else:
            gS_u, gS_z = torch.autograd.grad(S.sum(), (u, z), retain_graph=True)
            if mode.D_exact is not None:
                D_ex, O_ex = mode.D_exact, mode.O_exact
            else:
                D_ex, O_ex = exact_hessian_blocks(data, mode.z, {k: v.detach() for k, v in hp.items()}, score)
            v = _solve(data, D_ex, O_ex, gS_z.detach()).x
            grad = gS_u + torch.autograd.grad((g * v).sum(), u)[0]
    E = mode.L - 0.5 * sol.logdet
    return grad.detach(), E


# ----------------------------------------------------------------------------------------------------------------
# Fit
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class NoisyFit:
    """Result of :func:`fit_noisy`.

    params : one row per mouse: every hyperparameter (natural units; noise sds in log-weight units per
        trial / per session boundary), ``log_evidence`` (Laplace, nats), ``log_hyperprior``, ``loglik``
        (plug-in log-likelihood of the fitted choices at the MAP weights, nats), ``n_trials``, ``converged``
        (False where the evidence search did not finish or the evidence is not finite), ``status`` (why not;
        where the evidence is not finite the weight bands are NaN: no Laplace posterior),
        ``n_outer`` and ``fit_seconds`` (whole batch).
    weights : one row per trial (prepared-table order): ``mouse``, ``session``, ``trial``, for each weight
        of :data:`mouse_rl.schema.WEIGHT_COLUMNS` its MAP value, ``<w>_lo``/``<w>_hi`` (95 % band,
        ``band`` level) and ``<w>_logsd`` (posterior sd of log w; ``<w>_sd``, of w, with ``noise="linear"``;
        0 for a frozen group), plus ``p_right`` (at the MAP weights)
        and ``scored`` (choice used in the fit).
    evidence : total Laplace log evidence over mice (nats).
    z, cov : packed MAP log-weights ``(N, 9)`` and marginal covariances ``(N, 9, 9)`` (tensors).
    population : with ``fit_noisy(population=...)``, per name the population prior's ``mean`` (natural units),
        ``sd`` (in the transformed coordinate, e.g. natural-log units for ``eta``), ``transform``, the number
        of refits (``iterations``), ``converged`` (the last refit moved no mean or log sd by more than 0.05)
        and the estimates after each fit (``trace_mean``, ``trace_sd``; the last one was not refitted);
        empty otherwise.
    """

    params: pd.DataFrame
    weights: pd.DataFrame
    evidence: float
    z: torch.Tensor
    cov: torch.Tensor
    hyper: HyperSet = field(repr=False)
    data: Packed = field(repr=False)
    history: list = field(default_factory=list, repr=False)
    population: dict = field(default_factory=dict)


def _merge(data: Packed, take: torch.Tensor, a: ModeResult, b: ModeResult) -> ModeResult:
    """Per mouse: ``b`` where ``take`` else ``a``."""
    r = take[data.mouse]
    w = lambda x, y: None if x is None or y is None else torch.where(r[:, None, None], y, x)  # noqa: E731
    return ModeResult(torch.where(r[:, None], b.z, a.z), torch.where(take, b.L, a.L), max(a.n_iter, b.n_iter),
                      torch.where(take, b.converged, a.converged), w(a.D, b.D), w(a.O, b.O),
                      w(a.D_exact, b.D_exact), w(a.O_exact, b.O_exact))


def _subset(data: Packed, idx: torch.Tensor):
    """The mice ``idx`` (ascending) of a packed cohort as a packed cohort of their own, and its rows
    ``(n_rows,)`` in ``data``. Every per-mouse computation of this module is independent of the other mice in
    the batch, so a mouse's results on the subset are those it gets in the whole batch. A cached affine
    Jacobian (:func:`_transition_jacobian`) and log-odds direction (:func:`_odds_direction`) are carried over
    by row."""
    ix = idx.cpu().numpy()
    st = data.starts
    counts = np.diff(st)[ix]
    rows_np = np.concatenate([np.arange(st[b], st[b + 1]) for b in ix])
    dev = data.x.device
    rows = torch.as_tensor(rows_np, device=dev)
    sub = Packed(mice=[data.mice[b] for b in ix], starts=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                 mouse=torch.repeat_interleave(torch.arange(len(ix), device=dev), torch.as_tensor(counts, device=dev)),
                 x=data.x[rows], choice=data.choice[rows], reward=data.reward[rows], contrast=data.contrast[rows],
                 session=data.session[rows_np], trans=data.trans[rows], day=data.day[rows], noise=data.noise,
                 latent=data.latent, sigma_per=data.sigma_per, closed_form=data.closed_form)
    hit = data.cache.get("J")
    if hit is not None:
        t = _transition_index(data)[rows][sub.trans]
        sub.cache["J"] = (hit[0][:, idx], hit[1][t], hit[2][t])
    hit = data.cache.get("G")
    if hit is not None:
        sub.cache["G"] = (hit[0][:, idx], hit[1][rows])
    return sub, rows


def _mode_take(mode: ModeResult, rows, idx) -> ModeResult:
    """The rows / mice ``rows``, ``idx`` of a mode (see :func:`_subset`)."""
    r = lambda x: None if x is None else x[rows]  # noqa: E731
    return ModeResult(mode.z[rows], mode.L[idx], mode.n_iter, mode.converged[idx], r(mode.D), r(mode.O),
                      r(mode.D_exact), r(mode.O_exact))


def _mode_put(mode: ModeResult, part: ModeResult, rows, idx) -> ModeResult:
    """``mode`` with the rows / mice ``rows``, ``idx`` replaced by ``part`` (a mode of :func:`_subset`)."""
    def put(x, y, at):
        if x is None or y is None:
            return None
        x = x.clone()
        x[at] = y
        return x

    return ModeResult(put(mode.z, part.z, rows), put(mode.L, part.L, idx), max(mode.n_iter, part.n_iter),
                      put(mode.converged, part.converged, idx), put(mode.D, part.D, rows), put(mode.O, part.O, rows),
                      put(mode.D_exact, part.D_exact, rows), put(mode.O_exact, part.O_exact, rows))


def _search_start(data, hs: HyperSet, score, exact_grad, newton_iter, z0, history):
    """Start of an evidence search, logged as iteration 0 of ``history``: ``(u, prior_grad, mode, E, F, gF,
    done)`` -- the hyperparameters, the hyperprior's gradient function, the mode at ``u``, the evidence, the
    objective (evidence + hyperprior), its gradient and the per-mouse stop flags (all False)."""
    u = hs.u.clone()
    prior_grad = lambda uu: torch.autograd.functional.jacobian(lambda v: hs.log_prior(v).sum(), uu)  # noqa: E731
    mode = find_mode(data, hs.natural(u), score, z0=z0, max_iter=max(newton_iter, 50))
    grad, E = evidence_gradient(data, hs, u, score, mode, exact=exact_grad)
    F = E + hs.log_prior(u)
    done = torch.zeros(u.shape[0], dtype=torch.bool, device=u.device)
    _log_iteration(history, 0, E, F, done)
    return u, prior_grad, mode, E, F, grad + prior_grad(u), done


def _log_iteration(history, n_outer, E, F, done) -> bool:
    """Append one search iteration's totals to ``history``; True when every mouse is done."""
    history.append(dict(iteration=n_outer, evidence_total=float(E.sum()), objective_total=float(F.sum()),
                        n_done=int(done.sum()), evidence=[round(float(e), 3) for e in E]))
    return bool(done.all())


def _bfgs(data, hs: HyperSet, score, max_outer, tol, exact_grad, newton_iter, history, z0=None, newton_tol=1e-6,
          active_set: bool = True, rival=None):
    """Batched BFGS ascent of (evidence + hyperprior) over each mouse's free hyperparameters.

    Per mouse: quasi-Newton direction, steps of at most 1 (transformed units), Armijo backtracking
    (each trial point re-solves the mode from the current one); a mouse stops when a step gains less than
    ``tol`` nats or no step along its direction gains.

    ``active_set``: each iteration works on the mice still searching only (:func:`_subset`); a stopped mouse
    keeps its hyperparameters, mode and evidence, exactly as in the whole batch, where it takes zero steps (the
    per-mouse arithmetic is independent of the batch; ``tests/test_statespace.py`` checks both searches and
    one mouse alone against the batch).

    ``rival``: ``(k, bar)`` with ``bar`` ``(B,)``: from iteration k on, a mouse whose evidence is below ``bar``
    stops (another start has already done better by a margin; see ``give_up`` of :func:`fit_noisy`).
    """
    B, p = hs.u.shape
    dt, dev = hs.u.dtype, hs.u.device
    u, prior_grad, mode, E, F, gF, done = _search_start(data, hs, score, exact_grad, newton_iter, z0,
                                                         history)
    eye = torch.eye(p, dtype=dt, device=dev)
    Hinv = eye.expand(B, p, p).clone() * 0.1
    n_outer = 0
    part = None  # (active mice, their packed data, rows, hyperparameters, score)
    for n_outer in range(1, max_outer + 1):
        if active_set and bool(done.any()):
            act = torch.nonzero(~done)[:, 0]
            if part is None or not torch.equal(part[0], act):
                sdata, rows = _subset(data, act)
                part = (act, sdata, rows, hs.subset(act), score[rows])
            _, sdata, rows, shs, sscore = part
            su, sF, sgF, sHinv, smode, sdone = u[act], F[act], gF[act], Hinv[act], _mode_take(mode, rows, act), \
                done[act]
        else:
            act, sdata, shs, sscore = None, data, hs, score
            su, sF, sgF, sHinv, smode, sdone = u, F, gF, Hinv, mode, done
        su, sF, sgF, sHinv, smode, sE, sdone = _bfgs_step(sdata, shs, sscore, su, sF, sgF, sHinv, smode, sdone,
                                                          prior_grad, n_outer == 1, tol, exact_grad, newton_iter,
                                                          newton_tol, eye)
        if act is None:
            u, F, gF, Hinv, mode, E, done = su, sF, sgF, sHinv, smode, sE, sdone
        else:
            u, F, gF, Hinv, E, done = u.clone(), F.clone(), gF.clone(), Hinv.clone(), E.clone(), done.clone()
            u[act], F[act], gF[act], Hinv[act], E[act], done[act] = su, sF, sgF, sHinv, sE, sdone
            mode = _mode_put(mode, smode, rows, act)
        if rival is not None and n_outer >= rival[0]:
            done = done | (E < rival[1])
        if _log_iteration(history, n_outer, E, F, done):
            break
    hs.u = u.detach()
    return mode, E, F, done, n_outer


def _bfgs_step(data, hs, score, u, F, gF, Hinv, mode, done, prior_grad, first, tol, exact_grad, newton_iter,
               newton_tol, eye):
    """One iteration of :func:`_bfgs` on a (sub)batch: line search along the quasi-Newton direction, new
    gradient, inverse-Hessian update, stop flags. Returns ``(u, F, gF, Hinv, mode, E, done)``."""
    dt = u.dtype
    d = (Hinv @ gF[..., None])[..., 0]
    bad = (gF * d).sum(-1) <= 0
    if bool(bad.any()):  # reset to scaled steepest ascent
        Hinv = Hinv.clone()
        Hinv[bad] = eye * 0.1
        d = torch.where(bad[:, None], 0.1 * gF, d)
    d = d * torch.clamp(1.0 / d.norm(dim=-1).clamp(min=1e-300), max=1.0)[:, None]
    slope = (gF * d).sum(-1)
    alpha = torch.where(done, 0.0, 1.0).to(dt)
    accepted = done.clone()
    u_new, F_new, m_new = u.clone(), F.clone(), mode
    for _ in range(4):
        u_try = u + alpha[:, None] * d
        m_try = find_mode(data, hs.natural(u_try), score, z0=mode.z, max_iter=newton_iter, tol=newton_tol)
        E_try, _ = log_evidence(data, hs.natural(u_try), score, m_try)
        F_try = E_try + hs.log_prior(u_try)
        good = (F_try >= F + 1e-4 * alpha * slope) & torch.isfinite(F_try) & ~accepted
        u_new = torch.where(good[:, None], u_try, u_new)
        F_new = torch.where(good, F_try, F_new)
        m_new = _merge(data, good, m_new, m_try)
        accepted |= good
        if bool(accepted.all()):
            break
        alpha = torch.where(accepted, alpha, alpha * 0.3)
    gain = F_new - F
    u_old, g_old = u, gF
    u, mode = u_new, m_new
    grad, E = evidence_gradient(data, hs, u, score, mode, exact=exact_grad)
    F = E + hs.log_prior(u)
    gF = grad + prior_grad(u)
    s, y = u - u_old, -(gF - g_old)  # BFGS on -F
    sy = (s * y).sum(-1)
    ok = (sy > 1e-10) & ~done
    if first:  # scale the initial inverse Hessian by the first curvature pair (Nocedal & Wright 6.20)
        gamma = (sy / (y * y).sum(-1).clamp(min=1e-300)).clamp(1e-3, 1e3)
        Hinv = torch.where(ok[:, None, None], gamma[:, None, None] * eye, Hinv)
    rho = torch.where(ok, 1.0 / sy.clamp(min=1e-300), 0.0)
    V = eye - rho[:, None, None] * s[:, :, None] * y[:, None, :]
    Hn = V @ Hinv @ V.mT + rho[:, None, None] * s[:, :, None] * s[:, None, :]
    Hinv = torch.where(ok[:, None, None], Hn, Hinv)
    predicted = 0.5 * (gF * (Hinv @ gF[..., None])[..., 0]).sum(-1)  # quasi-Newton model's remaining gain
    done = done | ~accepted | ((gain.abs() < tol) & (predicted < tol))
    return u, F, gF, Hinv, mode, E, done


def _objective_hessian(data, hs: HyperSet, score, u, mode, gF, prior_grad, exact_grad, newton_iter, newton_tol,
                       fd_step=1e-4):
    """Hessian ``(B, p, p)`` of (evidence + hyperprior) in the transformed coordinates at ``u`` (gradient
    ``gF``, mode ``mode``) by forward differences of the exact evidence gradient: one perturbed mode and
    gradient per free hyperparameter, all mice at once; symmetrised, non-finite entries set to 0."""
    B, p = u.shape
    Hs = torch.zeros(B, p, p, dtype=u.dtype, device=u.device)
    for i in range(p):
        u_i = u.clone()
        u_i[:, i] += fd_step
        m_i = find_mode(data, hs.natural(u_i), score, z0=mode.z, max_iter=newton_iter, tol=newton_tol)
        g_i, _ = evidence_gradient(data, hs, u_i, score, m_i, exact=exact_grad)
        Hs[:, :, i] = (g_i + prior_grad(u_i) - gF) / fd_step
    return torch.nan_to_num(0.5 * (Hs + Hs.mT), nan=0.0, posinf=0.0, neginf=0.0)


def _newton_tr(data, hs: HyperSet, score, max_outer, tol, exact_grad, newton_iter, history, z0=None,
               newton_tol=1e-6, fd_step=1e-4, radius0=1.0):
    """Batched trust-region Newton ascent of (evidence + hyperprior) over each mouse's free hyperparameters.

    Per iteration and mouse: the Hessian of the objective in the transformed coordinates by forward
    differences of the exact evidence gradient (one perturbed mode and gradient per free hyperparameter,
    all mice at once), symmetrised; its eigenvalues made negative (|lambda|, floored at 1e-9 of the largest
    and at 1e-6) so the step ``d = (-H)^-1 g`` is an ascent direction scaled per coordinate by the curvature
    (the evidence is ~1e6 times steeper in log eta than in log sigma at small noise, which stalls an
    isotropic search). The step is cut to the trust radius (transformed units); the radius shrinks to a quarter
    of the step length when the gain is under a quarter of the quadratic model's prediction or the trial
    point's evidence is not finite (a step that loses is rejected and retried,
    up to 4 times per iteration) and doubles when a boundary step gains more than 3/4 of it. A mouse stops
    when a step gains less than ``tol`` nats, the predicted gain is below ``tol``, or no step gains.
    """
    B, p = hs.u.shape
    dt, dev = hs.u.dtype, hs.u.device
    u, prior_grad, mode, E, F, gF, done = _search_start(data, hs, score, exact_grad, newton_iter, z0,
                                                         history)
    radius = torch.full((B,), float(radius0), dtype=dt, device=dev)
    n_outer = 0
    for n_outer in range(1, max_outer + 1):
        Hs = _objective_hessian(data, hs, score, u, mode, gF, prior_grad, exact_grad, newton_iter, newton_tol,
                                fd_step)
        lam, V = torch.linalg.eigh(-Hs)
        lam = lam.abs()
        lam = torch.maximum(lam, torch.clamp(1e-9 * lam.amax(-1, keepdim=True), min=1e-6))
        Hneg = V @ torch.diag_embed(lam) @ V.mT  # positive definite model of -H
        newton = (V @ ((V.mT @ gF[..., None]) / lam[..., None]))[..., 0]
        accepted = done.clone()
        u_new, F_new, m_new = u.clone(), F.clone(), mode
        for _ in range(4):
            d = newton * torch.clamp(radius / newton.norm(dim=-1).clamp(min=1e-300), max=1.0)[:, None]
            pred = (gF * d).sum(-1) - 0.5 * (d[:, None, :] @ Hneg @ d[..., None])[:, 0, 0]
            u_try = torch.where(accepted[:, None], u, u + d)
            m_try = find_mode(data, hs.natural(u_try), score, z0=mode.z, max_iter=newton_iter, tol=newton_tol)
            E_try, _ = log_evidence(data, hs.natural(u_try), score, m_try)
            F_try = E_try + hs.log_prior(u_try)
            gain = F_try - F
            ratio = torch.where(torch.isfinite(gain), gain / pred.clamp(min=1e-300), -math.inf)
            good = (gain > 0) & torch.isfinite(F_try) & ~accepted
            at_edge = newton.norm(dim=-1) > radius * (1 - 1e-9)
            radius = torch.where(~accepted & (ratio < 0.25), 0.25 * torch.minimum(radius, d.norm(dim=-1)), radius)
            radius = torch.where(good & (ratio > 0.75) & at_edge, radius * 2.0, radius)
            u_new = torch.where(good[:, None], u_try, u_new)
            F_new = torch.where(good, F_try, F_new)
            m_new = _merge(data, good, m_new, m_try)
            done = done | (~accepted & (pred < tol))
            accepted |= good | done
            if bool(accepted.all()):
                break
        gain = F_new - F
        u, mode = u_new, m_new
        grad, E = evidence_gradient(data, hs, u, score, mode, exact=exact_grad)
        F = E + hs.log_prior(u)
        gF = grad + prior_grad(u)
        done |= ~accepted | (gain.abs() < tol)
        if _log_iteration(history, n_outer, E, F, done):
            break
    hs.u = u.detach()
    return mode, E, F, done, n_outer


def _prior_moments(hs: HyperSet):
    """Centres and sds ``(p,)`` of the current Gaussian priors of the free transformed hyperparameters (the
    population prior where one is set, else the weak prior of :data:`HYPERS`)."""
    c, s = [], []
    for n in hs.free:
        centre, sd = hs.population.get(n, (_to_u(n, HYPERS[n].prior_centre), HYPERS[n].prior_sd))
        c.append(float(centre))
        s.append(float(sd))
    return (torch.tensor(c, dtype=hs.u.dtype, device=hs.u.device),
            torch.tensor(s, dtype=hs.u.dtype, device=hs.u.device))


def _population_mle(u, A, g, pooled, centre, sd, min_sd=0.05, max_sd=5.0, step=1.0):
    """Population means and sds of the pooled transformed hyperparameters that maximise the
    Laplace-approximated marginal likelihood across mice.

    ``u`` ``(B, p)``: each mouse's current hyperparameters; ``A`` ``(B, p, p)``: minus the Hessian of its log
    evidence there (eigenvalues floored at 0); ``g`` ``(B, p)``: the evidence's gradient there. Each mouse's
    evidence is the Gaussian ``exp(h'u - u'Au/2)``, ``h = A u + g`` (a Newton step of the evidence alone, so
    the answer does not depend on how exactly the search stopped; along each eigen-direction of ``A`` the step
    is cut to at most ``step`` transformed units, so a direction with next to no curvature carries no tilt
    instead of an unbounded linear one: the quadratic model is not trusted far from where it was taken); the
    coordinates not in ``pooled`` (indices) keep their own priors N(``centre``, ``sd``^2) (``(p,)``; entries of
    pooled ones unused) and are integrated out, leaving per mouse an information-form likelihood ``(L, l)`` of
    the pooled block. With
    the population N(mu, T), T = diag(tau^2), the marginal log likelihood of a mouse is (constants dropped)
    ``b'(L + T^-1)^-1 b / 2 - mu'T^-1 mu / 2 - log det(I + T L) / 2``, ``b = l + T^-1 mu``: defined also where
    a mouse's data say nothing about a coordinate (L singular). Maximised over mu and log tau (tau in
    [``min_sd``, ``max_sd``]) by L-BFGS-B. Returns ``(mu, tau)``, arrays ``(k,)``."""
    from scipy.optimize import minimize

    p = u.shape[1]
    P = torch.as_tensor(pooled, device=u.device)
    N = torch.as_tensor([j for j in range(p) if j not in set(pooled)], dtype=torch.long, device=u.device)
    lam, V = torch.linalg.eigh(0.5 * (A + A.mT))
    lam = lam.clamp(min=0.0)
    A = V @ torch.diag_embed(lam) @ V.mT
    gv = (V.mT @ g[..., None])[..., 0]
    gv = torch.maximum(torch.minimum(gv, step * lam), -step * lam)  # Newton step at most `step` per direction
    h = (A @ u[..., None])[..., 0] + (V @ gv[..., None])[..., 0]
    L, l = A[:, P][:, :, P], h[:, P]
    if len(N):  # integrate out the other coordinates under their own priors
        prec = 1.0 / sd[N] ** 2
        ANN = A[:, N][:, :, N] + torch.diag_embed(prec.expand(u.shape[0], -1))
        hN = h[:, N] + prec * centre[N]
        APN = A[:, P][:, :, N]
        L = L - APN @ torch.linalg.solve(ANN, APN.mT)
        l = l - (APN @ torch.linalg.solve(ANN, hN[..., None]))[..., 0]
    L, l = L.detach().double().cpu(), l.detach().double().cpu()
    k = len(pooled)
    eye = torch.eye(k, dtype=torch.float64)

    def neg(x):
        x = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)
        mu, tau2 = x[:k], torch.exp(2 * x[k:])
        Tinv = torch.diag(1.0 / tau2)
        bvec = l + mu / tau2
        quad = (bvec[:, None, :] @ torch.linalg.solve(L + Tinv, bvec[..., None]))[:, 0, 0]
        f = -(0.5 * quad - 0.5 * (mu * mu / tau2).sum() - 0.5 * torch.logdet(eye + torch.diag(tau2) @ L)).sum()
        f.backward()
        return float(f.detach()), x.grad.numpy().copy()

    ls = (math.log(min_sd), math.log(max_sd))
    x0 = np.concatenate([u[:, P].mean(0).detach().double().cpu().numpy(), np.zeros(k)])  # tau 1 to start
    r = minimize(neg, x0, jac=True, method="L-BFGS-B", bounds=[(None, None)] * k + [ls] * k)
    return r.x[:k], np.exp(r.x[k:])


def _population_prior(data, hs: HyperSet, score, mode, names, search_fn, exact_grad, newton_iter, max_iter=6,
                      tol=0.05, min_sd=0.05):
    """Empirical-Bayes population prior of the free hyperparameters ``names`` across the mice of ``data``.

    Each step: per mouse, a Gaussian approximation of its log evidence over its transformed hyperparameters
    ``u`` at the current search result (the evidence's gradient and, by :func:`_objective_hessian` with the
    Gaussian priors' curvature taken out, its Hessian); the population means and sds of the pooled names that
    maximise the approximate marginal likelihood (:func:`_population_mle`) then replace those names' priors
    (the weak prior of :data:`HYPERS` at the first step), and every mouse's search reruns from where it
    stopped. Stops when neither the mean nor the log sd of any name moves by more than ``tol``, or after
    ``max_iter`` refits. A mouse whose evidence is flat along a name ends near the population mean instead of
    wherever the weak prior let it drift. Returns ``(mode, E, F, done, n_outer, trace)``; ``hs.u`` and
    ``hs.population`` are updated in place; ``trace`` lists each step's means and sds.
    """
    idx = [hs.free.index(n) for n in names]
    prior_grad = lambda uu: torch.autograd.functional.jacobian(lambda v: hs.log_prior(v).sum(), uu)  # noqa: E731
    trace, res, last = [], None, None
    for it in range(max_iter + 1):
        u = hs.u
        grad, _ = evidence_gradient(data, hs, u, score, mode, exact=exact_grad)
        gF = grad + prior_grad(u)
        H = _objective_hessian(data, hs, score, u, mode, gF, prior_grad, exact_grad, newton_iter, 1e-6)
        centre, sd = _prior_moments(hs)
        A = -H - torch.diag(1.0 / sd ** 2)  # minus the evidence's Hessian (the Gaussian priors' taken out)
        mu, tau = _population_mle(u.detach(), A.detach(), grad.detach(), idx, centre, sd, min_sd)
        est = {n: (float(mu[i]), float(tau[i])) for i, n in enumerate(names)}
        trace.append(dict(iteration=it, **{f"{n}_mean_u": est[n][0] for n in names},
                          **{f"{n}_sd_u": est[n][1] for n in names}))
        if last is not None and all(abs(est[n][0] - last[n][0]) < tol and
                                    abs(math.log(est[n][1] / last[n][1])) < tol for n in names):
            trace[-1]["converged"] = True
            break
        if it == max_iter:
            break
        last = est
        hs.population = {n: (torch.tensor(est[n][0], dtype=u.dtype), est[n][1]) for n in names}
        res = search_fn(hs, mode.z)
        mode = res[0]
    if res is None:  # no refit taken
        E, _ = log_evidence(data, hs.natural(), score, mode)
        res = (mode, E, E + hs.log_prior(hs.u), mode.converged, 0)
    return (*res, trace)


def check_population(names, free, what: str = "population") -> None:
    """ValueError naming ``what`` (the argument or option) unless every name in ``names`` is in ``free``."""
    for name in names:
        if name not in free:
            raise ValueError(f"{what}: {name!r} is not a free hyperparameter; free: {list(free)}")


SEARCHES = ("bfgs", "newton")
STARTS = ("network", "defaults", "psytrack")
#: Fixed values of the ``start="psytrack"`` start: no learning, no lapse, unit gains, equal rows of U.
PSYTRACK_START = dict(eta=0.0, lapse=0.0, w0=1.0, k=1.0, s0=0.05, b_L=0.05, b_R=0.05)


def fit_noisy(trials: pd.DataFrame, free=None, fixed: dict | None = None, score_rows=None,
              max_outer: int = 50, tol: float = 1e-2, newton_iter: int = 4, exact_grad: bool = True,
              band: float = 0.95, encoding: str = "side", zero_reward: str = "expected", device="cpu",
              dtype=torch.float64, threads: int | None = None, init: str = "rollout", crop: bool = True,
              start: str = "network", network_kw: dict | None = None, noise: str = "log",
              frozen=(), search: str = "bfgs", sigma_per: str = "group", active_set: bool = True,
              give_up=None, closed_form: bool = True, population=()) -> NoisyFit:
    """Fit the noisy learner to every mouse of a trial table (batched over mice).

    Parameters
    ----------
    trials : trial table (validated and sorted here; mice in name order).
    free : hyperparameters fitted per mouse by Laplace evidence (names of :data:`HYPERS`); None (default):
        :func:`default_free` of the variant (beta and the noise sds of the latent groups; :data:`DEFAULT_FREE`
        for the default model).
    fixed : values (scalar or one per mouse) of the others, or starts of free ones; defaults from :data:`HYPERS`.
    score_rows : optional bool array over the prepared table's rows: choices in the likelihood (default all);
        the learner still learns from every trial.
    max_outer, tol : BFGS iterations and stopping change of the objective (nats) per mouse (the recommended
        variant's searches on the 25 Liebana et al. mice end within 44 iterations; with 20, 13 of them did not).
    newton_iter : Newton iterations per trial point of the evidence search (warm-started from the current
        mode; the first mode gets up to 50).
    exact_grad : exact evidence gradient (default; with the implicit mode term) or the decoupled one (faster,
        biased in beta).
    band : level of the credible bands in ``weights``.
    threads : torch CPU threads during the fit (None: leave as is).
    init : ``"rollout"`` (start the weights on the deterministic network's path) - the only option now.
    start : ``"network"`` (default): first fit the deterministic network (the sigma -> 0 limit;
        :class:`mouse_rl.fit.cv.NetworkModel`, MAP, on the same scored choices) and take its eta, beta, w0, k,
        s0, b_L, b_R and lapse as the start (free ones) or fixed values (the others; ``fixed`` overrides);
        ``"defaults"``: start from :data:`HYPERS`.
        ``"psytrack"``: eta = 0, lapse 0, unit gains (w0 = k = 1), s0 = b_L = b_R = 0.05 (with
        ``noise="linear", frozen=("a",)`` and the magnitude encoding, PsyTrack's model: module docstring).
        A sequence, e.g. ``("network", "psytrack")``: one evidence search from each, and per mouse the one that
        ends at the higher Laplace log evidence is kept (``params["start"]`` names it). The fixed
        hyperparameters (eta, the initial weights, the lapse where not free) are those of the start kept.
    give_up : with several starts, ``(k, margin)``: from its k-th iteration on, a later start's search stops
        for a mouse whose evidence is more than ``margin`` nats below the best earlier start's final evidence
        (it cannot be kept unless it gains that much; the search only rises). None (default): every search runs
        to its own stop.
    active_set : the BFGS search solves only the mice still searching (default; the same results as solving
        every mouse every iteration, faster when some mice stop early).
    closed_form : in the affine variant (``noise="linear", frozen=("a",)``), compute the joint terms, the exact
        Hessian and the evidence gradient in closed form (:func:`_affine_terms`, :func:`_affine_surrogate`)
        and solve on the latent coordinates only (:func:`_solve`) - the same numbers to rounding (1e-12
        relative; the solves bit for bit), about twice as fast (default); False: autograd through the rule
        and the policy and full 9 x 9 solves, the code path before (for comparisons).
    population : free hyperparameters (e.g. ``("eta", "beta")``) given a population prior instead of the weak
        one of :data:`HYPERS`: a Gaussian over the mice of this call in the transformed coordinate, its mean and
        sd estimated from the mice themselves (empirical Bayes, :func:`_population_prior`), so a mouse whose data
        leave a hyperparameter unidentified is pulled to the cohort's value. The fit of one mouse then depends
        on the other mice of the call (by design); ``()`` (default): each mouse on its own.
        ``NoisyFit.population`` reports the estimated means (natural units) and sds.
    network_kw : options of that network fit (e.g. ``n_restarts``).
    search : evidence search: ``"bfgs"`` (default; isotropic start) or ``"newton"`` (trust-region Newton on
        a finite-difference Hessian of the exact gradient, scaled per coordinate: for fitting eta jointly,
        :func:`_newton_tr`).
    crop : fit each mouse without its trials after its last scored one (they cannot change the evidence;
        the time-aware scheme halves the work), then extend the MAP over them by the rule.
    noise : ``"log"`` (default): the state is the log-weights (multiplicative noise, weights stay positive);
        ``"linear"``: the state is the weights themselves (additive Gaussian noise, the rule without ``|.|``,
        weights may change sign; noise sds in weight units). See the module docstring.
    frozen : weight groups (``"a"``, ``"U"``) held at their initial values: no learning, no noise, not in the
        state. ``noise="linear", frozen=("a",)`` with eta = 0 is PsyTrack's model (module docstring).
    sigma_per : ``"group"`` (default): one noise sd per weight group (``sigma_U``, ``sigma_day_U``);
        ``"column"``: one per input column of U (``sigma_U_stimL``, ``sigma_U_stimR``, ``sigma_U_bias`` and
        their ``sigma_day_U_*``; both rows of a column share it), PsyTrack's per-weight sigma and sigDay. Column
        sds not in ``fixed`` start from ``fixed["sigma_U"]`` / ``fixed["sigma_day_U"]`` where given.

    Returns
    -------
    NoisyFit
    """
    if init != "rollout":
        raise ValueError(f"init: must be 'rollout', got {init!r}")
    if not 0 < band < 1:
        raise ValueError(f"band: must lie in (0, 1), got {band!r}")
    if search not in SEARCHES:
        raise ValueError(f"search: must be one of {SEARCHES}, got {search!r}")
    if not isinstance(closed_form, (bool, np.bool_)):
        raise ValueError(f"closed_form: must be True or False, got {closed_form!r}")
    ModelParams(encoding=encoding, zero_reward=zero_reward)  # validates both
    free = default_free(frozen, sigma_per) if free is None else tuple(free)
    df = prepare_trials(trials)
    data = pack(df, encoding, zero_reward, device, dtype, prepared=True, noise=noise, frozen=frozen,
                sigma_per=sigma_per)
    data.closed_form = bool(closed_form)
    score = torch.ones(len(df), dtype=torch.bool, device=device) if score_rows is None else \
        torch.as_tensor(np.asarray(score_rows, dtype=bool), device=device)
    if score.shape[0] != len(df):
        raise ValueError(f"score_rows: expected {len(df)} entries (rows of the prepared table), got {score.shape[0]}")
    t_start = time.perf_counter()
    starts = (start,) if isinstance(start, str) else tuple(start)
    if not starts or any(s not in STARTS for s in starts) or len(set(starts)) < len(starts):
        raise ValueError(f"start: must be one of {STARTS} or a sequence of distinct ones, got {start!r}")
    if give_up is not None and (len(give_up) != 2 or give_up[0] < 0 or not give_up[1] >= 0):
        raise ValueError(f"give_up: must be (iterations >= 0, margin >= 0 nats) or None, got {give_up!r}")
    population = (population,) if isinstance(population, str) else tuple(population or ())
    check_population(population, free)
    if population and data.n_mice < MIN_POPULATION_MICE:
        raise ValueError(f"population: a population prior needs at least {MIN_POPULATION_MICE} mice, "
                         f"got {data.n_mice}")
    hsets = []
    for name in starts:
        fx = dict(fixed or {})
        if name == "network":  # the sigma -> 0 limit fitted first (deterministic network, same scored choices)
            fx = {**_network_start(df, score.cpu().numpy(), encoding, zero_reward, network_kw), **fx}
        elif name == "psytrack":  # no learning, no lapse, unit gains, equal initial rows of U: a random walk
            fx = {**PSYTRACK_START, **fx}
        if sigma_per == "column":  # column sds start from the group's where that is given
            for group, cols in (("sigma_U", COLUMN_SIGMAS), ("sigma_day_U", COLUMN_DAY_SIGMAS)):
                if group in fx:
                    for c in cols:
                        fx.setdefault(c, fx[group])
        hsets.append(HyperSet(data.n_mice, free, fx, dtype, device))
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        history: list = []
        codes = data.mouse.cpu().numpy()
        pos = np.arange(len(df)) - data.starts[codes]
        sc = score.cpu().numpy()
        last = np.full(data.n_mice, -1)
        np.maximum.at(last, codes, np.where(sc, pos, -1))
        if np.any(last < 0):
            names = [data.mice[i] for i in np.flatnonzero(last < 0)]
            raise ValueError(f"score_rows: mice without any scored trial: {names}")
        keep = pos <= last[codes]
        cropped = bool(crop) and not keep.all()  # later trials cannot change the evidence: fit without them
        fdata = pack(df[keep].reset_index(drop=True), encoding, zero_reward, device, dtype, prepared=True,
                     noise=noise, frozen=frozen, sigma_per=sigma_per) if cropped else data
        fdata.closed_form = bool(closed_form)
        fscore = score[torch.as_tensor(keep, device=score.device)] if cropped else score
        best = None
        for k, (name, hs) in enumerate(zip(starts, hsets)):
            hist: list = []
            if hs.u.shape[1] and search == "bfgs":
                rival = None if best is None or give_up is None else (give_up[0], best[1] - give_up[1])
                res = _bfgs(fdata, hs, fscore, max_outer, tol, exact_grad, newton_iter, hist,
                            active_set=active_set, rival=rival)
            elif hs.u.shape[1]:
                res = _newton_tr(fdata, hs, fscore, max_outer, tol, exact_grad, newton_iter, hist)
            else:
                m0 = find_mode(fdata, hs.natural(), fscore, max_iter=max(newton_iter, 50))
                E0, _ = log_evidence(fdata, hs.natural(), fscore, m0)
                res = (m0, E0, E0 + hs.log_prior(hs.u), m0.converged, 0)
            history.extend(dict(h, start=name) for h in hist)
            mode, E, F, done, n_outer = res
            won = torch.full((data.n_mice,), k, dtype=torch.int64, device=E.device)
            if best is not None:  # per mouse, the start whose search ends at the higher Laplace evidence
                take = torch.nan_to_num(E, nan=-math.inf) > torch.nan_to_num(best[1], nan=-math.inf)
                mode = _merge(fdata, take, best[0], mode)
                E, done = torch.where(take, E, best[1]), torch.where(take, done, best[2])
                n_outer = max(n_outer, best[3])
                won = torch.where(take, won, best[4])
            best = (mode, E, done, n_outer, won)
        mode, E, done, n_outer, won = best
        mode_iter = mode.n_iter  # the search's (the tail's refit below replaces the mode)
        hs = hsets[0]
        if len(hsets) > 1:
            hs.u = torch.stack([h.u for h in hsets])[won, torch.arange(data.n_mice)]
            hs.values = {n: torch.stack([h.values[n] for h in hsets])[won, torch.arange(data.n_mice)]
                         for n in hs.values}
        trace = []
        if population:
            def search_fn(h, z0):
                hist: list = []
                out = _bfgs(fdata, h, fscore, max_outer, tol, exact_grad, newton_iter, hist, z0=z0,
                            active_set=active_set) if search == "bfgs" else \
                    _newton_tr(fdata, h, fscore, max_outer, tol, exact_grad, newton_iter, hist, z0=z0)
                history.extend(dict(x, start="population") for x in hist)
                return out

            mode, E, _, done, n_pop, trace = _population_prior(fdata, hs, fscore, mode, population, search_fn,
                                                            exact_grad, newton_iter)
            n_outer = max(n_outer, n_pop)
        if cropped:  # the MAP of the unscored tail is the rule's forecast from the last fitted weights
            z = torch.zeros(len(df), D_STATE, dtype=dtype, device=device)
            z[torch.as_tensor(keep, device=device)] = mode.z
            z = rollout(data, hs.natural(), z, start=last + 1)
            mode = find_mode(data, hs.natural(), score, z0=z, max_iter=newton_iter)
        seconds = time.perf_counter() - t_start
        fit = _assemble(df, data, hs, score, mode, E, done, n_outer, mode_iter, seconds, band, history)
        fit.params["start"] = [starts[int(i)] for i in won.cpu()]
        natural = lambda n, c: float(_from_u(n, torch.as_tensor(c, dtype=torch.float64).cpu()))  # noqa: E731
        fit.population = {n: dict(mean=natural(n, c), sd=sd, transform=HYPERS[n].transform,
                                  iterations=len(trace) - 1, converged=bool(trace[-1].get("converged", False)),
                                  trace_mean=[natural(n, t[f"{n}_mean_u"]) for t in trace],
                                  trace_sd=[t[f"{n}_sd_u"] for t in trace])
                          for n, (c, sd) in hs.population.items()}
        return fit
    finally:
        torch.set_num_threads(old)


_NETWORK_NAMES = ("eta", "beta", "w0", "k", "s0", "b_L", "b_R", "lapse")


def _network_start(df, score_np, encoding, zero_reward, network_kw) -> dict:
    """Per-mouse (eta, beta, w0, k, s0, b_L, b_R, lapse) of the deterministic network's MAP fit."""
    from .cv import NetworkModel

    net = NetworkModel(df, fixed=ModelParams(encoding=encoding, zero_reward=zero_reward), **(network_kw or {}))
    net.fit(score_np)
    p = net.transform.params(net.u)
    out = {}
    for name in _NETWORK_NAMES:
        v = getattr(p, name).detach().cpu().double().numpy()
        lo, hi = HYPERS[name].bounds
        out[name] = np.clip(v, 0.0 if name == "lapse" else lo, hi)
    return out


def _status(data: Packed, zn: np.ndarray, done: np.ndarray, finite: np.ndarray, n_outer: int,
            mode_iter: int) -> list[str]:
    """Per mouse: ``"converged"``, or why not (the search's iteration limit; with no hyperparameter search
    (``n_outer`` 0), the Newton search for the MAP weights; the Laplace Hessian failing at the MAP weights, with
    the lowest log-weight: a weight driven to ~0 by the rule's reflection makes it singular)."""
    out = []
    for i in range(data.n_mice):
        if not finite[i]:
            rows = zn[data.starts[i]:data.starts[i + 1]]
            j = int(np.argmin(rows.min(0)))
            low = f"; lowest log-weight {rows[:, j].min():.1f} ({WEIGHT_COLUMNS[j]})" if data.noise == "log" else ""
            out.append("evidence not finite: the Laplace Hessian at the MAP weights is not positive definite"
                       + low)
        elif not done[i] and n_outer:
            out.append(f"search unfinished after {n_outer} iterations (max_outer)")
        elif not done[i]:
            out.append(f"MAP weights unconverged after {mode_iter} Newton iterations (decrement above tolerance)")
        else:
            out.append("converged")
    return out


def _assemble(df, data, hs, score, mode, E, done, n_outer, mode_iter, seconds, band, history) -> NoisyFit:
    hp = hs.natural()
    _, sol = log_evidence(data, hp, score, mode, inverse=True)
    z, cov = _pin(data, mode.z.detach(), hp), sol.cov
    if not data.all_latent:  # frozen coordinates are known exactly
        cov = cov * (data.latent[:, None] & data.latent[None, :]).to(cov.dtype)
    with torch.no_grad():
        lp = choice_logp(z, data.x, data.choice, hp["beta"][data.mouse], _lapse(hp, data.mouse), data.noise)
        pr = prob_right(z, data.x, hp["beta"][data.mouse], _lapse(hp, data.mouse), data.noise)
    ll = torch.zeros(data.n_mice, dtype=z.dtype).index_add(0, data.mouse.cpu(), torch.where(score, lp, 0.0).cpu())
    params = hs.table(data.mice)
    params["log_evidence"] = E.detach().cpu().numpy()
    params["log_hyperprior"] = hs.log_prior(hs.u).detach().cpu().numpy()
    params["loglik"] = ll.numpy()
    mouse = data.mouse.cpu().numpy()
    params["n_trials"] = np.bincount(mouse[score.cpu().numpy()], minlength=data.n_mice)
    # a mouse whose evidence is not finite (the Laplace Hessian at its mode failed) is never reported converged
    finite = np.isfinite(params["log_evidence"].to_numpy())
    params["converged"] = done.cpu().numpy() & finite
    zn = z.cpu().numpy()
    params["status"] = _status(data, zn, done.cpu().numpy(), finite, n_outer, mode_iter)
    params["n_outer"] = n_outer
    params["fit_seconds"] = seconds
    sd = torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=0).sqrt().cpu().numpy()
    sd[~finite[mouse]] = np.nan  # no Laplace posterior where its Hessian failed: no bands
    q = float(torch.distributions.Normal(0, 1).icdf(torch.tensor(0.5 + band / 2)))
    w = pd.DataFrame({"mouse": df["mouse"].to_numpy(), "session": df["session"].to_numpy(),
                      "trial": df["trial"].to_numpy()})
    to_w = np.exp if data.noise == "log" else (lambda v: v)
    for j, col in enumerate(WEIGHT_COLUMNS):
        w[col] = to_w(zn[:, j])
        w[f"{col}_lo"] = to_w(zn[:, j] - q * sd[:, j])
        w[f"{col}_hi"] = to_w(zn[:, j] + q * sd[:, j])
        w[f"{col}_logsd" if data.noise == "log" else f"{col}_sd"] = sd[:, j]
    w["p_right"] = pr.cpu().numpy()
    w["scored"] = score.cpu().numpy()
    return NoisyFit(params, w, float(E.sum()), z, cov, hs, data, history)


PREDICTIVES = ("plugin", "laplace", "probit")


def trial_logp(fit: NoisyFit, predictive: str = "plugin", n_samples: int = 64, seed: int = 0) -> torch.Tensor:
    """log P(observed choice) of every packed trial ``(N,)`` (nats): at the MAP weights (``"plugin"``),
    averaged over each trial's marginal posterior ``N(z*_t, cov_t)`` with ``n_samples`` draws (``"laplace"``),
    or by the probit (MacKay) approximation of that average (``"probit"``): the log-odds
    ``l = beta (Q_R - Q_L)``, linearised at the mode, is ``N(l*, s^2)`` with ``s^2 = grad l^T cov_t grad l``
    (exactly Gaussian when the log-odds are linear in the state: ``noise="linear"`` with the gains frozen), and
    ``E[sigmoid(l)] ~= sigmoid(l* / sqrt(1 + pi s^2 / 8))``; the lapse mixes in as in
    :func:`mouse_rl.network.p_right`. Deterministic and one gradient pass."""
    data, hp, z = fit.data, fit.hyper.natural(), fit.z
    beta, lapse = hp["beta"][data.mouse], _lapse(hp, data.mouse)
    if predictive not in PREDICTIVES:
        raise ValueError(f"predictive: must be one of {PREDICTIVES}, got {predictive!r}")
    if predictive == "probit":
        beta, lapse = beta.detach(), None if lapse is None else lapse.detach()
        mu, g = _row_grad(lambda zz: log_odds(zz, data.x, beta, data.noise), z.detach())
        s2 = ((g[:, None, :] @ fit.cov.detach() @ g[:, :, None])[:, 0, 0]).clamp(min=0)
        lr = mu / torch.sqrt(1 + math.pi * s2 / 8)  # moderated log-odds of R
        signed = torch.where(data.choice == 1, lr, -lr)
        logp = torch.nn.functional.logsigmoid(signed)
        if lapse is None:
            return logp
        return torch.logaddexp(torch.log(lapse / 2), torch.log1p(-lapse) + logp)
    with torch.no_grad():
        if predictive == "plugin":
            return choice_logp(z, data.x, data.choice, beta, lapse, data.noise)
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        eps = torch.randn(n_samples, *z.shape, generator=g, dtype=z.dtype).to(z.device)
        C = torch.linalg.cholesky_ex(fit.cov + 1e-12 * torch.eye(D_STATE, dtype=z.dtype, device=z.device))[0]
        lo, hi = (math.log(W_FLOOR), math.log(MAX_WEIGHT)) if data.noise == "log" else (-MAX_WEIGHT, MAX_WEIGHT)
        draws = (z + (C[None] @ eps[..., None])[..., 0]).clamp(lo, hi)
        p = prob_right(draws, data.x, beta, lapse, data.noise)
        pc = torch.where(data.choice == 1, p, 1 - p).mean(0)
        return torch.log(pc.clamp(min=1e-300))


# ----------------------------------------------------------------------------------------------------------------
# Cross-validation model and simulation
# ----------------------------------------------------------------------------------------------------------------

class NoisyNetworkModel:
    """The noisy learner as a :class:`mouse_rl.fit.cv.CVModel`.

    ``fit(train_mask)`` fits hyperparameters and weights with only the training choices in the likelihood
    (the learner learns from every trial); ``score(mask)`` returns the held-out log-likelihood per mouse from
    each trial's posterior (``predictive="plugin"``: at the MAP weights; ``"laplace"``: averaged over the
    trial's marginal posterior by sampling, ``"probit"``: by the probit approximation, :func:`trial_logp`;
    with the plug-in score beside it). Trials after the last training trial (the
    time-aware scheme) get the deterministic rule's forecast from the last fitted weights (the MAP with no
    data), and their bands widen by the accumulated noise.
    """

    def __init__(self, trials: pd.DataFrame, name: str = "noisy_network", predictive: str = "plugin",
                 n_samples: int = 64, draw_seed: int = 0, **fit_kw):
        self.name = name
        self.trials = prepare_trials(trials)
        if predictive not in PREDICTIVES:
            raise ValueError(f"predictive: must be one of {PREDICTIVES}, got {predictive!r}")
        self.predictive, self.n_samples, self.draw_seed, self.fit_kw = predictive, n_samples, draw_seed, fit_kw
        self.result: NoisyFit | None = None
        self._lp = None

    def fit(self, train_mask) -> "NoisyNetworkModel":
        self.result = fit_noisy(self.trials, score_rows=np.asarray(train_mask, bool), **self.fit_kw)
        self._lp = None
        return self

    def score(self, mask) -> pd.DataFrame:
        from .cv import score_frame

        if self.result is None:
            raise RuntimeError("call fit() first")
        if self._lp is None:
            self._lp = {"plugin": trial_logp(self.result, "plugin").cpu().numpy()}
            if self.predictive != "plugin":
                self._lp[self.predictive] = trial_logp(self.result, self.predictive, self.n_samples,
                                                       self.draw_seed).cpu().numpy()
        mask = np.asarray(mask, bool)
        codes = self.result.data.mouse.cpu().numpy()
        n = np.bincount(codes, weights=mask, minlength=self.result.data.n_mice)
        plug = np.bincount(codes, weights=np.where(mask, self._lp["plugin"], 0.0), minlength=len(n))
        if self.predictive == "plugin":
            return score_frame(self.result.data.mice, plug, n)
        ll = np.bincount(codes, weights=np.where(mask, self._lp[self.predictive], 0.0), minlength=len(n))
        return score_frame(self.result.data.mice, ll, n, plugin=plug)

    def fitted_params(self) -> pd.DataFrame:
        return self.result.params


def simulate_noisy(n_mice: int, hyper: dict | None = None, n_sessions: int = 10, trials_per_session: int = 200,
                   seed: int = 0, contrasts=(-0.5, -0.25, 0.0, 0.25, 0.5), probs=(0.30, 0.15, 0.10, 0.15, 0.30),
                   encoding: str = "side", zero_reward: str = "expected", noise: str = "log", frozen=(),
                   sigma_per: str = "group"):
    """Simulate mice from the noisy learner (one batched loop over trials, all mice at once).

    ``hyper``: name -> scalar or per-mouse values (defaults from :data:`HYPERS`; lapse 0). ``noise``,
    ``frozen``, ``sigma_per``: the model variant (:func:`fit_noisy`).
    Returns ``(trials, z)``: a trial table (schema of :mod:`mouse_rl.schema`, sorted) and the true
    log-weights ``(N, 9)`` of every trial (before its update), in the table's row order.
    """
    if n_mice < 1 or n_sessions < 1 or trials_per_session < 1:
        raise ValueError(f"n_mice, n_sessions, trials_per_session: must be >= 1, got "
                         f"{n_mice}, {n_sessions}, {trials_per_session}")
    if noise not in NOISE:
        raise ValueError(f"noise: must be one of {NOISE}, got {noise!r}")
    lat = _latent_mask(frozen)
    hs = HyperSet(n_mice, (), hyper or {})
    hp = hs.natural()
    gen = np.random.default_rng(seed)
    T = n_sessions * trials_per_session
    c = torch.as_tensor(gen.choice(np.asarray(contrasts, float), size=(T, n_mice), p=np.asarray(probs) / sum(probs)))
    u_choice = torch.as_tensor(gen.random((T, n_mice)))
    u_zero = torch.as_tensor(gen.random((T, n_mice)))
    eps = torch.as_tensor(gen.standard_normal((T, n_mice, D_STATE)))
    keep = 1.0 if lat is None else lat.double()
    z0_noise = torch.as_tensor(gen.standard_normal((n_mice, D_STATE)))
    z = _init_mean(hp, noise) + keep * hp["sigma_init"][:, None] * z0_noise
    if sigma_per not in SIGMA_PER:
        raise ValueError(f"sigma_per: must be one of {SIGMA_PER}, got {sigma_per!r}")
    everyone = torch.arange(n_mice)
    sd, sd_day = noise_sds(hp, everyone, sigma_per), noise_sds(hp, everyone, sigma_per, day=True)
    lapse = None if not bool((hp["lapse"] != 0).any()) else hp["lapse"]
    zs, choices, rewards = [], [], []
    x_all = encode(c, encoding)
    for t in range(T):
        zs.append(z)
        pr = prob_right(z, x_all[t], hp["beta"], lapse, noise)
        ch = (u_choice[t] < pr).long()
        rew = stimulus_reward(c[t], ch)
        rew = torch.where(c[t] == 0, (u_zero[t] < 0.5).to(rew.dtype), rew)
        choices.append(ch)
        rewards.append(rew)
        with torch.no_grad():
            mean = transition(z, x_all[t], ch, learning_reward(c[t], rew, zero_reward), hp["eta"], noise, lat)
        s = sd_day if (t + 1) % trials_per_session == 0 else sd
        z = mean + keep * s * eps[t]
    zs, ch, rw = torch.stack(zs), torch.stack(choices), torch.stack(rewards)
    sess = np.repeat(np.arange(1, n_sessions + 1), trials_per_session)
    trial = np.tile(np.arange(trials_per_session), n_sessions)
    names = [f"noisy{i:03d}" for i in range(n_mice)]
    cn = c.numpy()
    df = pd.DataFrame({
        "mouse": np.repeat(names, T), "session": np.tile(sess, n_mice), "trial": np.tile(trial, n_mice),
        "contrastLeft": np.clip(-cn, 0, None).T.reshape(-1), "contrastRight": np.clip(cn, 0, None).T.reshape(-1),
        "signed_contrast": cn.T.reshape(-1), "choice": ch.numpy().T.reshape(-1), "reward": rw.numpy().T.reshape(-1)})
    df["feedbackType"] = 2 * df["reward"] - 1
    return df, zs.permute(1, 0, 2).reshape(-1, D_STATE)
