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
from beliefagent.belief.selection import (
    STRATEGIES,
    Selection,
    SelectionConfig,
    select_subset,
    subset_information_gain,
)

__all__ = [
    "STRATEGIES",
    "Belief",
    "ChoiceModel",
    "EpsilonGreedy",
    "NoiseFree",
    "Selection",
    "SelectionConfig",
    "Softmax",
    "argmax_first",
    "choice_likelihood",
    "choice_model_from_name",
    "choice_model_from_spec",
    "entropy",
    "expected_information_gain",
    "log_normalize",
    "predictive",
    "select_subset",
    "subset_information_gain",
]
