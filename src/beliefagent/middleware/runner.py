"""Running whole dialogues with simulated users (for demos, evaluation and teaching data)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from beliefagent.domains import ChoiceDomain
from beliefagent.middleware.session import Session, TurnResult
from beliefagent.teachers import SimulatedUser
from beliefagent.trajectories import TrajectoryWriter

__all__ = ["run_dialogue", "simulate_teacher_dialogues"]


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


def simulate_teacher_dialogues(
    domain: ChoiceDomain,
    users: Sequence[int],
    log: str | Path,
    *,
    seed: int = 0,
    rounds: int | None = None,
    fsync: bool = False,
) -> None:
    """Dialogues answered by the Bayesian teacher (policy ``bayes``, ties broken at random),
    logged through the middleware like production traffic: one session per hypothesis index in
    ``users`` (user id ``h<index>``), each choosing noise-free on ``rounds`` (default: the
    domain's) seeded random option sets. The raw material of a simulated teaching set."""
    rng = np.random.default_rng(seed)
    weights = domain.hypothesis_weights()
    n_rounds = domain.rounds if rounds is None else rounds
    with TrajectoryWriter(log, fsync=fsync) as writer:
        for u in users:
            session = Session(
                domain,
                None,
                policy="bayes",
                log=writer,
                user_id=f"h{int(u)}",
                tie_break="random",
                seed=int(u),
            )
            user = SimulatedUser(domain, weights[int(u)], seed=int(u))
            run_dialogue(session, user, domain.random_option_sets(rng, n_rounds))
