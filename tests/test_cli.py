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


def test_demo_writes_report(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--mice", "6", "--sessions", "8", "--no-fit"]) == 0
    for name in ("report.html", "learning_curves.png", "psychometrics.png", "theory_vs_cohort.png", "cohort.parquet"):
        assert (tmp_path / name).exists(), name
