"""Running whole dialogues with simulated users (for demos, evaluation and teaching data)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from beliefagent.middleware.session import Session, TurnResult
from beliefagent.teachers import SimulatedUser

__all__ = ["run_dialogue"]


def run_dialogue(
    session: Session,
    user: SimulatedUser,
    option_sets: npt.NDArray[np.int64],
    *,
    on_turn: Callable[[TurnResult, int], None] | None = None,
    close: bool = True,
) -> list[TurnResult]:
    """Play ``option_sets (R, O, F)`` through ``session`` with ``user`` choosing each round.
    ``on_turn(result, user_choice)`` is called after every round (for progress/printing)."""
    results = []
    for s in option_sets:
        result = session.recommend(s)
        choice = user.choose(s)
        session.observe(choice)
        results.append(result)
        if on_turn is not None:
            on_turn(result, choice)
    if close:
        session.close()
    return results
