"""Active elicitation in a session: from candidates, choose the options to show.

    session = Session(load_domain("flight"), backend, selection=SelectionConfig("mixed"))
    chosen = session.select(candidates)          # candidates: texts, {feature: value} or levels
    turn = session.recommend(chosen.levels)      # the round runs on the chosen options
    session.observe(user_choice)                 # the log records candidates and chosen subset

The search itself is :func:`beliefagent.belief.selection.select_subset`; this module reads the
candidates in every form a session accepts options in and keeps what the log needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from beliefagent.belief import Selection
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import OptionError
from beliefagent.trajectories import OptionRecord, SelectionRecord

__all__ = ["CandidatesInput", "SelectedOptions", "read_candidates"]

CandidatesInput = npt.ArrayLike | Sequence[str] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class SelectedOptions:
    """The options chosen to show this round."""

    indices: list[int]
    """positions in the candidates, ascending: the order the options are shown in."""
    levels: npt.NDArray[np.int64]
    """the chosen options, ``(k, n_features)`` level indices: pass them to ``recommend``."""
    options: list[str]
    """the chosen options rendered ("Flight 1: ...", numbered as shown)."""
    selection: Selection
    candidates: npt.NDArray[np.int64]
    """every candidate, ``(N, n_features)``."""

    def record(self, domain: ChoiceDomain) -> SelectionRecord:
        """What the trajectory log keeps: every candidate and the chosen positions."""
        return SelectionRecord(
            strategy=self.selection.strategy,
            search=self.selection.search,
            information_gain=self.selection.information_gain,
            candidates=[
                OptionRecord(
                    text=domain.render_option(row, i), features=dict(domain.feature_values(row))
                )
                for i, row in enumerate(self.candidates)
            ],
            indices=list(self.indices),
        )


def read_candidates(
    domain: ChoiceDomain, candidates: CandidatesInput, k: int | None = None
) -> npt.NDArray[np.int64]:
    """Candidates as level indices ``(N, n_features)``: from option texts ("departure time: ...,
    ..."), ``{feature: value}`` mappings or level indices. Bad ones raise :class:`OptionError`
    naming ``candidates[i]``."""
    if isinstance(candidates, str | bytes):
        raise OptionError("expected a list of candidates", field="candidates", value=candidates)
    if isinstance(candidates, np.ndarray):
        return domain.validate_candidates(candidates, k)
    items: list[Any] = list(candidates)  # type: ignore[arg-type]
    if items and all(isinstance(c, str | Mapping) for c in items):
        rows = []
        for i, c in enumerate(items):
            try:
                rows.append(
                    domain.parse_option(c) if isinstance(c, str) else domain.option_from_values(c)
                )
            except OptionError as exc:
                raise OptionError(
                    f"{exc.reason} ({exc.field}={exc.value!r})", field=f"candidates[{i}]", value=c
                ) from exc
        arr = np.array(rows, dtype=np.int64).reshape(len(rows), domain.n_features)
        return domain.validate_candidates(arr, k)
    if any(isinstance(c, str | Mapping) for c in items):
        raise OptionError(
            "mixes option texts or mappings with other values", field="candidates", value=items
        )
    try:
        arr = np.asarray(items)
    except ValueError as exc:
        raise OptionError("ragged candidate levels", field="candidates", value=items) from exc
    return domain.validate_candidates(arr, k)
