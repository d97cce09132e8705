"""The IBL training protocol as a gymnasium environment: one step = one trial, one episode = one session.

Sources of every number (read from the public code; "iblrig v8" =
``int-brain-lab/iblrig``, ``iblrig/base_choice_world.py`` class
``TrainingChoiceWorldSession`` and ``BiasedChoiceWorldSession``,
``iblrig/choiceworld.py`` and the ``*_params.yaml`` files next to them;
"ibllib" = ``brainbox/behavior/training.py``):

Training stage (``trainingChoiceWorld``)
    * Contrast set by training phase (``choiceworld.training_contrasts_probabilities``),
      every signed contrast of the set equally likely:
      phase 0: \\|c\\| in {1, 0.5}; 1: + 0.25; 2: + 0.125; 3: + 0.0625;
      4: + 0 (a single 0 entry among 11); 5: 0.5 removed (9 contrasts).
    * Phase advancement (``check_training_phase``), within a session:
      0 -> 1 when each of -1, -0.5, +0.5, +1 has (correct among its last 50
      presentations) / 50 > 0.8 (so at least 41 of 50: fewer than 50
      presentations count the missing ones as errors, as iblrig's
      ``np.sum(x[-50:]) / 50`` does); 1 -> 2 when -0.25 and +0.25 pass the
      same test; 2 -> 3, 3 -> 4, 4 -> 5 after 200 trials in the phase within
      the session. Phase 5 is the last training phase. The phase carries over
      to the next session (iblrig reads it from the previous session); the
      per-phase trial counts and the last-50 windows restart every session.
      Here a phase's first trial is the one after the criterion is met;
      iblrig counts the trial being drawn before it checks, so its 200-trial
      rule switches one trial earlier.
    * Debiasing (``next_trial``, ``DEBIAS`` on in training, phases < 5): after
      a trial that was not correct (error or no-go) at \\|c\\| >= 0.5, the same
      contrast magnitude is shown again, on the Right if
      N(f_L, 0.5) >= 0.5, where f_L is the fraction of Left choices (our
      choice 0) among the last ``debias_window`` = 10 trials with a response:
      the stimulus goes to the side the mouse neglects. (iblrig's comment says
      "last 10"; its slicing takes every responded trial of the session --
      an iblrig quirk, not reproduced.)
    * Zero-contrast trials: the rewarded side is drawn Left / Right with
      probability 0.5 (``PROBABILITY_LEFT: 0.5``). iblrig v8 as written gives
      every 0 % training trial the Left position (``np.sign(0) == 1`` is
      False); we do not reproduce that (uncertain whether intended).

Implementation: :class:`IBLTrainingEnv` is the one-mouse view of the batched
:class:`envs.ibl_cohort.IBLCohortEnv` (per-mouse counter-based random streams);
:class:`IBLCurriculum` and :class:`BlockSchedule` are plain-Python reference
implementations of the same rules, used to test it.

Biased stage (``biasedChoiceWorld``), entered at a session boundary once the
mouse meets ``biased_after`` (default ``"trained_1b"``: ibllib's status after
which IBL moves a mouse to the biased task, IBL protocol Appendix 2) over its
last 3 training sessions, computed by
:mod:`mouse_rl.analysis.training_criteria` (no RT rule: the env has no RTs).
    * Contrast magnitudes {1, 0.25, 0.125, 0.0625, 0} equally likely
      (``CONTRAST_SET``, ``CONTRAST_SET_PROBABILITY_TYPE: uniform``); the side
      is Left with the block's ``probabilityLeft``, zero contrast included
      (its rewarded side is that drawn position).
    * Blocks (``new_block``, ``base_biased_choice_world_params.yaml``): the
      first block of every session is 90 trials at probabilityLeft 0.5
      (``BLOCK_INIT_5050``); the second is 0.2 or 0.8 at random
      (``BLOCK_PROBABILITY_SET: [0.2, 0.8]``); after that they alternate.
      Block length = int(x), x ~ Exponential(scale ``BLOCK_LEN_FACTOR`` = 60
      trials) redrawn until 20 <= x <= 100 (``BLOCK_LEN_MIN``/``MAX``;
      ``misc.texp``): lengths 20..99 (100 only on an exact draw).
    * No debiasing.

No-go (option ``no_go=True``): action 2 = no response within the response
window (``RESPONSE_WINDOW: 60`` s); it is an unrewarded trial followed by the
no-go timeout ``FEEDBACK_NOGO_DELAY_SECS: 2`` s (errors: ``FEEDBACK_ERROR_DELAY_SECS: 2``;
correct: ``FEEDBACK_CORRECT_DELAY_SECS: 1``), reported in ``info["timeout_s"]``.
No-go trials count as not correct for phase advancement and debiasing (as in
iblrig) and are left out of the training-criteria evaluation (trial tables have
no no-go choice).

Not from the protocol (our defaults): ``trials_per_session = 600``. IBL
sessions end on time and engagement criteria (up to 90 min), typically 400-900
trials; a fixed count keeps episodes simple and exceeds 1b's 400-trial minimum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from gymnasium import spaces

__all__ = [
    "TRAINING_CONTRASTS",
    "BIASED_CONTRASTS",
    "N_PHASES",
    "training_contrast_set",
    "draw_block_length",
    "block_length_pmf",
    "IBLCurriculum",
    "BlockSchedule",
    "IBLTrainingEnv",
]

#: iblrig ``CONTRASTS`` (signed fractions, negative = left).
TRAINING_CONTRASTS = (-1.0, -0.5, -0.25, -0.125, -0.0625, 0.0, 0.0625, 0.125, 0.25, 0.5, 1.0)
#: biasedChoiceWorld ``CONTRAST_SET`` (magnitudes).
BIASED_CONTRASTS = (1.0, 0.25, 0.125, 0.0625, 0.0)
N_PHASES = 6
LAST_N = 50  # trials per contrast in the phase 0/1 criterion window
PASS_FRACTION = 0.8  # strictly above, phases 0 and 1
PHASE_TRIALS = 200  # trials in phases 2-4 before moving on
FIRST_BLOCK_TRIALS, FIRST_BLOCK_P_LEFT = 90, 0.5
BLOCK_SCALE, BLOCK_MIN, BLOCK_MAX = 60.0, 20.0, 100.0
BLOCK_P_LEFT = (0.2, 0.8)
TIMEOUTS_S = {"correct": 1.0, "error": 2.0, "no_go": 2.0}
STAGES = ("training", "biased")


def training_contrast_set(phase: int) -> tuple:
    """Signed contrasts (fractions) of training phase 0..5, each drawn with equal probability."""
    if isinstance(phase, bool) or int(phase) != phase or not 0 <= phase < N_PHASES:
        raise ValueError(f"phase: must be an integer 0..{N_PHASES - 1}, got {phase!r}")
    lowest = (0.5, 0.25, 0.125, 0.0625, 0.0, 0.0)[int(phase)]
    keep = [c for c in TRAINING_CONTRASTS if abs(c) >= lowest]
    return tuple(c for c in keep if not (phase == 5 and abs(c) == 0.5))


def draw_block_length(rng: np.random.Generator, scale: float = BLOCK_SCALE, low: float = BLOCK_MIN,
                      high: float = BLOCK_MAX) -> int:
    """iblrig ``texp``: Exponential(``scale``) redrawn until in [low, high], truncated to int (trials)."""
    while True:
        x = rng.exponential(scale)
        if low <= x <= high:
            return int(x)


def block_length_pmf(scale: float = BLOCK_SCALE, low: float = BLOCK_MIN, high: float = BLOCK_MAX) -> pd.Series:
    """Exact distribution of :func:`draw_block_length`: P(length = k) for k = ceil(low)..floor(high) - 1."""
    ks = np.arange(math.ceil(low), math.floor(high))
    lo, hi = np.maximum(ks, low), np.minimum(ks + 1, high)
    mass = np.exp(-lo / scale) - np.exp(-hi / scale)
    return pd.Series(mass / mass.sum(), index=ks, name="p")


@dataclass
class BlockSchedule:
    """probabilityLeft blocks of one biased session (iblrig ``BiasedChoiceWorldSession.new_block``)."""

    rng: np.random.Generator
    block: int = -1
    block_trial: int = 0
    length: int = 0
    p_left: float = FIRST_BLOCK_P_LEFT
    lengths: list = field(default_factory=list)

    def next_trial(self) -> float:
        """Advance one trial; return the probabilityLeft of that trial."""
        self.block_trial += 1
        if self.block < 0 or self.block_trial >= self.length:
            self.block += 1
            self.block_trial = 0
            if self.block == 0:
                self.length, self.p_left = FIRST_BLOCK_TRIALS, FIRST_BLOCK_P_LEFT
            else:
                self.length = draw_block_length(self.rng)
                self.p_left = (float(self.rng.choice(BLOCK_P_LEFT)) if self.block == 1
                               else round(abs(1 - self.p_left), 1))
            self.lengths.append(self.length)
        return self.p_left


class IBLCurriculum:
    """The protocol's state: training phase, stage (training / biased) and their advancement.

    Pure bookkeeping, no randomness: feed it outcomes with :meth:`record` and
    finished sessions with :meth:`end_session`; read :attr:`phase`,
    :attr:`stage`, :meth:`contrast_set`. See the module docstring for the rules.

    Parameters
    ----------
    start_phase : int
        Training phase of the first session (0..5).
    biased_after : {"trained_1b", "trained_1a", None}
        Status that moves the mouse to the biased stage; None = never.
    start_biased : bool
        Start in the biased stage.
    """

    def __init__(self, start_phase: int = 0, biased_after: str | None = "trained_1b", start_biased: bool = False):
        training_contrast_set(start_phase)  # validates
        if biased_after not in ("trained_1a", "trained_1b", None):
            raise ValueError(f"biased_after: must be 'trained_1a', 'trained_1b' or None, got {biased_after!r}")
        self.phase = int(start_phase)
        self.stage = "biased" if start_biased else "training"
        self.biased_after = biased_after
        self.training_sessions: list[pd.DataFrame] = []
        self.status_history: list[dict] = []
        self.start_session()

    def start_session(self) -> None:
        """Reset the per-session counters (phase trial counts, last-50 windows)."""
        self.phase_trials = np.zeros(N_PHASES, dtype=int)
        self._outcomes: dict[float, list] = {}

    def contrast_set(self) -> tuple:
        """Signed contrasts of the current training phase."""
        return training_contrast_set(self.phase)

    def _last_n_pass(self, contrasts) -> bool:
        return all(sum(self._outcomes.get(c, [])[-LAST_N:]) / LAST_N > PASS_FRACTION for c in contrasts)

    def criterion_met(self) -> bool:
        """Whether the current phase's advancement criterion is met now."""
        if self.stage != "training" or self.phase >= N_PHASES - 1:
            return False
        if self.phase == 0:
            return self._last_n_pass((-1.0, -0.5, 0.5, 1.0))
        if self.phase == 1:
            return self._last_n_pass((-0.25, 0.25))
        return self.phase_trials[self.phase] >= PHASE_TRIALS

    def record(self, signed_contrast: float, correct: bool) -> bool:
        """Count one completed trial of the current phase; advance if the criterion is met. Return whether it advanced."""
        if self.stage != "training":
            return False
        self.phase_trials[self.phase] += 1
        self._outcomes.setdefault(float(signed_contrast), []).append(bool(correct))
        if self.criterion_met():
            self.phase += 1
            return True
        return False

    def end_session(self, session_trials: pd.DataFrame) -> str:
        """File a finished session (trial table: ``signed_contrast``, ``choice`` 0/1, ``reward``).

        In the training stage, evaluates the IBL status over the last 3
        training sessions; when it reaches ``biased_after`` the stage becomes
        "biased" from the next session on. Returns the status string.
        """
        from mouse_rl.analysis.training_criteria import IN_TRAINING, TRAINED_1A, TRAINED_1B, training_status

        if self.stage != "training":
            self.status_history.append({"stage": self.stage, "status": "biased"})
            return "biased"
        self.training_sessions.append(session_trials.reset_index(drop=True))
        window = self.training_sessions[-TRAINED_1B.n_sessions:]
        status = IN_TRAINING
        if len(window) == TRAINED_1B.n_sessions and all(len(s) for s in window):
            table = pd.concat([s.assign(mouse="m", session=i + 1) for i, s in enumerate(window)], ignore_index=True)
            row = training_status(table).iloc[-1]
            status = row["status"]
        reached = {None: False, "trained_1a": status in (TRAINED_1A.status, TRAINED_1B.status),
                   "trained_1b": status == TRAINED_1B.status}[self.biased_after]
        if reached:
            self.stage = "biased"
        self.status_history.append({"stage": "training", "phase": self.phase, "status": status})
        return status


