"""ALF session / subject / ONE-cache loaders and the Liebana et al. release CSV loader, on synthetic files."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mouse_rl.data import TRIAL_COLUMNS, DataFormatError, load_ibl_trials
from mouse_rl.data.alf import load_alf_session, load_alf_subject, load_one_cache, read_alf_trials
from mouse_rl.data.liebana_release import RELEASE_FILENAME, load_liebana_release


def ibl_session(seed, n=40, p_left=0.5):
    """One session's trials object in IBL conventions (NaN on the unused side, choice -1 = Right, 0 = no-go)."""
    rng = np.random.default_rng(seed)
    magnitude = rng.choice([1.0, 0.5, 0.25, 0.0], n)
    right = rng.random(n) >= p_left
    choice = rng.choice([-1, 1], n)
    choice[[3, 7]] = 0  # two no-go trials per session
    correct = np.where(right, choice == -1, choice == 1)
    stim_on = np.arange(n) * 5.0 + rng.random(n)
    return {
        "contrastLeft": np.where(right, np.nan, magnitude),
        "contrastRight": np.where(right, magnitude, np.nan),
        "choice": choice.astype(float),
        "feedbackType": np.where(correct & (choice != 0), 1.0, -1.0),
        "probabilityLeft": np.full(n, p_left),
        "stimOn_times": stim_on,
        "response_times": stim_on + rng.uniform(0.2, 3.0, n),
        "intervals": np.c_[stim_on - 1, stim_on + 4],
    }


# (subject, date, number, seed, probabilityLeft); written out of chronological order on purpose
SESSIONS = [("SW001", "2023-03-02", 1, 2, 0.5), ("SW001", "2023-03-01", 2, 1, 0.5),
            ("SW001", "2023-03-01", 1, 0, 0.5), ("SW001", "2023-03-03", 1, 3, 0.8),
            ("SW002", "2023-03-01", 1, 4, 0.5)]


def write_session(root, subject, date, number, seed, p_left, form):
    alf = root / "labx" / "Subjects" / subject / date / f"{number:03d}" / "alf"
    alf.mkdir(parents=True)
    data = ibl_session(seed, p_left=p_left)
    if form == "npy":
        for name, values in data.items():
            np.save(alf / f"_ibl_trials.{name}.npy", values)
    else:
        table = {k: v for k, v in data.items() if k != "intervals"}
        pd.DataFrame(table).to_parquet(alf / "_ibl_trials.table.pqt")
        np.save(alf / "_ibl_trials.intervals.npy", data["intervals"])
    return alf.parent


@pytest.fixture(params=["npy", "table"])
def cache(tmp_path, request):
    for s in SESSIONS:
        write_session(tmp_path, *s, form=request.param)
    return tmp_path


def flat_table():
    """The same sessions as one flat trials table, rows in chronological order, session numbered."""
    chronological = sorted(SESSIONS, key=lambda s: (s[0], s[1], s[2]))
    frames, counter = [], {}
    for subject, _, _, seed, p_left in chronological:
        counter[subject] = counter.get(subject, 0) + 1
        data = {k: v for k, v in ibl_session(seed, p_left=p_left).items() if k != "intervals"}
        frames.append(pd.DataFrame(data).assign(subject=subject, session=counter[subject]))
    return pd.concat(frames, ignore_index=True)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


def test_alf_folder_table_form_and_flat_table_load_the_same_trials(cache):
    with pytest.warns(UserWarning, match=r"dropped 10 of 200 rows \(no-go"):
        alf = load_one_cache(cache)
    flat = quiet(load_ibl_trials, flat_table())
    pd.testing.assert_frame_equal(alf[TRIAL_COLUMNS + ["probabilityLeft"]], flat)
    sw1 = alf[alf["mouse"] == "SW001"].drop_duplicates("session")
    assert sw1["date"].tolist() == ["2023-03-01", "2023-03-01", "2023-03-02", "2023-03-03"]
    assert sw1["session_number"].tolist() == [1, 2, 1, 1]
    assert alf.groupby(["mouse", "session"])["probabilityLeft"].first().tolist() == [0.5, 0.5, 0.5, 0.8, 0.5]
    assert (alf["contrastLeft"].notna() & alf["contrastRight"].notna()).all()  # NaN side -> 0.0


def test_npy_and_table_forms_read_alike(tmp_path):
    a = write_session(tmp_path / "a", "SW001", "2023-03-01", 1, 0, 0.5, form="npy")
    b = write_session(tmp_path / "b", "SW001", "2023-03-01", 1, 0, 0.5, form="table")
    raw_a, raw_b = read_alf_trials(a), read_alf_trials(b)
    assert {"intervals_0", "intervals_1", "probabilityLeft"} <= set(raw_a.columns)
    pd.testing.assert_frame_equal(raw_a[sorted(raw_a.columns)], raw_b[sorted(raw_b.columns)], check_dtype=False)
    session = quiet(load_alf_session, a)
    assert session["mouse"].unique().tolist() == ["SW001"] and session["session"].unique().tolist() == [1]
    assert len(session) == 38
    with pytest.raises(FileNotFoundError, match="table.pqt"):
        read_alf_trials(a, form="table")


