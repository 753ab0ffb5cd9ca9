"""Fixtures for the trajectory tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A log path whose parent directory does not exist yet."""
    return tmp_path / "logs" / "run.jsonl"
