"""Command-line entry points: outputs written, bad input reported as an error (exit 2), never a traceback."""
import pandas as pd
import torch

from mouse_rl.cli import main


def test_simulate_writes_parquet_and_weights(tmp_path):
    out = tmp_path / "c.parquet"
    assert main(["simulate", "--mice", "3", "--sessions", "2", "--trials", "20", "--out", str(out), "--quiet"]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 3 * 2 * 20 and set(df.mouse) == {"sim0000", "sim0001", "sim0002"}
    assert (tmp_path / "c.weights.parquet").exists() and not (tmp_path / "c.ckpt").exists()


def test_bad_arguments_are_reported(tmp_path, capsys):
    assert main(["simulate", "--mice", "2", "--eta", "-1", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "eta" in capsys.readouterr().err
    assert main(["simulate", "--mice", "2", "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["simulate", "--mice", "2", "--probabilities", "0.5", "0.5", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "probabilities" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["simulate", "--mice", "2", "--device", "cuda", "--out", str(tmp_path / "x.parquet")]) == 2
        assert "CUDA" in capsys.readouterr().err


def test_demo_writes_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--mice", "6", "--sessions", "8", "--no-fit"]) == 0
    printed = capsys.readouterr().out
    assert "r(early_bias, late_slope_diff) = " in printed and "(paper -0.53)" in printed
    for name in ("report.html", "learning_curves.png", "psychometrics.png", "theory_vs_cohort.png", "cohort.parquet"):
        assert (tmp_path / name).exists(), name


def test_simulate_cli_table_reads_back_like_the_library_table(tmp_path):
    """Issue 14: the CLI writes the trial table with pyarrow directly; pandas reads back the same frame,
    with the schema and pandas metadata of DataFrame.to_parquet."""
    import pyarrow.parquet as pq

    from mouse_rl import simulate_cohort

    out = tmp_path / "c.parquet"
    assert main(["simulate", "--mice", "3", "--sessions", "3", "--trials", "20", "--seed", "2", "--out", str(out),
                 "--quiet"]) == 0
    expected = simulate_cohort(3, 3, 20, seed=2, progress=False).trials
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    expected.to_parquet(tmp_path / "pandas.parquet", index=False)
    assert pq.read_schema(out).equals(pq.read_schema(tmp_path / "pandas.parquet"), check_metadata=True)


def test_write_parquet_round_trips_nan_text_and_other_dtypes(tmp_path):
    import numpy as np

    from mouse_rl.outputs import write_parquet

    df = pd.DataFrame({"mouse": pd.array(["a", "b", None], dtype="str"), "session": [1, 2, 3],
                       "x": [0.5, np.nan, -0.0], "flag": [True, False, True]})
    write_parquet(df, tmp_path / "a.parquet", dictionary=["mouse", "session"])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), df)
    other = df.assign(when=pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]), kind=pd.Categorical(["x", "y", "x"]))
    write_parquet(other, tmp_path / "b.parquet", dictionary=["mouse"])  # falls back to DataFrame.to_parquet
    other.to_parquet(tmp_path / "c.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "b.parquet"), pd.read_parquet(tmp_path / "c.parquet"))


def test_simulate_checkpoints_once_mid_run_by_default():
    from mouse_rl.cli.simulate import default_checkpoint_every

    assert [default_checkpoint_every(s) for s in (1, 2, 10, 11, 12)] == [1, 1, 5, 6, 6]


def test_reward_rule_option_is_one_definition():
    """Issue 14: every command with --reward-rule takes it from cli.options (choices: data.validation.REWARD_RULES)."""
    import argparse

    from mouse_rl.cli import dopamine
    from mouse_rl.data.validation import REWARD_RULES

    parser = argparse.ArgumentParser()
    dopamine.add_parser(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["dopamine"]
    action = next(a for a in sub._actions if "--reward-rule" in a.option_strings)
    assert tuple(action.choices) == REWARD_RULES and action.default == REWARD_RULES[0]


def test_fit_warns_about_mice_that_did_not_converge(tmp_path, capsys, liebana_dir):
    data = liebana_dir / "DAP007_data.npy"
    assert main(["fit", str(data), "--out", str(tmp_path / "f"), "--restarts", "1", "--max-iter", "3",
                 "--no-plots", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "1 of 1 mice did not converge: DAP007 (max_iter)" in err


def test_fit_refuses_a_reward_rule_that_does_not_apply(tmp_path, capsys, liebana_dir):
    assert main(["fit", str(liebana_dir / "DAP007_data.npy"), "--out", str(tmp_path / "f"),
                 "--reward-rule", "recorded"]) == 2
    assert "--reward-rule recorded: applies to .csv/.parquet" in capsys.readouterr().err
