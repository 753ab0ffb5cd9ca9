"""Readers for evaluation data files (the official Qiu et al. 2026 release)."""

from beliefagent.datasets.qiu2026 import (
    Heldout,
    Interactions,
    find_data_file,
    heldout_truth,
    load_heldout,
    load_interactions,
)

__all__ = [
    "Heldout",
    "Interactions",
    "find_data_file",
    "heldout_truth",
    "load_heldout",
    "load_interactions",
]