class _CurriculumView:
    """Read-only protocol state of the one mouse of an :class:`envs.ibl_cohort.IBLCohortEnv`."""

    def __init__(self, cohort):
        self._cohort = cohort

    @property
    def phase(self) -> int:
        return int(self._cohort.phase[0])

    @property
    def stage(self) -> str:
        return STAGES[int(self._cohort.biased[0])]

    @property
    def status_history(self) -> list:
        return [s[0] for s in self._cohort.status_history]

    def contrast_set(self) -> tuple:
        return training_contrast_set(self.phase)


class IBLTrainingEnv(gym.Env):
    """One mouse on the IBL training protocol (``mouse_rl/IBLTraining-v0``).

    The one-mouse view of :class:`envs.ibl_cohort.IBLCohortEnv`: for the same
    seed and actions, ``IBLTrainingEnv().reset(seed=s)`` shows the trials that
    mouse 0 of ``IBLCohortEnv(1, seeds=envs.rng.mouse_seeds(s, 1))`` sees, and
    a mouse's trials in a cohort depend only on its own seed and actions.

    Observation: ``float32[2] = (contrastLeft, contrastRight)`` in [0, 1].
    Action: ``Discrete(2)`` (**0 = Left, 1 = Right**), or ``Discrete(3)`` with
    ``no_go=True`` (2 = no response). Reward: 1 if the choice is on the
    rewarded side, else 0. An episode is one session of
    ``trials_per_session`` trials; the curriculum (phase, stage) carries over
    ``reset()`` calls and restarts on ``reset(seed=...)`` (a first reset
    without a seed draws the mouse seed from ``np_random``). A ``reset()``
    mid-session files the session as it stands and starts the next one.

    ``info`` (for the trial about to be shown): ``signed_contrast``,
    ``correct_side`` (0 = L, 1 = R: the rewarded side, zero contrast
    included), ``trial`` (from 0), ``session`` (from 1), ``stage``,
    ``training_phase``, ``probabilityLeft``, ``block`` (biased stage, from 0;
    -1 in training), ``debias_trial``; after a step also the finished trial's
    ``choice``, ``rewarded_side``, ``feedbackType`` (+1 / -1), ``timeout_s`` and
    ``phase_advanced``; with ``terminated`` (the observation is then zeros and
    the trial fields describe the finished trial) also ``status`` (the IBL
    status over the last 3 training sessions, see :class:`IBLCurriculum`; the
    stage it implies applies from the next session).

    Parameters
    ----------
    trials_per_session : int
        Trials per session (count; our default 600, see module docstring).
    start_phase : int
        Training phase (0..5) of the first session.
    debias : bool
        Repeat-after-error debiasing in training phases 0-4.
    debias_window : int
        Responded trials (count) whose Left fraction steers the debiasing side.
    biased_after : {"trained_1b", "trained_1a", None}
        Status that moves the mouse to biased blocks; None = training only.
    start_biased : bool
        Start in the biased stage.
    no_go : bool
        Allow action 2 (no response; no-go timeout).
    """

    metadata = {"render_modes": []}

    def __init__(self, trials_per_session: int = 600, start_phase: int = 0, debias: bool = True,
                 debias_window: int = 10, biased_after: str | None = "trained_1b", start_biased: bool = False,
                 no_go: bool = False):
        from .ibl_cohort import IBLCohortEnv

        self._kwargs = dict(trials_per_session=trials_per_session, start_phase=start_phase, debias=debias,
                            debias_window=debias_window, biased_after=biased_after, start_biased=start_biased,
                            no_go=no_go, record=False, dtype=torch.float64)
        IBLCohortEnv(1, **self._kwargs)  # validates the arguments now
        self.trials_per_session = int(trials_per_session)
        self.no_go = bool(no_go)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(3 if self.no_go else 2)
        self._cohort = None
        self._finished = False
        self.last_status: str | None = None

    @property
    def curriculum(self) -> _CurriculumView:
        """Protocol state: ``phase``, ``stage``, ``status_history``, ``contrast_set()``."""
        if self._cohort is None:
            raise RuntimeError("call reset() first")
        return _CurriculumView(self._cohort)

    def _view(self, obs, info: dict) -> tuple[np.ndarray, dict]:
        out = {
            "signed_contrast": float(info["signed_contrast"][0]),
            "correct_side": int(info["correct_side"][0]),
            "trial": int(info["trial"]),
            "session": int(info["session"]),
            "stage": STAGES[int(info["biased"][0])],
            "training_phase": int(info["training_phase"][0]),
            "probabilityLeft": float(info["probabilityLeft"][0]),
            "block": int(info["block"][0]),
            "debias_trial": bool(info["debias_trial"][0]),
        }
        return obs[0].numpy().astype(np.float32), out

    def session_table(self) -> pd.DataFrame:
        """Trials of the current session so far (the one just finished until the next ``reset()``):
        ``trial``, ``signed_contrast``, ``choice`` (0/1, -1 = no-go), ``reward``, ``probabilityLeft``,
        ``training_phase``, ``stage``, ``debias_trial``."""
        if self._cohort is None:
            raise RuntimeError("call reset() first")
        table = self._cohort.last_session_table if self._finished else self._cohort.session_table()
        return table.drop(columns=[c for c in ("mouse", "session") if c in table]).reset_index(drop=True)

    def reset(self, *, seed=None, options=None):
        from .ibl_cohort import IBLCohortEnv
        from .rng import mouse_seeds

        super().reset(seed=seed)
        if seed is not None or self._cohort is None:
            mouse_seed = mouse_seeds(seed, 1) if seed is not None else [int(self.np_random.integers(2**32))]
            self._cohort = IBLCohortEnv(1, seeds=mouse_seed, **self._kwargs)
            obs, info = self._cohort._obs(), self._cohort._info()
        elif self._cohort.trial > 0:  # a session cut short is filed as it stands
            obs, info = self._cohort.new_session()
            self.last_status = self._cohort.status_history[-1][0]
        else:
            obs, info = self._cohort._obs(), self._cohort._info()
        self._finished = False
        return self._view(obs, info)

    def step(self, action):
        if not self.action_space.contains(action):
            allowed = "0 (Left), 1 (Right) or 2 (no-go)" if self.no_go else "0 (Left) or 1 (Right)"
            raise ValueError(f"action: must be {allowed}, got {action!r}")
        if self._cohort is None:
            raise RuntimeError("call reset() first")
        if self._finished:
            raise RuntimeError("the session has ended: call reset() to start the next one")
        before = self._view(self._cohort._obs(), self._cohort._info())[1]
        obs, reward, terminated, _, info = self._cohort.step(torch.tensor([int(action)]))
        step_info = {"choice": int(action), "rewarded_side": int(info["rewarded_side"][0]),
                     "feedbackType": int(info["feedbackType"][0]), "timeout_s": float(info["timeout_s"][0]),
                     "phase_advanced": bool(info["phase_advanced"][0])}
        if bool(terminated[0]):
            self._finished = True
            self.last_status = info["status"][0]
            step_info["status"] = self.last_status
            before["trial"] = self.trials_per_session
            return np.zeros(2, dtype=np.float32), float(reward[0]), True, False, {**before, **step_info}
        obs, out = self._view(obs, info)
        return obs, float(reward[0]), False, False, {**out, **step_info}
