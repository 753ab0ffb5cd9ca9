"""Child process for the SIGKILL fault test: runs dialogues forever, printing each logged turn."""

from __future__ import annotations

import sys
import time

import numpy as np

from beliefagent.adapters import ScriptedBackend
from beliefagent.domains import load_domain
from beliefagent.middleware import Session
from beliefagent.teachers import SimulatedUser


def main(log_path: str) -> None:
    flight = load_domain("flight")
    rng = np.random.default_rng(0)

    def slow_reply(_messages):
        time.sleep(0.005)
        return "The best option is Flight 1."

    backend = ScriptedBackend(slow_reply)
    for n in range(10_000):
        user = SimulatedUser(flight, flight.hypothesis_weights()[n % 624], seed=n)
        session = Session(flight, backend, log=log_path, session_id=f"s{n}", user_id=f"u{n}")
        for s in flight.random_option_sets(rng, 5):
            session.recommend(s)
            turn = session.observe(user.choose(s))
            print(f"{turn.session_id} {turn.round}", flush=True)
        session.close()


if __name__ == "__main__":
    main(sys.argv[1])
