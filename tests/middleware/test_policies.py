from __future__ import annotations

import pytest

from beliefagent.errors import ConfigError
from beliefagent.middleware.policies import check_policy, decide


def test_llm_passes_through() -> None:
    d = decide("llm", 2, 0, 0.99)
    assert (d.shown, d.source) == (2, "llm")


def test_bayes_answers() -> None:
    d = decide("bayes", 2, 0, 0.4)
    assert (d.shown, d.source) == (0, "bayes")


@pytest.mark.parametrize(
    ("llm", "bayes", "conf", "shown", "source"),
    [(2, 0, 0.9, 0, "bayes"), (2, 0, 0.5, 2, "llm"), (0, 0, 0.99, 0, "llm")],
)
def test_guard(llm: int, bayes: int, conf: float, shown: int, source: str) -> None:
    d = decide("guard", llm, bayes, conf, threshold=0.8)
    assert (d.shown, d.source) == (shown, source)
    assert d.reason


def test_invalid_llm_falls_back() -> None:
    assert decide("llm", None, 1, 0.3).shown == 1
    d = decide("llm", None, None, None, llm_scored_choice=2)
    assert (d.shown, d.source) == (2, "llm")
    d = decide("hint", None, None, None)
    assert (d.shown, d.source) == (None, "none")


def test_bad_policy() -> None:
    with pytest.raises(ConfigError) as info:
        check_policy("yolo")
    assert info.value.field == "policy"
    with pytest.raises(ConfigError):
        check_policy("guard", 1.5)
