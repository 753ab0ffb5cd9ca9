"""Exact Bayesian belief over enumerated hypotheses: log-space posteriors, choice likelihoods,
predictive distributions and information gain, vectorised in numpy."""

from beliefagent.belief.likelihood import (
    ChoiceModel,
    EpsilonGreedy,
    NoiseFree,
    Softmax,
    argmax_first,
    choice_likelihood,
    choice_model_from_name,
    choice_model_from_spec,
)
from beliefagent.belief.posterior import (
    Belief,
    entropy,
    expected_information_gain,
    log_normalize,
    predictive,
)

__all__ = [
    "Belief",
    "ChoiceModel",
    "EpsilonGreedy",
    "NoiseFree",
    "Softmax",
    "argmax_first",
    "choice_likelihood",
    "choice_model_from_name",
    "choice_model_from_spec",
    "entropy",
    "expected_information_gain",
    "log_normalize",
    "predictive",
]
