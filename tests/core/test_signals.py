"""Stop signals in-process: held inside deferred(), raised once, then ignored; nothing leaks to
child processes or outlives the CLI's call."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from runner_agent.cli import main
from runner_agent.core import signals
from runner_agent.gitlab import retry


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs at the next bytecode of the main thread


def _ignored_by_a_child() -> int:
    """The SigIgn mask of a freshly started process."""
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
    line = next(x for x in status.splitlines() if x.startswith("SigIgn:"))
    return int(line.split()[1], 16)


def test_a_stop_inside_deferred_waits_for_the_block_and_comes_once() -> None:
    before = signal.getsignal(signal.SIGTERM)
    done = []
    with signals.installed():
        with pytest.raises(KeyboardInterrupt), signals.deferred():
            _sigterm()
            done.append("the block went on")
            with signals.deferred():  # nested: raised when the outermost ends
                _sigterm()  # a second signal while stopping: ignored
            done.append("and ended")
        assert done == ["the block went on", "and ended"]
        assert signals.stop_requested_at() is not None
        # a stopping process gives GitLab a few seconds more, not minutes
        deadline = retry._deadline()
        assert deadline is not None and deadline <= time.monotonic() + signals.STOP_GRACE
        _sigterm()  # still stopping: nothing raised
        assert not _ignored_by_a_child() & (1 << (signal.SIGTERM - 1))
    assert signal.getsignal(signal.SIGTERM) is before
    assert signals.stop_requested_at() is None and retry._deadline() is None


def test_a_signal_delivered_to_another_thread_is_held_too() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)  # a thread the kernel may pick
    worker.start()
    try:
        with signals.installed(), pytest.raises(KeyboardInterrupt):
            with signals.deferred():
                for _ in range(5):
                    _sigterm()
                held = True
            held = False
        assert held  # the block ran to its end before the stop was raised
    finally:
        stop.set()


def test_main_restores_the_handlers_it_set() -> None:
    before = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    assert main(["agents", "-o", "json"]) == 0
    assert {s: signal.getsignal(s) for s in signals.STOP_SIGNALS} == before