def test_subject_folder_and_cache_subject_filter(cache):
    subject = quiet(load_alf_subject, cache / "labx" / "Subjects" / "SW002")
    assert subject["mouse"].unique().tolist() == ["SW002"]
    only = quiet(load_one_cache, cache, subject="SW001")
    assert only["session"].max() == 4 and only["mouse"].unique().tolist() == ["SW001"]
    with pytest.raises(FileNotFoundError, match="NOPE"):
        load_one_cache(cache, subject="NOPE")


def test_gaps_start_times_and_skipped_sessions_warn(tmp_path):
    write_session(tmp_path, "SW009", "2023-01-01", 1, 0, 0.5, form="npy")
    late = write_session(tmp_path, "SW009", "2023-02-01", 1, 1, 0.5, form="npy")
    (tmp_path / "labx" / "Subjects" / "SW009" / "2023-02-02" / "001" / "alf").mkdir(parents=True)  # no trials
    same_day = write_session(tmp_path, "SW009", "2023-02-01", 2, 2, 0.5, form="npy")
    for path, start in ((late, "2023-02-01T15:00:00"), (same_day, "2023-02-01T09:00:00")):
        (path / "raw_behavior_data").mkdir()
        (path / "raw_behavior_data" / "_iblrig_taskSettings.raw.json").write_text(json.dumps({"SESSION_START_TIME": start}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_one_cache(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "gap of 31 days" in messages and "skipped 1 session folder" in messages
    firsts = table.drop_duplicates("session")
    # same date: the 09:00 session (folder 002) comes before the 15:00 one (folder 001)
    assert firsts["session_number"].tolist() == [1, 2, 1]
    assert firsts["session_start_time"].tolist()[1:] == ["2023-02-01T09:00:00", "2023-02-01T15:00:00"]


# -- the Liebana et al. release CSV -------------------------------------------------------------

def release_rows():
    rows = []
    mice = {"DAP001": (False, True), "DAP002": (False, True), "SHP003": (True, True), "NEX004": (False, False)}
    for mouse, (shaped, expert) in mice.items():
        for session_num, date in ((2, "2020-01-06"), (1, "2020-01-03")):  # out of order on purpose
            for t in range(20):
                left = [0.5, 0.0, 0.25, 0.0][t % 4]
                right = [0.0, 50.0 / 100, 0.0, 0.0][t % 4]
                choice = ["Left", "Right", "Right", "Left"][t % 4]
                rewarded = (choice == "Left" and left > 0) or (choice == "Right" and right > 0) or (left == right and t % 8 == 3)
                rows.append({"expRef": f"{date}_1_{mouse}", "sessionNum": session_num, "trialNumber": t + 1,
                             "choice": choice, "feedback": "Rewarded" if rewarded else "Unrewarded",
                             "contrastLeft": left * 100, "contrastRight": right * 100,
                             "repeatNumber": 1, "isShapedMouse": shaped, "isExpertMouse": expert,
                             "responseTime": 0.5 + 0.01 * (t % 5)})
    df = pd.DataFrame(rows)
    dap1 = df["expRef"].str.endswith("DAP001")
    df.loc[dap1 & (df["trialNumber"] == 5), "choice"] = "NoGo"
    df.loc[dap1 & (df["trialNumber"] == 6), "repeatNumber"] = 2
    df.loc[dap1 & (df["trialNumber"] == 9), "responseTime"] = 30.0  # slow outlier (z > 2 within its session)
    return df


def test_release_loader_exclusions_and_conventions(tmp_path):
    release_rows().to_csv(tmp_path / RELEASE_FILENAME, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_liebana_release(tmp_path)
    messages = [str(w.message) for w in caught]
    for expected in ("dropped 40 of 160 rows (shaped mice", "dropped 40 of 120 rows (non-expert",
                     "dropped 2 of 80 rows (no-go", "slow trials", "repeat trials"):
        assert any(expected in m for m in messages), (expected, messages)
    assert sorted(table["mouse"].unique()) == ["DAP001", "DAP002"]
    assert (table.groupby("mouse").size() == pd.Series({"DAP001": 40 - 2 - 2 - 2, "DAP002": 40})).all()
    dap2 = table[table["mouse"] == "DAP002"]
    first = dap2[dap2["session"] == 1]
    assert first["date"].unique().tolist() == ["2020-01-03"] and first["sessionNum"].unique().tolist() == [1]
    assert first["trial"].tolist() == list(range(20)) and first["trialNumber"].tolist() == list(range(1, 21))
    assert first["contrastLeft"].max() == 0.5  # percent -> fraction
    assert first["choice"].tolist()[:4] == [0, 1, 1, 0]
    zero = first[first["signed_contrast"] == 0]
    assert zero["reward"].isin([0.0, 1.0]).all() and zero["reward"].sum() > 0  # known at zero contrast
    assert first["response_times"].iloc[0] == pytest.approx(0.5)


def test_release_loader_options_and_errors():
    df = release_rows()
    everything = quiet(load_liebana_release, df, exclude_slow=False, exclude_repeats=False,
                       exclude_shaped=False, exclude_non_expert=False)
    assert everything["mouse"].nunique() == 4 and len(everything) == 160 - 2
    bad = df.assign(choice=df["choice"].where(df.index != 3, "Up"))
    with pytest.raises(DataFormatError, match="'choice'.*'Up'"):
        load_liebana_release(bad)
    with pytest.raises(DataFormatError, match="response-time"):
        quiet(load_liebana_release, df.drop(columns="responseTime"))
    with pytest.raises(DataFormatError, match="isShapedMouse"):
        load_liebana_release(df.assign(isShapedMouse="maybe"))


# -- load_trials dispatch (so `mouse-rl fit` and bench/fit_real_mice.py read every source) -------------

def test_load_trials_reads_alf_session_subject_cache_and_release(cache, tmp_path):
    from mouse_rl.data import load_trials
    from mouse_rl.data.loaders import folder_kind

    subjects = cache / "labx" / "Subjects"
    whole = quiet(load_one_cache, cache)
    assert folder_kind(cache) == "one_cache"
    pd.testing.assert_frame_equal(quiet(load_trials, cache), whole)
    assert folder_kind(subjects / "SW001") == "alf_subject"
    pd.testing.assert_frame_equal(quiet(load_trials, subjects / "SW001"), whole[whole["mouse"] == "SW001"]
                                  .reset_index(drop=True))
    session = subjects / "SW001" / "2023-03-03" / "001"
    assert folder_kind(session) == "alf_session"
    one = quiet(load_trials, session)
    assert one["probabilityLeft"].eq(0.8).all() and one["response_times"].notna().all()
    release = tmp_path / "release"
    release.mkdir()
    release_rows().to_csv(release / RELEASE_FILENAME, index=False)
    for source in (release, release / RELEASE_FILENAME):
        assert sorted(quiet(load_trials, source)["mouse"].unique()) == ["DAP001", "DAP002"]
    with pytest.raises(DataFormatError, match="no trials found"):
        load_trials(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_one_to_df_table_without_mouse_column_and_sessions_ordered_by_start_time():
    from mouse_rl.data import load_trials

    flat = flat_table()
    single = flat[(flat["subject"] == "SW002")].drop(columns=["subject", "session"])  # one session's to_df()
    with pytest.warns(UserWarning, match="no 'mouse' or 'subject' column"):
        df = load_trials(single)
    assert (df["mouse"] == "mouse").all() and df["session"].eq(1).all()
    assert {"probabilityLeft", "response_times"} <= set(df.columns)
    # a subject trials table sorted by eid: the session numbers follow session_start_time, not row order
    sw1 = flat[flat["subject"] == "SW001"].copy()
    starts = {1: "2023-03-01T09:00:00", 2: "2023-03-01T15:00:00", 3: "2023-03-02T10:00:00", 4: "2023-03-03T10:00:00"}
    sw1["session_start_time"] = sw1["session"].map(starts)
    sw1["eid"] = sw1["session"].map({1: "d-eid", 2: "a-eid", 3: "c-eid", 4: "b-eid"})
    shuffled = sw1.sort_values("eid", kind="stable").drop(columns="session")
    expected = quiet(load_ibl_trials, sw1)
    got = quiet(load_ibl_trials, shuffled)
    pd.testing.assert_frame_equal(got[TRIAL_COLUMNS], expected[TRIAL_COLUMNS])
    assert got.groupby("session")["probabilityLeft"].first().tolist() == [0.5, 0.5, 0.5, 0.8]
    assert got.drop_duplicates("session")["session_start_time"].tolist() == sorted(starts.values())


def test_session_time_ties_gaps_and_disagreeing_numbers_warn():
    flat = flat_table()
    sw1 = flat[flat["subject"] == "SW001"].copy()
    sw1["eid"] = sw1["session"].map({1: "a", 2: "b", 3: "c", 4: "d"})
    sw1["session_start_time"] = sw1["session"].map({1: "2023-03-01T09:00", 2: "2023-03-01T09:00",
                                                    3: "2023-03-20T10:00", 4: "2023-03-21T10:00"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_ibl_trials(sw1.drop(columns="session"))
    messages = " ".join(str(w.message) for w in caught)
    assert "same session_start_time" in messages and "gap of 19 days" in messages
    reversed_numbers = sw1.assign(session=5 - sw1["session"])
    with pytest.warns(UserWarning, match="do not follow 'session_start_time'"):
        load_ibl_trials(reversed_numbers.drop(columns="eid"))
    with pytest.raises(DataFormatError, match="session_start_time.*date/time.*'soon'"):
        load_ibl_trials(sw1.assign(session_start_time="soon").drop(columns="session"))
