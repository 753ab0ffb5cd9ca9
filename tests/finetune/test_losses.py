"""The losses on small hand-computed cases (pure torch, fast)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from beliefagent.finetune.data import IGNORE_INDEX  # noqa: E402
from beliefagent.finetune.losses import (  # noqa: E402
    answer_cross_entropy,
    label_kl,
    label_log_probs,
)

LABEL_IDS = torch.tensor([1, 3, 4])  # (K,) the tokens "1", "2", "3" of a toy vocabulary


def _logits_with_label_probs(probs: list[list[float]], v: int = 6) -> torch.Tensor:
    """Logits (1, T, V) whose renormalised label distribution at position t is ``probs[t]``;
    the non-label tokens get arbitrary large logits (they must not matter)."""
    t = len(probs)
    logits = torch.full((1, t, v), 5.0)
    for i, row in enumerate(probs):
        logits[0, i, LABEL_IDS] = torch.log(torch.tensor(row)) + 2.0
    return logits


def test_label_log_probs_are_normalised_over_the_labels_only() -> None:
    logits = _logits_with_label_probs([[0.25, 0.5, 0.25], [0.1, 0.2, 0.7]])
    log_q = label_log_probs(logits, torch.tensor([[1, 0]]), LABEL_IDS)  # (1, 2, 3)
    assert log_q.shape == (1, 2, 3)
    torch.testing.assert_close(log_q.exp()[0, 0], torch.tensor([0.1, 0.2, 0.7]))
    torch.testing.assert_close(log_q.exp()[0, 1], torch.tensor([0.25, 0.5, 0.25]))


def test_label_kl_equals_hand_computed_value() -> None:
    # turn 0: p = (1/2, 1/4, 1/4), q = (1/4, 1/2, 1/4):
    #   KL = 1/2 ln 2 + 1/4 ln 1/2 + 0 = ln(2) / 4
    # turn 1: p = (1, 0, 0) (zeros: 0 log 0 = 0), q uniform: KL = ln 3
    # turn 2: masked out (garbage that must not count)
    logits = _logits_with_label_probs([[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.9, 0.05, 0.05]])
    positions = torch.tensor([[0, 1, 2]])  # (B, A)
    p = torch.tensor([[[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # (B, A, K)
    mask = torch.tensor([[True, True, False]])
    kl = label_kl(label_log_probs(logits, positions, LABEL_IDS), p, mask)
    expected = (math.log(2) / 4 + math.log(3)) / 2
    assert float(kl) == pytest.approx(expected, abs=1e-6)


def test_label_kl_is_zero_when_model_matches_teacher_and_has_gradient() -> None:
    logits = _logits_with_label_probs([[0.2, 0.3, 0.5]]).requires_grad_(True)
    p = torch.tensor([[[0.2, 0.3, 0.5]]])
    kl = label_kl(
        label_log_probs(logits, torch.tensor([[0]]), LABEL_IDS), p, torch.tensor([[True]])
    )
    assert float(kl.detach()) == pytest.approx(0.0, abs=1e-6)
    kl.backward()
    assert logits.grad is not None
    assert float(logits.grad.abs().max()) < 1e-5


def test_answer_cross_entropy_counts_answer_tokens_only() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 5, 7, generator=g)  # (B, T, V)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 6, IGNORE_INDEX]])  # (B, T)
    # position t predicts token t+1: the answer tokens 3 (t=2) and 6 (t=3) are predicted
    # by the logits at t=1 and t=2
    expected = (
        -(torch.log_softmax(logits[0, 1], -1)[3] + torch.log_softmax(logits[0, 2], -1)[6]) / 2
    )
    assert float(answer_cross_entropy(logits, labels)) == pytest.approx(float(expected))
    changed = logits.clone()
    changed[0, 0] += 10.0
    changed[0, 3:] -= 10.0
    assert float(answer_cross_entropy(changed, labels)) == pytest.approx(float(expected))
