"""Load behavioural data into the trial table of :mod:`mouse_rl.schema`.

Loaders: :func:`load_psytrax_npy` / :func:`load_liebana2025` (Liebana et al.
2025 ``.npy`` files), :func:`load_ibl_trials` (IBL ALF trials),
:func:`load_signed_contrast_csv` (plain tables), :func:`load_alf_session` /
:func:`load_alf_subject` / :func:`load_one_cache` (IBL ALF folders and ONE
caches), :func:`load_liebana_release` (the paper's public release CSV) and
:func:`load_trials`, which picks one. All end in :func:`validate_trials`, which raises
:class:`DataFormatError` for data that do not fit the schema.
"""
from mouse_rl.data._tidy import TRIAL_COLUMNS, derive_reward
from mouse_rl.data.alf import load_alf_session, load_alf_subject, load_one_cache, read_alf_trials
from mouse_rl.data.ibl import load_ibl_trials
from mouse_rl.data.liebana_release import load_liebana_release
from mouse_rl.data.loaders import load_trials, read_trials, write_trials
from mouse_rl.data.psytrax import load_liebana2025, load_psytrax_npy
from mouse_rl.data.signed_csv import load_signed_contrast_csv
from mouse_rl.data.validation import DataFormatError, validate_session_lengths, validate_trials

__all__ = [
    "DataFormatError",
    "TRIAL_COLUMNS",
    "derive_reward",
    "load_alf_session",
    "load_alf_subject",
    "load_ibl_trials",
    "load_liebana_release",
    "load_one_cache",
    "read_alf_trials",
    "load_liebana2025",
    "load_psytrax_npy",
    "load_signed_contrast_csv",
    "load_trials",
    "read_trials",
    "validate_session_lengths",
    "validate_trials",
    "write_trials",
]
