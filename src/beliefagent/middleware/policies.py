"""Policies: which answer a session shows the user, given the LLM's and the teacher's.

- ``llm``: the LLM's answer (pass-through; the belief is tracked and logged beside it).
- ``bayes``: the Bayesian teacher's answer (the LLM is not asked unless ``ask_llm=True``).
- ``hint``: the LLM's answer, with the posterior summary given to it as evidence in the prompt.
- ``guard``: the LLM's answer unless the teacher is confident (its predictive probability of
  its own choice >= threshold) and disagrees.

When the LLM's answer is invalid (unparseable after the re-asks) every policy falls back to the
teacher, then to the LLM's scored distribution, then shows nothing; the decision records why.
When the backend call itself failed (``llm_failed``), the reason starts with ``"fallback:"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from beliefagent.errors import ConfigError

__all__ = ["POLICIES", "Decision", "PolicyName", "check_policy", "decide"]

PolicyName = Literal["llm", "bayes", "hint", "guard"]
POLICIES: tuple[str, ...] = ("llm", "bayes", "hint", "guard")
Source = Literal["llm", "bayes", "none"]


@dataclass(frozen=True)
class Decision:
    shown: int | None
    source: Source
    reason: str


def check_policy(name: str, threshold: float = 0.8) -> PolicyName:
    if name not in POLICIES:
        raise ConfigError(
            f"unknown policy (one of {', '.join(POLICIES)})", field="policy", value=name
        )
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError("must be in [0, 1]", field="guard_threshold", value=threshold)
    return name  # type: ignore[return-value]


def decide(
    policy: PolicyName,
    llm_choice: int | None,
    bayes_choice: int | None,
    bayes_confidence: float | None,
    *,
    llm_scored_choice: int | None = None,
    threshold: float = 0.8,
    llm_failed: bool = False,
) -> Decision:
    """Pick the answer to show. ``bayes_choice`` is None when no exact belief is available."""
    if policy == "bayes":
        if bayes_choice is not None:
            return Decision(bayes_choice, "bayes", "policy bayes: the teacher answers")
        if llm_choice is not None:
            return Decision(llm_choice, "llm", "policy bayes, but no belief is available")
    elif llm_choice is not None:
        if (
            policy == "guard"
            and bayes_choice is not None
            and bayes_confidence is not None
            and bayes_choice != llm_choice
            and bayes_confidence >= threshold
        ):
            return Decision(
                bayes_choice,
                "bayes",
                f"guard: teacher disagrees with confidence {bayes_confidence:.2f} "
                f">= {threshold:.2f}",
            )
        why = {
            "llm": "policy llm",
            "hint": "policy hint: LLM answered with the belief as evidence",
            "guard": "guard: teacher agrees or is not confident",
        }[policy]
        return Decision(llm_choice, "llm", why)
    if bayes_choice is not None:
        if llm_failed:
            return Decision(bayes_choice, "bayes", "fallback: the LLM call failed; the teacher"
                            " answers")  # fmt: skip
        return Decision(bayes_choice, "bayes", "LLM answer invalid; the teacher answers")
    if llm_scored_choice is not None:
        return Decision(
            llm_scored_choice, "llm", "LLM answer invalid; shown its highest-scored option"
        )
    if llm_failed:
        return Decision(None, "none", "fallback: the LLM call failed and no belief is available")
    return Decision(None, "none", "LLM answer invalid and no belief available")
