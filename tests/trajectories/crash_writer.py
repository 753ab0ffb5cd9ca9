"""Child process for the crash test: append turn records forever, reporting each one written.

Usage: ``python crash_writer.py LOG_PATH``. After each ``write`` returns (the record is fsynced),
the number of turns written so far is printed on its own line and flushed. The parent kills this
process with SIGKILL at some point and checks every reported turn is in the log.
"""

from __future__ import annotations

import sys

from beliefagent.trajectories import OptionRecord, SessionStart, TrajectoryWriter, Turn


def main(path: str) -> None:
    options = [OptionRecord(text=f"Option {i}: " + "x" * 2000, features={"i": i}) for i in range(3)]
    with TrajectoryWriter(path, fsync=True) as log:
        log.write(SessionStart(session_id="crash", domain="flights", policy="advise"))
        count = 0
        while True:
            turn = Turn(
                session_id="crash",
                domain="flights",
                round=count,
                options=options,
                user_choice=count % 3,
            )
            log.write(turn)
            count += 1
            sys.stdout.write(f"{count}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
