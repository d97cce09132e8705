import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MOUSE_RL_SMALL", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIEBANA = SHARED_DATA / "liebana2025"


@pytest.fixture
def liebana_dir():
    if not LIEBANA.is_dir():
        pytest.skip(f"real data not found at {LIEBANA} (needs ../shared beside the repo)")
    return LIEBANA
