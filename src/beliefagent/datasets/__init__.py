"""Readers for evaluation data files (the official Qiu et al. 2026 release)."""

from beliefagent.datasets.qiu2026 import (
    Heldout,
    Interactions,
    data_roots,
    find_data_file,
    find_data_path,
    heldout_truth,
    load_heldout,
    load_interactions,
)

__all__ = [
    "Heldout",
    "Interactions",
    "data_roots",
    "find_data_file",
    "find_data_path",
    "heldout_truth",
    "load_heldout",
    "load_interactions",
]
