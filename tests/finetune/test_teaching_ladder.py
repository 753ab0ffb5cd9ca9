"""The ladder's evidence-free ceiling (``benchmarks/teaching_ladder.py``): the best accuracy of a
rule that ignores the dialogue, the line a model must cross to show it uses the evidence."""

from __future__ import annotations

import numpy as np


def test_a_fixed_user_is_matched_by_a_fixed_rule(benchmark_script) -> None:
    ladder = benchmark_script("teaching_ladder")
    domain = ladder.rung_domain("price")
    held = ladder.make_sessions(domain, "price", 50, np.random.default_rng(0), 3, 0)
    assert ladder.evidence_free_ceiling(domain, held) == [100.0, 100.0, 100.0]


def test_random_users_cap_a_fixed_rule_near_half(benchmark_script) -> None:
    ladder = benchmark_script("teaching_ladder")
    domain = ladder.rung_domain("price-random")
    held = ladder.make_sessions(domain, "price-random", 400, np.random.default_rng(1), 3, 0)
    ceiling = ladder.evidence_free_ceiling(domain, held)
    # each user wants the cheapest or the dearest flight; one rule gets the larger group only
    assert len(ceiling) == 3 and all(40.0 <= c <= 62.0 for c in ceiling)
    cheapest = np.mean(
        [[c == int(np.argmin(s[:, 0])) for s, c in zip(h[2], h[3], strict=True)] for h in held]
    )
    assert all(c <= max(cheapest, 1 - cheapest) * 100 + 1.0 for c in ceiling)


def test_ceiling_only_stops_before_training(tmp_path, benchmark_script) -> None:
    ladder = benchmark_script("teaching_ladder")
    args = ladder.build_parser().parse_args(
        ["--rung", "price-random", "--examples", "30", "--ceiling-only", "--out", str(tmp_path)]
    )
    result = ladder.run(args)
    assert set(result) == {"rung", "evidence_free_ceiling_by_round"}
    assert not (tmp_path / "train.jsonl").exists()
