"""The belief middleware: sessions that run recommendation dialogues through any backend, keep
the exact Bayesian belief beside the LLM, apply a policy and log every turn."""

from beliefagent.middleware.parsing import parse_answer
from beliefagent.middleware.policies import POLICIES, Decision, decide
from beliefagent.middleware.selection import SelectedOptions, read_candidates
from beliefagent.middleware.session import Session, TurnResult

__all__ = [
    "POLICIES",
    "Decision",
    "SelectedOptions",
    "Session",
    "TurnResult",
    "decide",
    "parse_answer",
    "read_candidates",
]
