"""The one trial-table schema shared by simulation, loaders, fitting and analysis.

A trial table is a tidy :class:`pandas.DataFrame`, one row per trial.

Choice sign convention (the only one used inside mouse_rl)
-----------------------------------------------------------
``choice`` is the action index of the network and the environment:

* ``choice == 0`` -> **Left** wheel turn (action L, row 0 of the striatal matrix U)
* ``choice == 1`` -> **Right** wheel turn (action R, row 1 of U)

This differs from IBL ALF files, where ``choice == -1`` means a *rightward*
report and ``+1`` a leftward one; :func:`mouse_rl.data.load_ibl_trials`
converts. ``p_right`` is the model probability of ``choice == 1``.

Contrasts
---------
``contrastLeft`` / ``contrastRight`` are fractions in [0, 1] (never %), 0.0 on
the side without a stimulus (IBL files use NaN there; loaders convert).
``signed_contrast = contrastRight - contrastLeft``: negative = stimulus on the
left, so the rewarded choice is 0 (Left); positive -> 1 (Right); 0 -> random.

Reward
------
``reward`` in {0, 1} (NaN where unknown: zero-contrast trials of real mice whose
rewarded side was not stored); ``feedbackType = 2 * reward - 1`` (IBL: +1
correct, -1 error; NaN where reward is unknown).

Sessions are numbered from 1 (chronological); ``trial`` counts from 0 within a
session.
"""
from __future__ import annotations

#: Identify a trial.
KEY_COLUMNS = ["mouse", "session", "trial"]
#: Behaviour (required for analysis and fitting).
BEHAVIOUR_COLUMNS = [
    "contrastLeft",
    "contrastRight",
    "signed_contrast",
    "choice",
    "reward",
    "feedbackType",
]
#: Model read-outs added by simulation or a fitted model.
MODEL_COLUMNS = [
    "p_right",
    "q_tot_L",
    "q_tot_R",
    "q_stim_L",
    "q_stim_R",
    "q_const_L",
    "q_const_R",
    "delta_tot",
    "delta_stim",
    "delta_const",
]
#: Network weight columns (session snapshots, or per trial on request).
WEIGHT_COLUMNS = ["a_L", "a_R", "a_b", "U_LL", "U_LR", "U_Lb", "U_RL", "U_RR", "U_Rb"]

LEFT, RIGHT = 0, 1
ACTION_NAMES = ("L", "R")
