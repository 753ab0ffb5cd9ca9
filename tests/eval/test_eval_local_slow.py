"""The bundled SmolLM2 through the harness (slow: a real model on CPU; kept tiny)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beliefagent.eval.harness import EvalConfig, run_eval

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.mark.slow
def test_local_smollm2_tiny_eval(tmp_path: Path) -> None:
    run = run_eval(
        EvalConfig(users=1, heldout_sets=2, probe=True), ["bayes", "local", "local#guard"], tmp_path
    )
    local = next(a for a in run.summary["assistants"] if a["name"] == "local")
    assert len(local["accuracy_by_round"]) == 6
    assert local["invalid_rate"] == 0.0  # label scoring always yields an answer
    assert "calibration" in local and set(local["probe"]["mean_by_feature"]) == {
        "departure_time",
        "duration",
        "number_of_stops",
        "price",
    }
