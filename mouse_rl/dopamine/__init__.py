"""Dopamine-like teaching signals of the network (mouse_rl/MODEL.md section 5).

* :mod:`.readouts` - stimulus-onset and outcome responses of any trial table,
  split by contrast, reward, stage and association state; plots.
* :mod:`.recordings` - per-trial dopamine table format (``da_<REGION>``
  columns), validation, alignment, per-session normalisation, peak
  extraction, hemisphere (contralateral) view.
* :mod:`.regression` - which delta explains each region: per-session
  gain/offset regression, leave-one-session-out R^2, shuffled-session null.
* :mod:`.joint_fit` - network parameters fitted to choices + dopamine.
* :mod:`.optogenetics` - +kappa on one teaching signal vs. added reward.
* :mod:`.synthetic` - synthetic recordings with known ground truth.
"""
from ._common import DELTAS, outcome_deltas
from .joint_fit import JointFitResult, joint_fit
from .optogenetics import OptoComparison, OptoProtocol, compare_opto, opto_step, simulate_opto
from .readouts import (
    DEFAULT_GAIN_THRESHOLD, OUTCOME_SIGNALS, STIMULUS_SIGNALS, plot_delta_over_sessions, plot_delta_vs_contrast,
    readout_table, session_bins, summarise_readouts, tidy_readouts,
)
from .recordings import (
    PAPER_WINDOW, align_recordings, contralateral_view, load_recordings, normalise_per_session, peak_response,
    region_columns, validate_recordings,
)
from .regression import RegressionReport, cv_r2, delta_regression, regress_recordings
from .synthetic import DEFAULT_MAPPING, DEFAULT_SNR, SyntheticRecordings, synthetic_recordings

__all__ = [
    "DELTAS", "DEFAULT_GAIN_THRESHOLD", "DEFAULT_MAPPING", "DEFAULT_SNR", "OUTCOME_SIGNALS", "PAPER_WINDOW",
    "STIMULUS_SIGNALS", "JointFitResult", "OptoComparison", "OptoProtocol", "RegressionReport",
    "SyntheticRecordings", "align_recordings", "compare_opto", "contralateral_view", "cv_r2", "delta_regression",
    "joint_fit", "load_recordings", "normalise_per_session", "opto_step", "outcome_deltas", "peak_response",
    "plot_delta_over_sessions", "plot_delta_vs_contrast", "readout_table", "region_columns", "regress_recordings",
    "session_bins", "simulate_opto", "summarise_readouts", "synthetic_recordings",
    "tidy_readouts", "validate_recordings",
]
