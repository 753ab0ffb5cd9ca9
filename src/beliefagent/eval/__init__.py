"""Evaluation: the paper's protocol for the Bayesian teacher and for LLM assistants."""
