"""Selection over HTTP: the extension's ``candidates`` field.

A request may send ``"candidates": [...]`` (option texts or ``{feature: value}`` objects, at
least the domain's options per round, all different) instead of ``"options"``; the session then
chooses the options to show with its belief (``"selection"``: random | eig | reward | mixed,
default eig), answers on them, and the response's ``beliefagent.selected`` gives the chosen
options as shown and their indices into ``candidates``. The trajectory log's turn records every
candidate and the chosen indices (``Turn.selection``), so export and replay stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from beliefagent.belief import STRATEGIES
from beliefagent.domains import ChoiceDomain
from beliefagent.errors import InputError, OptionError
from beliefagent.middleware import SelectedOptions

__all__ = ["check_strategy", "option_rows", "read_candidates_field", "selected_payload"]

_PREFIX = "beliefagent."


def check_strategy(value: Any) -> str | None:
    if value is not None and value not in STRATEGIES:
        raise InputError(
            f"unknown selection strategy (one of {', '.join(STRATEGIES)})",
            field=f"{_PREFIX}selection",
            value=value,
        )
    return value


def option_rows(domain: ChoiceDomain, options: Sequence[Any], name: str) -> npt.NDArray[np.int64]:
    """Each option of a request (a text or a ``{feature: value}`` object) as a row of levels
    ``(N, n_features)``, not yet validated as a set; errors name ``{name}[i]`` (and the feature,
    where one is at fault). Shared by ``options`` and ``candidates``."""
    rows = []
    for i, option in enumerate(options):
        where = f"{name}[{i}]"
        try:
            if isinstance(option, str):
                rows.append(domain.parse_option(option))
            elif isinstance(option, dict):
                rows.append(domain.option_from_values(option))
            else:
                raise OptionError(
                    "must be an option text or a {feature: value} object", field="", value=option
                )
        except OptionError as exc:
            sub = exc.field.removeprefix("option")
            raise OptionError(
                exc.reason, field=where + sub if sub.startswith(".") else where, value=exc.value
            ) from exc
    return np.array(rows, dtype=np.int64).reshape(len(rows), domain.n_features)


def read_candidates_field(domain: ChoiceDomain, candidates: Sequence[Any]) -> npt.NDArray[np.int64]:
    """Parse the ``candidates`` of a request into levels ``(N, n_features)``; errors name
    ``beliefagent.candidates[i]`` (and the feature, where one is at fault)."""
    levels = option_rows(domain, candidates, f"{_PREFIX}candidates")
    try:
        return domain.validate_candidates(levels)
    except OptionError as exc:
        raise OptionError(exc.reason, field=_PREFIX + exc.field, value=exc.value) from exc


def selected_payload(selected: SelectedOptions | None) -> dict[str, Any] | None:
    """The response's ``beliefagent.selected`` object (None for a request with ``options``)."""
    if selected is None:
        return None
    sel = selected.selection
    return {
        "indices": list(selected.indices),
        "options": list(selected.options),
        "strategy": sel.strategy,
        "search": sel.search,
        "information_gain": sel.information_gain,
        "expected_rewards": list(sel.expected_rewards),
    }
