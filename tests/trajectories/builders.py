"""Record builders shared by the trajectory tests (imported relatively, not a conftest)."""

from __future__ import annotations

from typing import Any

from beliefagent.trajectories import (
    BeliefSnapshot,
    Decision,
    Message,
    OptionRecord,
    SessionEnd,
    SessionStart,
    Turn,
)

FLIGHTS = [
    OptionRecord(
        text="Flight 1: $320, 1 stop, 7h", features={"price": 320, "stops": 1, "hours": 7.0}
    ),
    OptionRecord(
        text="Flight 2: $450, direct, 5h", features={"price": 450, "stops": 0, "hours": 5.0}
    ),
    OptionRecord(
        text="Flight 3: $210, 2 stops, 11h", features={"price": 210, "stops": 2, "cabin": "eco"}
    ),
]


def make_turn(session_id: str = "s1", round: int = 0, **overrides: Any) -> Turn:
    """A fully populated turn; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "session_id": session_id,
        "user_id": "u1",
        "domain": "flights",
        "round": round,
        "options": FLIGHTS,
        "prompt": [
            Message(role="system", content="You recommend flights."),
            Message(role="user", content="Which flight would I prefer?"),
        ],
        "raw_replies": ["I think flight 2", "The answer is: Flight 2"],
        "llm_choice": 1,
        "llm_distribution": [0.2, 0.7, 0.1],
        "bayes_choice": 0,
        "bayes_distribution": [0.5, 0.3, 0.2],
        "shown_choice": 0,
        "decision": Decision(policy="guard", source="bayes", reason="llm disagrees with teacher"),
        "user_choice": 2,
        "belief": BeliefSnapshot(
            entropy=2.1,
            n_hypotheses=64,
            map_index=5,
            marginals={"price": [0.25, 0.5, 0.25], "stops": [0.1, 0.9]},
        ),
        "backend": "openai",
        "model": "gpt-x",
        "adapter": None,
        "latency_s": 0.42,
        "prompt_tokens": 120,
        "completion_tokens": 9,
        "errors": ["first reply did not name a flight"],
        "invalid": False,
        "user_message": "I'd rather take the cheap one",
    }
    fields.update(overrides)
    return Turn(**fields)


def make_session(
    session_id: str, rounds: int, *, end: bool = True
) -> list[SessionStart | Turn | SessionEnd]:
    """A start record, ``rounds`` turns and (optionally) an end record."""
    records: list[SessionStart | Turn | SessionEnd] = [
        SessionStart(session_id=session_id, user_id="u1", domain="flights", policy="guard")
    ]
    records += [make_turn(session_id, r) for r in range(rounds)]
    if end:
        records.append(SessionEnd(session_id=session_id, rounds=rounds))
    return records
