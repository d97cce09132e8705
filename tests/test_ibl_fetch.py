"""``mouse-rl fetch-ibl`` and ``mouse-rl fit`` on IBL sources, offline (synthetic ONE cache, no network)."""
import json
import warnings

import pandas as pd
import pytest

from mouse_rl.cli import main
from mouse_rl.data import TRIAL_COLUMNS
from mouse_rl.data.alf import load_one_cache
from mouse_rl.data.one_fetch import fetch_subject
from test_ibl_loaders import SESSIONS, write_session


class FakeONE:
    """The three ONE calls fetch_subject uses, answered from a local cache (what ONE(mode='local') does)."""

    def __init__(self, root, no_trials=()):
        self.paths = {}
        for subject, date, number, *_ in SESSIONS:
            self.paths[f"eid-{subject}-{date}-{number}"] = root / "labx" / "Subjects" / subject / date / f"{number:03d}"
        self.no_trials = set(no_trials)
        self.loaded = []

    def search(self, subject=None):
        return [eid for eid, p in self.paths.items() if p.parent.parent.name == subject]

    def load_object(self, eid, obj, collection=None, download_only=False):
        assert obj == "trials" and collection == "alf" and download_only
        if eid in self.no_trials:
            raise FileNotFoundError(eid)
        self.loaded.append(eid)
        return sorted((self.paths[eid] / "alf").glob("_ibl_trials.*"))

    def eid2path(self, eid):
        return self.paths[eid]


@pytest.fixture
def cache(tmp_path):
    for s in SESSIONS:
        write_session(tmp_path, *s, form="table")
    return tmp_path


def test_fetch_subject_from_a_synthetic_local_cache(cache):
    one = FakeONE(cache, no_trials={"eid-SW001-2023-03-03-1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trials, path = fetch_subject("SW001", cache, one=one)
    assert "1 of 4 sessions have no trials object" in " ".join(str(w.message) for w in caught)
    assert path == cache / "SW001_trials.parquet" and path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = load_one_cache(cache, subject="SW001")
    expected = expected[expected["date"] != "2023-03-03"].reset_index(drop=True)
    pd.testing.assert_frame_equal(trials[TRIAL_COLUMNS], expected[TRIAL_COLUMNS])
    assert trials["session"].max() == 3 and trials["probabilityLeft"].notna().all()
    assert pd.read_parquet(path)["session"].max() == 3
    with pytest.raises(FileNotFoundError, match="no sessions"):
        fetch_subject("NOPE", cache, one=one)
    with pytest.raises(ValueError, match="subject"):
        fetch_subject("../SW001", cache, one=one)


def test_fetch_ibl_command_without_one_api_is_a_clear_error(tmp_path, capsys):
    try:
        import one  # noqa: F401
        pytest.skip("one-api is installed")
    except ImportError:
        pass
    assert main(["fetch-ibl", "SW001", "--out", str(tmp_path / "out")]) == 2
    assert "one-api" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fit_reads_an_alf_cache_with_model_options(cache, tmp_path, capsys):
    out = tmp_path / "fit"
    argv = ["fit", str(cache / "labx" / "Subjects" / "SW002"), "--out", str(out), "--restarts", "1", "--max-iter", "2",
            "--no-plots", "--quiet", "--encoding", "graded", "--zero-reward", "random"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    opts = json.loads((out / "fit_options.json").read_text())
    assert opts["encoding"] == "graded" and opts["zero_reward"] == "random"
    assert pd.read_parquet(out / "fit_results.parquet")["mouse"].tolist() == ["SW002"]
    assert main(argv[:2] + ["--out", str(tmp_path / "f2"), "--eta", "0.01"]) == 2
    assert "--eta: eta is fitted" in capsys.readouterr().err


def test_fetch_subject_with_one_api_in_local_mode(cache):
    """Runs where the optional one-api is installed: a real ONE(mode='local') on the synthetic cache, offline."""
    pytest.importorskip("one")
    from one.alf.cache import make_parquet_db

    make_parquet_db(cache, hash_files=True)  # the cache tables ONE reads (sessions.pqt, datasets.pqt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials, path = fetch_subject("SW001", cache, mode="local")
        expected = load_one_cache(cache, subject="SW001")
    pd.testing.assert_frame_equal(trials[TRIAL_COLUMNS], expected[TRIAL_COLUMNS])
    assert path.exists() and trials["session"].max() == 4


def test_fit_learns_from_stored_zero_contrast_feedback(cache):
    """IBL tables store feedback at c = 0: zero_reward='random' learns from it; the rule is network.learning_reward."""
    import numpy as np

    from mouse_rl.data import load_trials
    from mouse_rl.fit.batch import learning_reward, make_batch
    from mouse_rl.network import learning_reward as rule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_trials(cache)
    zero = trials["signed_contrast"].to_numpy() == 0
    assert zero.any() and trials.loc[zero, "reward"].isin([0.0, 1.0]).all()  # known, not NaN
    stored = trials["reward"].to_numpy(float)
    np.testing.assert_array_equal(learning_reward(trials, "random"), stored)
    np.testing.assert_array_equal(learning_reward(trials, "random"), rule(trials["signed_contrast"].to_numpy(), stored,
                                                                         "random"))
    assert (learning_reward(trials, "expected")[zero] == 0.5).all()
    batch = make_batch(trials, zero_reward="random")
    got = batch.to_rows(batch.reward)
    prepared = trials.sort_values(["mouse", "session", "trial"]).reset_index(drop=True)
    np.testing.assert_array_equal(got, prepared["reward"].to_numpy(float))
    unknown = trials.assign(reward=np.where(zero, np.nan, stored))  # e.g. Liebana .npy: c = 0 reward not stored
    assert (learning_reward(unknown, "random")[zero] == 0.5).all()
