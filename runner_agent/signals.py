"""Work a stop signal must not cut short.

``runner-agent`` turns SIGTERM into KeyboardInterrupt, like Ctrl-C (see :mod:`runner_agent.cli`),
so a stopped job unwinds and cleans up. Some steps must then finish once started: removing the
private folder that holds a task's secrets, writing an identity's state, the last report of a
job being stopped. :func:`deferred` holds SIGTERM and SIGINT until such a step is done; a signal
that came meanwhile is delivered right after it, and a second Ctrl-C cannot interrupt the
clean-up of the first.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["deferred"]

_HELD = {signal.SIGTERM, signal.SIGINT}


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT for the block (on the main thread, where Python runs signal
    handlers; elsewhere a no-op). Start no process inside: it would inherit the mask."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
