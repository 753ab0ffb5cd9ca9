"""The ladder's evidence-free ceiling (``benchmarks/teaching_ladder.py``): the best accuracy of a
rule that ignores the dialogue, the line a model must cross to show it uses the evidence."""

from __future__ import annotations

import json

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


def test_the_cued_rung_states_each_users_direction(tmp_path, benchmark_script) -> None:
    ladder = benchmark_script("teaching_ladder")
    domain = ladder.rung_domain("price-cued")
    held = ladder.make_sessions(domain, "price-cued", 60, np.random.default_rng(2), 1, 0)
    cues = [ladder.price_cue(s) for s in held]
    assert set(cues) == {"I want the cheapest.", "I want the dearest."}
    path = tmp_path / "set.jsonl"
    assert ladder.write_set(path, domain, held, "oracle", "compact", cues) == 60
    for line, session, cue in zip(path.read_text().splitlines(), held, cues, strict=True):
        row = json.loads(line)
        prices = np.asarray(session[2])[0, :, 0]
        wanted = prices.argmax() if cue.endswith("dearest.") else prices.argmin()
        assert row["messages"][0]["content"].startswith(cue + " Pick the flight")
        assert row["targets"] == [int(wanted)] == [session[3][0]]
