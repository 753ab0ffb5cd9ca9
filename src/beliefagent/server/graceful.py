"""A uvicorn server whose SIGTERM-initiated, drained shutdown exits with status 0.

uvicorn handles SIGTERM by shutting down gracefully (in-flight requests finish, the lifespan
closes every session and the log), then raises the signal again to its previous handler, so the
process dies of SIGTERM (status 143) even though it stopped cleanly. Supervisors read 143 as a
crash. :class:`DrainingServer` forgets a captured SIGTERM once the shutdown has completed
without an error, so the process exits 0; a failure during shutdown still propagates, and
SIGINT keeps uvicorn's behaviour.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Generator

import uvicorn

__all__ = ["DrainingServer"]


class DrainingServer(uvicorn.Server):
    """:class:`uvicorn.Server` that exits 0 after a drained SIGTERM shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured[:] = [s for s in captured if s != signal.SIGTERM]
