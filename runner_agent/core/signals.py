"""Stop signals: SIGTERM and Ctrl-C end a run cleanly, and never cut short what must finish.

:func:`installed` (used by the CLI) makes SIGTERM unwind like Ctrl-C, as KeyboardInterrupt, so a
stopped job ends Ansible's processes and removes its private folder. Some steps must then finish
once started: removing the folder that holds a task's secrets, writing an identity's state,
the last report of a job being stopped. Inside :func:`deferred` a stop signal is only noted;
it is raised when the block ends. Once stopping, further signals are ignored: an impatient
second Ctrl-C cannot interrupt the clean-up of the first.

The hold lives in the handler, not in the process's signal mask: it works whichever thread
the kernel delivers the signal to, and no child process inherits a blocked or ignored signal.
A stop also tells :mod:`runner_agent.gitlab.retry` to give up retries a few seconds later
(:func:`stop_requested_at`), so a held write or a last upload cannot keep the job for minutes.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["STOP_GRACE", "STOP_SIGNALS", "deferred", "installed", "stop_requested_at"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# seconds a stopping job keeps talking to GitLab (its last state write, its last reports):
# the runner kills the job soon after SIGTERM
STOP_GRACE = 8.0


class _State:
    held = 0  # depth of deferred() blocks
    pending = False  # a stop came while held
    stopping = False  # KeyboardInterrupt raised (or pending): later signals are ignored
    since: float | None = None  # time.monotonic() of the first stop signal


def stop_requested_at() -> float | None:
    """When (time.monotonic) the first stop signal came; None while none has."""
    return _State.since


def _on_signal(signum: int, frame: object) -> None:
    if _State.stopping:
        return  # stopping already: a second Ctrl-C or SIGTERM changes nothing
    _State.stopping = True
    _State.since = time.monotonic()
    if _State.held:
        _State.pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Finish the block before a stop signal takes effect (with :func:`installed` handlers;
    Python's default Ctrl-C handler is not held)."""
    _State.held += 1
    try:
        yield
    finally:
        _State.held -= 1
    if not _State.held and _State.pending:
        _State.pending = False
        raise KeyboardInterrupt


@contextmanager
def installed() -> Iterator[None]:
    """Handle SIGTERM and SIGINT as above for the block, then restore the previous handlers
    and forget the stop (on the main thread only, where handlers can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Callable[..., Any] | int | None] = {
        signum: signal.signal(signum, _on_signal) for signum in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        _State.stopping, _State.pending, _State.since = False, False, None
