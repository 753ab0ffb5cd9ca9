"""beliefagent: exact Bayesian beliefs beside any chat LLM, trajectory logs, Bayesian teaching
and evaluation for multi-turn recommendation dialogues."""

from beliefagent.errors import BeliefAgentError

__version__ = "0.1.0"
__all__ = ["BeliefAgentError", "__version__"]
