from __future__ import annotations

import numpy as np
import pytest

from beliefagent.domains import load_domain
from beliefagent.errors import ChoiceError, OptionError

BIG5 = load_domain("bigfive")


def test_ipip_items() -> None:
    assert len(BIG5.items) == 50
    for trait in BIG5.traits:
        items = [it for it in BIG5.items if it.trait == trait]
        assert len(items) == 10
        assert any(it.keyed == -1 for it in items) and any(it.keyed == 1 for it in items)


def test_grm_rows_sum_to_one_and_are_monotone() -> None:
    for item in range(50):
        p = BIG5.answer_probs(item)  # (3125, 5)
        assert np.allclose(p.sum(axis=1), 1.0)
    # a higher trait level shifts a positively keyed item's expected answer up, reverse down
    w = BIG5.hypothesis_weights()
    expected = BIG5.answer_probs(0) @ np.arange(1, 6)  # item 0: extraversion, +keyed
    order = np.argsort(w[:, 0], kind="stable")
    assert np.all(np.diff(expected[order][::625]) > 0)
    expected_rev = BIG5.answer_probs(5) @ np.arange(1, 6)  # item 5: extraversion, -keyed
    assert np.all(np.diff(expected_rev[order][::625]) < 0)


def test_bad_item_and_answer() -> None:
    with pytest.raises(OptionError):
        BIG5.answer_probs(50)
    with pytest.raises(ChoiceError) as info:
        BIG5.check_answer(6)
    assert info.value.field == "answer"
