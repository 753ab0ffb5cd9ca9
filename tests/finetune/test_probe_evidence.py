"""The evidence probes (``benchmarks/probe_evidence.py``): labels read from the dialogues, and a
ridge probe that finds a linearly coded bit and does not invent one in noise."""

from __future__ import annotations

import numpy as np


def test_labels_follow_the_users_choices(benchmark_script) -> None:
    probe = benchmark_script("probe_evidence")
    ladder = benchmark_script("teaching_ladder")
    domain = ladder.rung_domain("price-random")
    sessions = ladder.make_sessions(domain, "price-random", 200, np.random.default_rng(0), 3, 0)
    sessions = [s for s, ok in zip(sessions, probe.usable(sessions, domain), strict=True) if ok]
    y = probe.labels(sessions, domain)
    codes = np.stack([domain.codes(s[2])[..., 0] for s in sessions])  # (N, R, O)
    round2 = np.array([s[3][1] for s in sessions])
    # a user who took round 1's highest code takes round 2's highest code, and vice versa
    wants_high = y["sign"] == 1
    picked = codes[np.arange(len(sessions)), 1, round2]
    assert np.all(picked[wants_high] == codes[wants_high, 1].max(-1))
    assert np.all(picked[~wants_high] == codes[~wants_high, 1].min(-1))
    assert np.array_equal(y["answer"], round2)
    assert 0.3 < y["sign"].mean() < 0.7  # both kinds of user occur


def test_a_ridge_probe_reads_a_coded_bit_and_not_noise(benchmark_script) -> None:
    probe = benchmark_script("probe_evidence")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 32))
    coded = (x[:, 3] + 0.1 * rng.normal(size=400) > 0).astype(int)
    noise = rng.integers(0, 2, size=400)
    _, held = probe.probe_accuracy(x[:300], coded[:300], x[300:], coded[300:], 2)
    assert held >= 80.0
    _, held = probe.probe_accuracy(x[:300], noise[:300], x[300:], noise[300:], 2)
    assert held <= 65.0
