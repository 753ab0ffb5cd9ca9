"""Training losses for Bayesian teaching.

- :func:`answer_cross_entropy` — next-token cross-entropy on the answer tokens only (hard
  targets: the teacher's chosen option written out as the assistant's reply).
- :func:`label_kl` — ``KL(teacher || model)`` between the teacher's predictive distribution over
  the options and the model's distribution over the option label tokens ("1", "2", "3"),
  renormalised over those tokens, at the label position of every assistant turn (soft targets).
- :func:`label_log_probs` — the model's log-distribution over the labels at those positions,
  also used to score choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from beliefagent.finetune.data import IGNORE_INDEX

__all__ = ["answer_cross_entropy", "label_kl", "label_log_probs"]


def answer_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, shifted: bool = False
) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens whose label is not ``IGNORE_INDEX``.

    ``logits (B, T, V)``, ``labels (B, T)`` aligned with the inputs (the shift happens here);
    with ``shifted``, ``labels[:, t]`` is already the token that ``logits[:, t]`` predicts (the
    logits were kept at selected positions only).
    """
    shift_logits = logits.float() if shifted else logits[:, :-1].float()  # (B, T', V)
    shift_labels = labels if shifted else labels[:, 1:]  # (B, T')
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def label_log_probs(
    logits: torch.Tensor, positions: torch.Tensor, label_token_ids: torch.Tensor
) -> torch.Tensor:
    """Log-probabilities over the K option labels at each answer position.

    ``logits (B, T, V)``, ``positions (B, A)``, ``label_token_ids (K,)`` -> ``(B, A, K)``,
    normalised over the K labels (a logsumexp over the label logits only).
    """
    b = torch.arange(logits.size(0), device=logits.device)[:, None]  # (B, 1)
    at = logits[b, positions]  # (B, A, V)
    picked = at[..., label_token_ids].float()  # (B, A, K)
    return torch.log_softmax(picked, dim=-1)


def label_kl(log_q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over answer turns of ``KL(p || q) = sum_k p_k (log p_k - log q_k)``.

    ``log_q (B, A, K)`` the model's label log-probabilities, ``p (B, A, K)`` the teacher's
    distribution (rows sum to 1; zeros allowed: ``0 log 0 = 0``), ``mask (B, A)`` True for real
    turns.
    """
    p = p.to(log_q.dtype)
    per_turn = (torch.xlogy(p, p) - p * log_q).sum(-1)  # (B, A)
    m = mask.to(per_turn.dtype)
    return (per_turn * m).sum() / m.sum().clamp_min(1.0)
