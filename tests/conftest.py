from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qiu2026"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """The official Qiu et al. (2026) files in ../shared/data/qiu2026 (never copied here)."""
    if not (OFFICIAL / "heldout_flight.json").is_file():
        pytest.skip("official data not present at ../shared/data/qiu2026")
    return OFFICIAL
