"""The IBL training protocol for a whole cohort at once: a native vector env with a leading mouse axis.

Same rules and numbers as :mod:`envs.ibl_task` (whose module docstring gives
the source of every number: iblrig v8 ``TrainingChoiceWorldSession`` /
``BiasedChoiceWorldSession`` and ibllib's training criteria); this module only
changes *how* they are run: every mouse's protocol state (training phase,
stage, last-50 windows, debiasing history, probabilityLeft block) is a tensor
with one entry per mouse, and every random draw comes from the mouse's own
counter-based stream (:mod:`envs.rng`, keyed by its seed and the global
trial), so mouse *i* sees the same trials for the same actions in any cohort.
:class:`envs.ibl_task.IBLTrainingEnv` (``mouse_rl/IBLTraining-v0``) is
exactly its one-mouse view.

Random draws at global trial ``g`` (one stream each, see ``STREAMS``): the
contrast of a drawn trial (uniform over the phase's contrast set, or over the
biased stage's magnitudes); the stimulus side (zero contrast in training: Right
with probability 0.5; biased stage: Left with the block's probabilityLeft);
the debiasing side (N(f_L, 0.5) >= 0.5, Box-Muller on the mouse's stream); and,
when a biased block starts, its length and (second block only) its
probabilityLeft. Block lengths use the inverse CDF of the exponential
truncated to [20, 100] trials (scale 60), then ``int``: exactly the
distribution of iblrig's redraw-until-inside ``texp``
(:func:`envs.ibl_task.block_length_pmf`), with one draw per block.

Stage advancement (training -> biased) is evaluated at each session end on
the mouse's last 3 sessions (while in training all its sessions are training
sessions) with :func:`mouse_rl.analysis.training_status`, in one call for all
mice in training.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import rng
from .ibl_task import (
    BIASED_CONTRASTS, BLOCK_MAX, BLOCK_MIN, BLOCK_P_LEFT, BLOCK_SCALE, FIRST_BLOCK_P_LEFT, FIRST_BLOCK_TRIALS,
    LAST_N, N_PHASES, PHASE_TRIALS, STAGES, TIMEOUTS_S, training_contrast_set,
)

__all__ = ["IBLCohortEnv", "STREAMS", "truncated_exponential_length"]

#: Counter-based streams of the IBL env (distinct from envs.rng's 1-4).
STREAMS = {"contrast": 101, "side": 102, "debias": 103, "block_length": 104, "block_side": 105}
#: Signed contrasts whose last-50 windows drive phases 0 and 1 (iblrig ``check_training_phase``).
_WINDOW_CONTRASTS = (-1.0, -0.5, 0.5, 1.0, -0.25, 0.25)
_PASS_COUNT = int(math.floor(0.8 * LAST_N)) + 1  # (correct among last 50) / 50 > 0.8  <=>  count >= 41


def truncated_exponential_length(u: torch.Tensor, scale: float = BLOCK_SCALE, low: float = BLOCK_MIN,
                                 high: float = BLOCK_MAX) -> torch.Tensor:
    """Block lengths (trials, int64) from uniforms ``u`` in (0, 1): int(x), x ~ Exponential(scale) given low <= x <= high.

    Inverse CDF of the truncated exponential; the same distribution as
    :func:`envs.ibl_task.draw_block_length` (iblrig's rejection sampler).
    """
    a, b = math.exp(-low / scale), math.exp(-high / scale)
    x = -scale * torch.log(a - u.double() * (a - b))
    return x.clamp(low, high).floor().long()


class IBLCohortEnv(VectorEnv):
    """``num_envs`` mice on the IBL training protocol in lockstep, as torch tensors.

    ## Action Space

    ``MultiDiscrete([2] * num_envs)`` (**0 = Left, 1 = Right**), or
    ``MultiDiscrete([3] * num_envs)`` with ``no_go=True`` (2 = no response).

    ## Observation Space

    ``Box(0, 1, (num_envs, 2), float32)``: ``(contrastLeft, contrastRight)``
    per mouse (contrast fractions), a ``(num_envs, 2)`` tensor.

    ## Rewards

    ``(num_envs,)`` tensor: 1 if the choice is on the rewarded side (zero
    contrast: the side drawn for that trial), else 0.

    ## Starting State

    ``reset(seed=s)`` sets the per-mouse seeds to ``envs.rng.mouse_seeds(s, num_envs)``
    and restarts the curriculum (every mouse in ``start_phase``, or biased with
    ``start_biased``); ``reset()`` without a seed restarts it with the current seeds.

    ## Episode End

    All sessions end together after ``trials_per_session`` trials (never
    truncated); the env auto-resets in the same step (``AutoresetMode.SAME_STEP``):
    the observation returned with ``terminated`` is the first trial of the next
    session, drawn after the stage update. :meth:`new_session` ends a session early.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``num_envs`` | 1 | number of mice |
    | ``seeds`` | ``mouse_seeds(0, num_envs)`` | per-mouse seeds, integers in [0, 2**32) |
    | ``trials_per_session`` | 600 | trials per session (our default, see :mod:`envs.ibl_task`) |
    | ``start_phase`` | 0 | training phase (0..5) of session 1 |
    | ``debias`` | True | repeat-after-easy-error debiasing in phases 0-4 |
    | ``debias_window`` | 10 | responded trials whose Left fraction steers the repeat side |
    | ``biased_after`` | ``"trained_1b"`` | status that moves a mouse to biased blocks (None: never) |
    | ``start_biased`` | False | start in the biased stage |
    | ``no_go`` | False | allow action 2 (no response) |
    | ``record`` | True | keep every trial for :meth:`trial_table` |
    | ``device``, ``dtype`` | ``"cpu"``, float32 | where the tensors live |

    ## Info

    For the trial about to be shown, tensors ``signed_contrast``, ``correct_side``
    (rewarded side, 0 = L, 1 = R, zero contrast included), ``training_phase``,
    ``biased`` (bool: the mouse is in the biased stage), ``probabilityLeft``,
    ``block`` (-1 in training), ``debias_trial``; ints ``trial`` (from 0),
    ``session`` (from 1), ``global_trial``. After a step also ``choice``,
    ``stimulus`` (the contrast answered), ``rewarded_side``, ``feedbackType``
    (+1/-1), ``timeout_s`` (s) and ``phase_advanced``; with ``terminated`` also
    ``status`` (list of str per mouse: IBL status over its last 3 training
    sessions, ``"biased"`` for mice already in the biased stage).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, seeds=None, trials_per_session: int = 600, start_phase: int = 0,
                 debias: bool = True, debias_window: int = 10, biased_after: str | None = "trained_1b",
                 start_biased: bool = False, no_go: bool = False, record: bool = True, device="cpu",
                 dtype=torch.float32):
        if isinstance(num_envs, bool) or int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs: must be a positive integer, got {num_envs!r}")
        if isinstance(trials_per_session, bool) or int(trials_per_session) != trials_per_session \
                or trials_per_session < 1:
            raise ValueError(f"trials_per_session: must be an integer >= 1, got {trials_per_session!r}")
        if isinstance(debias_window, bool) or int(debias_window) != debias_window or debias_window < 1:
            raise ValueError(f"debias_window: must be an integer >= 1, got {debias_window!r}")
        training_contrast_set(start_phase)  # validates
        if biased_after not in ("trained_1a", "trained_1b", None):
            raise ValueError(f"biased_after: must be 'trained_1a', 'trained_1b' or None, got {biased_after!r}")
        self.num_envs = int(num_envs)
        self.trials_per_session = int(trials_per_session)
        self.start_phase, self.start_biased, self.biased_after = int(start_phase), bool(start_biased), biased_after
        self.debias, self.debias_window, self.no_go, self.record = bool(debias), int(debias_window), bool(no_go), record
        self.device, self.dtype = torch.device(device), dtype
        self.seeds = rng.as_seed_tensor(rng.mouse_seeds(0, self.num_envs) if seeds is None else seeds, self.device)
        if self.seeds.numel() != self.num_envs:
            raise ValueError(f"seeds: {self.seeds.numel()} seeds for num_envs={self.num_envs}")
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(3 if self.no_go else 2)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # contrast sets per phase, padded: (N_PHASES, 11) and their sizes
        sets = [training_contrast_set(p) for p in range(N_PHASES)]
        width = max(len(s) for s in sets)
        self._sets = torch.tensor([list(s) + [0.0] * (width - len(s)) for s in sets], dtype=torch.float64,
                                  device=self.device)
        self._set_sizes = torch.tensor([len(s) for s in sets], device=self.device)
        self._biased_magnitudes = torch.tensor(BIASED_CONTRASTS, dtype=torch.float64, device=self.device)
        self._window_contrasts = torch.tensor(_WINDOW_CONTRASTS, dtype=torch.float64, device=self.device)
        self._timeouts = torch.tensor([TIMEOUTS_S["error"], TIMEOUTS_S["correct"], TIMEOUTS_S["no_go"]],
                                      dtype=torch.float64, device=self.device)
        self._init_state()

    # -- state -------------------------------------------------------------
    def _init_state(self) -> None:
        N, dev = self.num_envs, self.device
        self._keys = {k: rng.stream_key(self.seeds, s) for k, s in STREAMS.items()}
        self.phase = torch.full((N,), self.start_phase, dtype=torch.long, device=dev)
        self.biased = torch.full((N,), self.start_biased, dtype=torch.bool, device=dev)
        self.global_trial = 0
        self.session = 1
        self.trial = 0
        self.status_history: list[list[str]] = []
        self._recent_sessions: deque = deque(maxlen=3)
        self._history: list[pd.DataFrame] = []
        self.last_session_table: pd.DataFrame | None = None
        self._start_session()

    def _start_session(self) -> None:
        N, dev = self.num_envs, self.device
        self.trial = 0
        self._phase_count = torch.zeros(N, dtype=torch.long, device=dev)  # trials in the current phase, this session
        self._window = torch.zeros(N, len(_WINDOW_CONTRASTS), LAST_N, dtype=torch.bool, device=dev)
        self._window_pos = torch.zeros(N, len(_WINDOW_CONTRASTS), dtype=torch.long, device=dev)
        self._responses = torch.zeros(N, self.debias_window, dtype=torch.long, device=dev)
        self._n_responses = torch.zeros(N, dtype=torch.long, device=dev)
        self._last_abs = torch.zeros(N, dtype=torch.float64, device=dev)
        self._last_correct = torch.ones(N, dtype=torch.bool, device=dev)  # no previous trial: no debiasing
        self._block = torch.full((N,), -1, dtype=torch.long, device=dev)
        self._block_trial = torch.zeros(N, dtype=torch.long, device=dev)
        self._block_length = torch.zeros(N, dtype=torch.long, device=dev)
        self.p_left = torch.full((N,), 0.5, dtype=torch.float64, device=dev)
        self._rows: list[dict] = []
        self._draw_trial()

    def _uniform(self, stream: str) -> torch.Tensor:
        return rng.uniform(self.seeds, STREAMS[stream], self.global_trial, torch.float64, self._keys[stream])

    def _draw_trial(self) -> None:
        """Draw the trial shown at ``global_trial`` for every mouse (see the module docstring)."""
        u_c, u_side = self._uniform("contrast"), self._uniform("side")
        # training: uniform over the phase's set; zero contrast -> side drawn with p = 0.5
        size = self._set_sizes[self.phase]
        idx = torch.minimum((u_c * size).long(), size - 1)
        c_train = self._sets[self.phase, idx]
        side_train = torch.where(c_train > 0, 1, torch.where(c_train < 0, 0, (u_side >= 0.5).long()))
        # debiasing: after a not-correct trial at |c| >= 0.5, same magnitude, Right if N(f_L, 0.5) >= 0.5
        n_resp = self._n_responses.clamp(max=self.debias_window)
        filled = torch.arange(self.debias_window, device=self.device)[None, :] < n_resp[:, None]
        n_left = ((self._responses == 0) & filled).sum(1)
        f_left = torch.where(n_resp > 0, n_left.double() / n_resp.clamp(min=1).double(),
                             torch.full((self.num_envs,), 0.5, dtype=torch.float64, device=self.device))
        z = rng.normal(self.seeds, STREAMS["debias"], self.global_trial, torch.float64)
        side_debias = (f_left + 0.5 * z >= 0.5).long()
        debias = (self.debias & ~self.biased & (self.phase < N_PHASES - 1) & ~self._last_correct
                  & (self._last_abs >= 0.5))
        # biased stage: advance the block, draw magnitude and side (Left with probabilityLeft)
        self._advance_blocks()
        mag_biased = self._biased_magnitudes[(u_c * len(BIASED_CONTRASTS)).long().clamp(max=len(BIASED_CONTRASTS) - 1)]
        side_biased = (u_side >= self.p_left).long()
        side = torch.where(self.biased, side_biased, torch.where(debias, side_debias, side_train))
        magnitude = torch.where(self.biased, mag_biased, torch.where(debias, self._last_abs, c_train.abs()))
        self.side = side
        self.signed_contrast = torch.where(side == 1, magnitude, -magnitude) + 0.0
        self.debias_trial = debias
        self.p_left = torch.where(self.biased, self.p_left, torch.full_like(self.p_left, 0.5))

    def _advance_blocks(self) -> None:
        """iblrig ``new_block``: block 0 = 90 trials at 0.5; then 0.2 / 0.8 at random, then alternating."""
        b = self.biased
        if not bool(b.any()):
            return
        self._block_trial = torch.where(b, self._block_trial + 1, self._block_trial)
        new = b & ((self._block < 0) | (self._block_trial >= self._block_length))
        if not bool(new.any()):
            return
        first = new & (self._block < 0)
        self._block = torch.where(new, self._block + 1, self._block)
        self._block_trial = torch.where(new, 0, self._block_trial)
        drawn = truncated_exponential_length(self._uniform("block_length"))
        self._block_length = torch.where(first, FIRST_BLOCK_TRIALS, torch.where(new, drawn, self._block_length))
        second = new & (self._block == 1)
        p_set = torch.tensor(BLOCK_P_LEFT, dtype=torch.float64, device=self.device)
        p_second = p_set[(self._uniform("block_side") >= 0.5).long()]
        alternate = torch.round((1 - self.p_left) * 10) / 10
        p = torch.where(first, torch.full_like(alternate, FIRST_BLOCK_P_LEFT), torch.where(second, p_second, alternate))
        self.p_left = torch.where(new, p, self.p_left)

    # -- observation / info --------------------------------------------------
    def _obs(self) -> torch.Tensor:
        c = self.signed_contrast.to(self.dtype)
        return torch.stack([(-c).clamp(min=0), c.clamp(min=0)], dim=-1) + 0.0

    def _info(self) -> dict:
        return {"signed_contrast": self.signed_contrast.to(self.dtype), "correct_side": self.side.clone(),
                "training_phase": self.phase.clone(), "biased": self.biased.clone(),
                "probabilityLeft": self.p_left.clone(), "block": torch.where(self.biased, self._block, -1),
                "debias_trial": self.debias_trial.clone(), "trial": self.trial, "session": self.session,
                "global_trial": self.global_trial}

    # -- protocol bookkeeping ---------------------------------------------------
    def _record_outcome(self, correct: torch.Tensor, responded: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """iblrig ``check_training_phase`` for every mouse in training; return who advanced."""
        training = ~self.biased
        self._phase_count = self._phase_count + training.long()
        hit = (self.signed_contrast[:, None] == self._window_contrasts[None, :]) & training[:, None]  # (N, 6)
        rows, cols = torch.nonzero(hit, as_tuple=True)
        if rows.numel():
            pos = self._window_pos[rows, cols]
            self._window[rows, cols, pos] = correct[rows]
            self._window_pos[rows, cols] = (pos + 1) % LAST_N
        counts = self._window.sum(-1)  # (N, 6) correct among the last 50 presentations
        passes = counts >= _PASS_COUNT
        crit = torch.where(self.phase == 0, passes[:, :4].all(1),
                           torch.where(self.phase == 1, passes[:, 4:].all(1),
                                       (self._phase_count >= PHASE_TRIALS) & (self.phase < N_PHASES - 1)))
        advanced = training & crit
        self.phase = self.phase + advanced.long()
        self._phase_count = torch.where(advanced, 0, self._phase_count)
        # debiasing history: responded choices (ring buffer) and the last trial's outcome
        if bool(responded.any()):
            slot = self._n_responses % self.debias_window
            r = torch.nonzero(responded, as_tuple=True)[0]
            self._responses[r, slot[r]] = choice[r]
            self._n_responses = self._n_responses + responded.long()
        self._last_abs = self.signed_contrast.abs()
        self._last_correct = correct
        return advanced

    def session_table(self) -> pd.DataFrame:
        """Trials of the current session so far, every mouse: ``mouse`` (index 0..N-1), ``trial``,
        ``signed_contrast``, ``choice`` (0/1, -1 = no-go), ``reward``, ``probabilityLeft``, ``training_phase``,
        ``stage``, ``debias_trial``."""
        columns = ["mouse", "trial", "signed_contrast", "choice", "reward", "probabilityLeft", "training_phase",
                   "stage", "debias_trial"]
        if not self._rows:
            return pd.DataFrame(columns=columns)
        cat = {k: torch.stack([r[k] for r in self._rows], 1).cpu().numpy() for k in self._rows[0] if k != "trial"}
        T = len(self._rows)
        return pd.DataFrame({
            "mouse": np.repeat(np.arange(self.num_envs), T), "trial": np.tile(np.arange(T), self.num_envs),
            "signed_contrast": cat["signed_contrast"].reshape(-1), "choice": cat["choice"].reshape(-1),
            "reward": cat["reward"].reshape(-1), "probabilityLeft": cat["probabilityLeft"].reshape(-1),
            "training_phase": cat["training_phase"].reshape(-1),
            "stage": np.asarray(STAGES, dtype=object)[cat["biased"].reshape(-1).astype(int)],
            "debias_trial": cat["debias_trial"].reshape(-1),
        }, columns=columns)

    def _close_session(self) -> list[str] | None:
        """File the session with the protocol: training status over the last 3 sessions, stage update."""
        from mouse_rl.analysis.training_criteria import IN_TRAINING, TRAINED_1A, TRAINED_1B, training_status

        if not self._rows:
            return None
        table = self.session_table()
        table["session"] = self.session
        self.last_session_table = table
        if self.record:
            self._history.append(table)
        responded = table[table["choice"] >= 0]
        self._recent_sessions.append(responded[["mouse", "session", "signed_contrast", "choice", "reward"]])
        was_biased = self.biased.cpu().numpy()
        status = np.where(was_biased, "biased", IN_TRAINING).astype(object)
        if len(self._recent_sessions) == TRAINED_1B.n_sessions and not was_biased.all():
            window = pd.concat(list(self._recent_sessions), ignore_index=True)
            window = window[~was_biased[window["mouse"].to_numpy()]]
            full = window.groupby("mouse")["session"].nunique()
            window = window[window["mouse"].map(full).eq(TRAINED_1B.n_sessions)]
            if len(window):
                st = training_status(window)
                last = st[st["session"] == self.session].set_index("mouse")["status"]
                status[last.index.to_numpy(dtype=int)] = last.to_numpy()
        reached = {None: np.zeros(len(status), bool),
                   "trained_1a": np.isin(status, [TRAINED_1A.status, TRAINED_1B.status]),
                   "trained_1b": status == TRAINED_1B.status}[self.biased_after] & ~was_biased
        self.biased = self.biased | torch.as_tensor(reached, device=self.device)
        self.status_history.append(status.tolist())
        return status.tolist()

    def new_session(self) -> tuple[torch.Tensor, dict]:
        """End the current session now (filed as it stands) and start the next one; return (obs, info).

        The unanswered trial is skipped (the next session draws from the next global trial).
        """
        self._close_session()
        self.global_trial += 1
        self.session += 1
        self._start_session()
        return self._obs(), self._info()

    def trial_table(self) -> pd.DataFrame:
        """Every finished session (``record=True``) as one trial table with IBL-style columns.

        ``mouse`` (``"m000"``...), ``session`` (from 1), ``trial``, ``signed_contrast``, ``contrastLeft``,
        ``contrastRight`` (fractions), ``choice`` (1 = Right, 0 = Left, -1 = no-go), ``reward``,
        ``feedbackType`` (+1/-1), ``probabilityLeft``, ``training_phase``, ``stage``, ``debias_trial``.
        """
        if not self._history:
            raise ValueError("trial_table: no finished session recorded (record=False, or no session ended yet)")
        df = pd.concat(self._history, ignore_index=True)
        df["mouse"] = [f"m{i:03d}" for i in df["mouse"]]
        df["contrastLeft"] = (-df["signed_contrast"]).clip(lower=0) + 0.0
        df["contrastRight"] = df["signed_contrast"].clip(lower=0) + 0.0
        df["feedbackType"] = np.where(df["reward"] == 1, 1, -1)
        cols = ["mouse", "session", "trial", "signed_contrast", "contrastLeft", "contrastRight", "choice", "reward",
                "feedbackType", "probabilityLeft", "training_phase", "stage", "debias_trial"]
        return df[cols].sort_values(["mouse", "session", "trial"], kind="stable").reset_index(drop=True)

    # -- gymnasium API -------------------------------------------------------------
    def reset(self, *, seed=None, options=None):
        """Restart the protocol (session 1); ``seed`` (int) re-derives the per-mouse seeds."""
        if seed is not None:
            self.seeds = rng.as_seed_tensor(rng.mouse_seeds(seed, self.num_envs), self.device)
        self._init_state()
        return self._obs(), self._info()

    def step(self, actions):
        actions = torch.as_tensor(actions, device=self.device).reshape(-1).long()
        if actions.numel() != self.num_envs:
            raise ValueError(f"actions: expected {self.num_envs} actions, got {actions.numel()}")
        n_actions = 3 if self.no_go else 2
        bad = (actions < 0) | (actions >= n_actions)
        if bool(bad.any()):
            allowed = "0 (Left), 1 (Right) or 2 (no-go)" if self.no_go else "0 (Left) or 1 (Right)"
            raise ValueError(f"actions: every action must be {allowed}, got {int(actions[bad][0])} "
                             f"for mouse {int(torch.nonzero(bad)[0])}")
        correct = actions == self.side
        responded = actions < 2
        reward = correct.to(self.dtype)
        self._rows.append({"signed_contrast": self.signed_contrast.clone(),
                               "choice": torch.where(responded, actions, -1), "reward": correct.double(),
                               "probabilityLeft": self.p_left.clone(), "training_phase": self.phase.clone(),
                           "biased": self.biased.clone(), "debias_trial": self.debias_trial.clone()})
        outcome = torch.where(responded, correct.long(), 2)
        step_info = {"choice": actions, "stimulus": self.signed_contrast.to(self.dtype), "rewarded_side": self.side,
                     "feedbackType": torch.where(correct, 1, -1), "timeout_s": self._timeouts[outcome]}
        step_info["phase_advanced"] = self._record_outcome(correct, responded, actions)
        self.global_trial += 1
        self.trial += 1
        done = self.trial >= self.trials_per_session
        if done:
            step_info["status"] = self._close_session()
            self.session += 1
            self._start_session()
        else:
            self._draw_trial()
        terminated = torch.full((self.num_envs,), done, dtype=torch.bool, device=self.device)
        truncated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self._obs(), reward, terminated, truncated, {**self._info(), **step_info}
