"""Task configuration shared by the single-mouse and the batched cohort environment."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_CONTRASTS = (-0.5, -0.25, 0.0, 0.25, 0.5)
DEFAULT_PROBABILITIES = (0.30, 0.15, 0.10, 0.15, 0.30)


@dataclass(frozen=True)
class TaskConfig:
    """The visual contrast-discrimination task (mouse_rl/MODEL.md section 1).

    Parameters
    ----------
    contrasts : tuple of float
        Signed contrasts ``c = contrastRight - contrastLeft`` (fractions in
        [-1, 1], not %). Negative = stimulus on the left.
    probabilities : tuple of float
        Sampling probability of each contrast; must sum to 1.
    trials_per_session : int
        Trials in one session (= one gymnasium episode).
    repeat_after_error : bool
        Correction trials: after an error the same contrast is shown again.
    zero_reward_p_right : float
        At c = 0 the rewarded side is drawn at random: Right with this probability.
    """

    contrasts: tuple = DEFAULT_CONTRASTS
    probabilities: tuple = DEFAULT_PROBABILITIES
    trials_per_session: int = 220
    repeat_after_error: bool = False
    zero_reward_p_right: float = 0.5

    def __post_init__(self):
        contrasts = tuple(float(c) for c in np.atleast_1d(np.asarray(self.contrasts, dtype=float)))
        probabilities = tuple(float(p) for p in np.atleast_1d(np.asarray(self.probabilities, dtype=float)))
        object.__setattr__(self, "contrasts", contrasts)
        object.__setattr__(self, "probabilities", probabilities)
        if len(contrasts) == 0:
            raise ValueError("contrasts: the contrast set is empty; give at least one signed contrast")
        bad = [c for c in contrasts if not math.isfinite(c) or abs(c) > 1]
        if bad:
            hint = " (looks like percent: divide by 100)" if all(math.isfinite(c) for c in bad) else ""
            raise ValueError(f"contrasts: values must be fractions in [-1, 1], got {bad}{hint}")
        if len(set(contrasts)) != len(contrasts):
            raise ValueError(f"contrasts: duplicate values in {contrasts}")
        if len(probabilities) != len(contrasts):
            raise ValueError(
                f"probabilities: {len(probabilities)} values for {len(contrasts)} contrasts; give one per contrast"
            )
        if any(not math.isfinite(p) or p < 0 for p in probabilities):
            raise ValueError(f"probabilities: must be finite and >= 0, got {probabilities}")
        if abs(sum(probabilities) - 1.0) > 1e-6:
            raise ValueError(f"probabilities: must sum to 1, got sum {sum(probabilities):.6g} for {probabilities}")
        if isinstance(self.trials_per_session, bool) or int(self.trials_per_session) != self.trials_per_session:
            raise ValueError(f"trials_per_session: must be an integer, got {self.trials_per_session!r}")
        if self.trials_per_session < 1:
            raise ValueError(f"trials_per_session: must be >= 1, got {self.trials_per_session}")
        object.__setattr__(self, "trials_per_session", int(self.trials_per_session))
        if not 0.0 <= self.zero_reward_p_right <= 1.0:
            raise ValueError(f"zero_reward_p_right: must be in [0, 1], got {self.zero_reward_p_right}")

    @property
    def cumulative(self) -> np.ndarray:
        """Cumulative probabilities, last entry forced to exactly 1."""
        cum = np.cumsum(self.probabilities)
        cum[-1] = 1.0
        return cum
