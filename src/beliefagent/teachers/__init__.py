"""Teachers: the exact Bayesian teacher (the paper's Bayesian Assistant), the oracle, and
simulated users."""

from beliefagent.teachers.bayes import (
    BayesianTeacher,
    BeliefSummary,
    QuestionnaireTeacher,
    Recommendation,
    heldout_accuracy_by_round,
)
from beliefagent.teachers.oracle import OracleTeacher
from beliefagent.teachers.users import SimulatedRespondent, SimulatedUser, sample_users

__all__ = [
    "BayesianTeacher",
    "BeliefSummary",
    "OracleTeacher",
    "QuestionnaireTeacher",
    "Recommendation",
    "SimulatedRespondent",
    "SimulatedUser",
    "heldout_accuracy_by_round",
    "sample_users",
]
