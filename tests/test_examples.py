"""The shipped example mouse is exactly what the project's generator makes."""
import json

import pandas as pd

from mouse_rl.examples import DATA_DIR, EXAMPLE_TRUTH, load_example_mouse, make_example_mouse


def test_shipped_example_equals_regenerated():
    shipped = pd.read_parquet(DATA_DIR / "example_mouse.parquet")
    pd.testing.assert_frame_equal(shipped, make_example_mouse())
    assert json.loads((DATA_DIR / "example_mouse.json").read_text())["params"] == EXAMPLE_TRUTH


def test_example_looks_like_real_data():
    df = load_example_mouse()
    assert df.reward[df.signed_contrast == 0].isna().all()
    assert df.reward[df.signed_contrast != 0].notna().all()
    assert "p_right" not in df.columns
