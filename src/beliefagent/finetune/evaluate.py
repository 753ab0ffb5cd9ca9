"""Scoring held-out dialogues with a (tuned) model: the choice at every answer is the argmax of
the model's distribution over the option labels, teacher-forced on the dialogue's own history.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from beliefagent.finetune.data import EncodedExample, collate
from beliefagent.finetune.losses import label_log_probs

__all__ = ["evaluate_choices", "label_logits"]


def label_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the label positions only (the LM head skips every other position, ~20 % of a
    small model's compute). Returns ``(logits (B, P, V), positions (B, A))`` with ``positions``
    re-indexed into the ``P`` kept positions."""
    keep = torch.unique(batch["label_positions"])  # (P,) sorted
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
    ).logits
    return logits, torch.searchsorted(keep, batch["label_positions"])


@torch.no_grad()
def evaluate_choices(
    model: Any, examples: list[EncodedExample], *, batch_size: int = 4, pad_token_id: int = 0
) -> dict[str, Any]:
    """Score held-out dialogues: the model's choice at each answer is the argmax of its
    distribution over the option labels after the answer prefix (one forward pass per dialogue
    gives every round, teacher-forced on the dialogue's own history).

    Returns accuracy against the users' choices, agreement with the teaching targets (the
    Bayesian teacher's choices for a ``bayes`` set), both per round; the share of answers on each
    option position (a collapsed model answers one); the mean label NLL of the targets (compare
    with ln 3 = 1.0986) and KL(teacher || model) where soft targets exist.
    """
    if not examples:
        return {"n_dialogues": 0, "n_answers": 0}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k = len(examples[0].label_token_ids)
    choices: list[list[int]] = []
    nll: list[float] = []
    kls: list[float] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        b = {n: t.to(device) for n, t in collate(chunk, pad_token_id).items()}
        logits, pos = label_logits(model, b)  # (B, P, V), (B, A)
        log_q = label_log_probs(logits, pos, b["label_token_ids"])  # (B, A, K)
        pick = log_q.argmax(-1)  # (B, A)
        tgt_lp = log_q.gather(-1, b["hard_targets"][..., None])[..., 0]  # (B, A)
        p = b["soft_targets"]  # (B, A, K)
        kl_turn = (torch.xlogy(p, p) - p * log_q).sum(-1)  # (B, A)
        for j, e in enumerate(chunk):
            m = len(e.label_positions)
            choices.append(pick[j, :m].tolist())
            nll += (-tgt_lp[j, :m]).tolist()
            if e.soft_targets is not None:
                kls += kl_turn[j, :m].tolist()
    model.train(was_training)
    n_rounds = max(len(c) for c in choices)

    def rate(ref: list[list[int] | None]) -> tuple[float | None, list[float | None]]:
        hits: list[list[int]] = [[] for _ in range(n_rounds)]
        for c, r in zip(choices, ref, strict=True):
            if r is None:
                continue
            for a, (x, y) in enumerate(zip(c, r, strict=False)):
                hits[a].append(int(x == y))
        flat = [h for row in hits for h in row]
        if not flat:
            return None, [None] * n_rounds
        return 100 * float(np.mean(flat)), [100 * float(np.mean(h)) if h else None for h in hits]

    acc, acc_r = rate([e.user_choices for e in examples])
    agree, agree_r = rate([e.hard_targets for e in examples])
    teacher_acc, teacher_r = _target_accuracy(examples, n_rounds)
    flat_choices = [x for c in choices for x in c]
    shares = np.bincount(flat_choices, minlength=k) / max(1, len(flat_choices))
    return {
        "n_dialogues": len(examples),
        "n_answers": len(flat_choices),
        "accuracy": acc,
        "accuracy_by_round": acc_r,
        "agreement": agree,
        "agreement_by_round": agree_r,
        "target_accuracy": teacher_acc,
        "target_accuracy_by_round": teacher_r,
        "position_shares": [round(float(s), 4) for s in shares],
        "label_nll": float(np.mean(nll)),
        "label_kl": float(np.mean(kls)) if kls else None,
    }


def _target_accuracy(
    examples: list[EncodedExample], n_rounds: int
) -> tuple[float | None, list[float | None]]:
    """How often the teaching targets themselves name the user's choice (the teacher's own
    in-dialogue accuracy: the ceiling a perfectly taught model reaches)."""
    hits: list[list[int]] = [[] for _ in range(n_rounds)]
    for e in examples:
        if e.user_choices is None:
            continue
        for a, (x, y) in enumerate(zip(e.hard_targets, e.user_choices, strict=False)):
            hits[a].append(int(x == y))
    flat = [h for row in hits for h in row]
    if not flat:
        return None, [None] * n_rounds
    return 100 * float(np.mean(flat)), [100 * float(np.mean(h)) if h else None for h in hits]
