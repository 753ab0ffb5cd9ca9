"""The positive control (``benchmarks/teaching_ladder.py --rung price``): LoRA fine-tuning of the
real bundled SmolLM2 learns a content-dependent choice from the compact rendering in minutes on
a CPU (slow: real training)."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


def test_price_control_learns_the_cheapest_flight(tmp_path, benchmark_script) -> None:
    pytest.importorskip("peft")
    ladder = benchmark_script("teaching_ladder")
    args = ladder.build_parser().parse_args(
        [
            "--rung", "price",
            "--examples", "1600",
            "--eval-dialogues", "200",
            "--batch-size", "16",
            "--lr", "2e-3",
            "--all-modules",
            "--dtype", "auto",
            "--seed", "0",
            "--out", str(tmp_path / "price"),
            "--quiet",
        ]
    )  # fmt: skip
    result = ladder.run(args)
    # chance is 1/3 and the uniform label NLL ln 3; the control must be far past both
    assert result["heldout_accuracy"] >= 80.0
    assert result["label_nll"] < 0.5 * math.log(3)
    assert result["examples_needed"] is not None and result["examples_needed"] <= 1600
    # the model reads the prices rather than guessing one position
    assert max(result["position_shares"]) < 0.6
