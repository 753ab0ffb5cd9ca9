"""What one answered round holds (:class:`TurnResult`) and its JSON form, which the server's
session store keeps for a round that awaits the user's choice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from beliefagent.middleware.policies import Decision
from beliefagent.teachers import BeliefSummary

__all__ = ["TurnResult", "result_from_dict", "result_to_dict"]


@dataclass
class TurnResult:
    """Everything known about one round once the assistant has answered."""

    round: int
    options: list[str]
    shown_choice: int | None
    decision: Decision
    llm_choice: int | None = None
    llm_distribution: list[float] | None = None
    bayes_choice: int | None = None
    bayes_distribution: list[float] | None = None
    information_gain: float | None = None
    belief: BeliefSummary | None = None
    raw_replies: list[str] = field(default_factory=list)
    invalid: bool = False
    llm_failed: bool = False
    """the backend call failed (an error, not an unparseable answer): the policy fell back"""
    errors: list[str] = field(default_factory=list)
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def belief_available(self) -> bool:
        return self.belief is not None


def _plain(value: Any) -> Any:
    """numpy scalars in a flat mapping or list as plain Python (JSON-able) values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _belief_dict(b: BeliefSummary) -> dict[str, Any]:
    return {
        "entropy": float(b.entropy),
        "n_hypotheses": int(b.n_hypotheses),
        "n_alive": int(b.n_alive),
        "map_index": int(b.map_index),
        "map_weights": [float(w) for w in b.map_weights],
        "mean_weights": {str(k): float(v) for k, v in b.mean_weights.items()},
        "marginals": {str(k): [float(p) for p in v] for k, v in b.marginals.items()},
        "support": [float(v) for v in b.support],
        "emptied": bool(b.emptied),
        "n_contradictions": int(b.n_contradictions),
    }


def result_to_dict(result: TurnResult) -> dict[str, Any]:
    """A :class:`TurnResult` as JSON-able data (:func:`result_from_dict` reads it back)."""
    data = {f.name: getattr(result, f.name) for f in fields(TurnResult)}
    d = result.decision
    data["decision"] = {"shown": d.shown, "source": d.source, "reason": d.reason}
    data["belief"] = _belief_dict(result.belief) if result.belief is not None else None
    for name in ("options", "raw_replies", "errors"):
        data[name] = list(data[name])
    plain: dict[str, Any] = _plain(data)  # the other fields are scalars or short lists
    return plain


def result_from_dict(data: Mapping[str, Any]) -> TurnResult:
    """The :class:`TurnResult` that :func:`result_to_dict` wrote."""
    fields = dict(data)
    decision = Decision(**fields.pop("decision"))
    belief = fields.pop("belief")
    return TurnResult(
        decision=decision,
        belief=BeliefSummary(**belief) if belief is not None else None,
        **fields,
    )
