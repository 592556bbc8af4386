"""Run agent commands through ansible-runner: the package's only importer of it.

One ansible-playbook run holds one play per command (plays.py lays out its private data dir,
events.py sorts its events back into one result per play), so many tasks pay Ansible's
start-up once. Preparing (private data dir, playbook, inventory, play vars, environment) is
kept apart from executing (ansible-runner, events into results). The private data dir holds
the config in clear text and ansible-runner's artifacts hold the whole environment: it lives
in a private temporary folder that is removed after the run, and nothing in it is ever
published.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runner_agent.core.redact import Redactor
from runner_agent.core.resources import ansible_dir
from runner_agent.core.signals import deferred
from runner_agent.run.events import CHANGES_KEY, DRIFT_KEY, PlaybookResult, PlaysCollector
from runner_agent.run.plays import (
    CALLBACK_DIR,
    PlaybookSpec,
    playbook_text,
    unsafe,
    write_plays,
)

__all__ = [
    "CHANGES_KEY",
    "DRIFT_KEY",
    "PlaybookResult",
    "PlaybookSpec",
    "ansible_env",
    "playbook_text",
    "run_playbook",
    "run_plays",
    "unsafe",
    "write_private_dir",
]

_UNIX_PATH_MAX = 107
_COLLECTIONS = "~/.ansible/collections:/usr/share/ansible/collections"  # Ansible's default
_MAX_FORKS = 50


def _mitogen_strategy_dir() -> str | None:
    found = importlib.util.find_spec("ansible_mitogen")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "plugins" / "strategy"
    return str(path) if path.is_dir() else None


def ansible_env(forks: int) -> dict[str, str]:
    """The toolkit's Ansible settings, chosen on purpose (see docs/performance.md).

    Fact gathering is off (agents gather what they need), pipelining on, forks follow the host
    count, and the mitogen strategy is used when installed (RUNNER_AGENT_STRATEGY overrides).
    """
    env = {
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(max(1, min(forks, _MAX_FORKS))),
        # each play starts without facts or registered results of earlier plays (plays.py)
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_TIMEOUT": "10",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
    }
    strategy = os.environ.get("RUNNER_AGENT_STRATEGY", "")
    mitogen = _mitogen_strategy_dir()
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    elif mitogen:
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
    if mitogen and env.get("ANSIBLE_STRATEGY", "").startswith("mitogen"):
        env["ANSIBLE_STRATEGY_PLUGINS"] = mitogen
    return env


def write_private_dir(spec: PlaybookSpec | Sequence[PlaybookSpec], root: Path) -> None:
    """Lay out ansible-runner's private data dir for one command or several (benchmarks run
    bare ansible-playbook on it). Values go to files, never to argv."""
    write_plays([spec] if isinstance(spec, PlaybookSpec) else spec, root)


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), read from /proc (empty where there is none)."""
    table = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (ppid, cmdline)
    return table


def terminate_tree(marker: str, grace: float = 3.0) -> None:
    """End ansible-playbook (found by ``marker`` in its command line) and all it started.

    Ansible's workers call setsid, so killing the playbook's process group, as ansible-runner
    does on its own timeout, leaves running modules behind; they would go on changing endpoints
    after the run was reported as timed out.
    """
    table = _process_table()
    roots = [pid for pid, (ppid, cmd) in table.items() if ppid == os.getpid() and marker in cmd]
    doomed = set(roots)
    frontier = list(roots)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        doomed.update(children)
        frontier.extend(children)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(_alive(pid) for pid in doomed):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


OnDone = Callable[[int, PlaybookResult], None]


def run_playbook(
    spec: PlaybookSpec,
    *,
    on_output: Callable[[str], None] | None = None,
    redactor: Redactor | None = None,
    temp_root: str | None = None,
) -> PlaybookResult:
    """Run one agent command; the private data dir is gone when this returns. What Ansible
    says reaches ``on_output`` and the result with ``redactor``'s secrets masked."""
    return run_plays([spec], on_output=on_output, redactor=redactor, temp_root=temp_root)[0]


def run_plays(
    specs: Sequence[PlaybookSpec],
    *,
    on_start: Callable[[int], None] | None = None,
    on_done: OnDone | None = None,
    on_output: Callable[[str], None] | None = None,
    redactor: Redactor | None = None,
    temp_root: str | None = None,
) -> list[PlaybookResult]:
    """Run the commands, one play each, in as few ansible-playbook runs as Ansible allows.

    ``on_start(index)`` is called as each play starts, ``on_done(index, result)`` as it ends,
    before later plays run. Ansible ends a run early when every host of a play is
    unreachable, and the runtime ends it when a play outlives its timeout: the plays that had
    not started then run in a further run. A run in which no play started (a playbook that
    does not load, say) is retried play by play, so one broken agent fails only its own
    tasks. A stop (KeyboardInterrupt) ends Ansible and propagates; results delivered through
    ``on_done`` are those of the plays that ended.
    """
    results: dict[int, PlaybookResult] = {}

    def deliver(index: int, result: PlaybookResult) -> None:
        results[index] = result
        if on_done is not None:
            on_done(index, result)

    def run(indexes: list[int]) -> PlaybookResult:
        def started(local: int) -> None:
            if on_start is not None:
                on_start(indexes[local])

        return _run_once(
            [specs[i] for i in indexes],
            started,
            lambda local, result: deliver(indexes[local], result),
            on_output,
            redactor or Redactor(),
            temp_root,
        )

    pending = list(range(len(specs)))
    while pending:
        whole = run(pending)
        left = [i for i in pending if i not in results]
        if len(left) < len(pending):
            pending = left
            continue
        # no play started: the run failed as a whole (or timed out loading)
        for index in pending:
            if len(pending) > 1 and whole.status != "timeout":
                whole = run([index])  # one by one, so a broken play fails alone
            if index not in results:
                deliver(index, whole)
        break
    return [results[i] for i in range(len(specs))]


def _run_once(
    specs: Sequence[PlaybookSpec],
    on_start: Callable[[int], None],
    on_done: OnDone,
    on_output: Callable[[str], None] | None,
    redactor: Redactor,
    temp_root: str | None,
) -> PlaybookResult:
    """One ansible-playbook run of the plays; returns the run's own outcome, which is what
    the plays that never started get."""
    import ansible_runner

    root = Path(tempfile.mkdtemp(prefix="runner-agent-", dir=temp_root))
    finished = False
    # a stop raised by a callback (the runtime writing state as a play ends) cancels the run
    # the way a timeout does, so ansible-runner closes its files; it is raised once Ansible ended
    stops: list[KeyboardInterrupt] = []

    def started(index: int) -> None:
        if not stops:
            try:
                on_start(index)
            except KeyboardInterrupt as exc:
                stops.append(exc)

    def done(index: int, result: PlaybookResult) -> None:
        if not stops:
            try:
                on_done(index, result)
            except KeyboardInterrupt as exc:
                stops.append(exc)

    try:
        os.chmod(root, 0o700)
        layout = write_plays(specs, root)
        collector = PlaysCollector(layout, len(specs), on_output, done, started, redactor)
        env = ansible_env(max(spec.forks for spec in specs))
        env["ANSIBLE_ROLES_PATH"] = os.pathsep.join(
            dict.fromkeys(str(spec.roles_path) for spec in specs)
        )
        # the shipped roles call their modules by FQCN (runner_agent.agents.*): the shipped
        # collection comes first, then the user's (or Ansible's default) collections path
        env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
            [str(ansible_dir()), os.environ.get("ANSIBLE_COLLECTIONS_PATH", _COLLECTIONS)]
        )
        # what Ansible leaves in temp goes with the private dir; so does mitogen's socket
        # (no data in it) when its path fits a unix socket's 107 bytes, else mitogen would hang
        env["ANSIBLE_LOCAL_TEMP"] = str(root / "tmp")
        if len(str(root / "tmp" / "mitogen_unix_xxxxxxxx.sock").encode()) < _UNIX_PATH_MAX:
            env["TMPDIR"] = str(root / "tmp")
        # ansible-runner needs ansible-playbook on PATH: ours sits beside this interpreter
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        )
        longest = max(spec.timeout for spec in specs)
        begun = time.monotonic()
        timed_out: int | None = None

        def cancel() -> bool:
            """A play's timeout counts from its start; loading Ansible has the longest's."""
            nonlocal timed_out
            if stops:
                terminate_tree(str(root))
                return True
            current = collector.current
            if current is None:
                deadline = begun + longest
            else:
                deadline = (collector.plays[current].started or begun) + specs[current].timeout
            if time.monotonic() < deadline:
                return False
            timed_out = -1 if current is None else current
            terminate_tree(str(root))
            return True

        runner = ansible_runner.run(
            private_data_dir=str(root),
            playbook="main.yml",
            envvars=env,
            # job and idle timeouts are the backstop; cancel() ends the whole process tree
            settings={
                "job_timeout": sum(spec.timeout for spec in specs) + 30,
                "idle_timeout": longest + 30,
                "pexpect_timeout": 1,
                "suppress_ansible_output": True,
            },
            cancel_callback=cancel,
            # facts stay in memory: ansible-runner's default, a jsonfile cache in the private
            # dir (ansible_runner/config/_base.py, fact_cache_type), would put a task's facts
            # on disk for the length of the run
            fact_cache_type="memory",
            quiet=True,
            suppress_env_files=True,
            event_handler=collector,
        )
        status = "timeout" if timed_out is not None else str(runner.status)
        collector.finish(status, runner.rc, timed_out)
        whole = PlaybookResult(status=status, rc=runner.rc, errors=list(collector.errors))
        finished = True
        if stops:
            raise stops[0]
    finally:
        with deferred():  # a second Ctrl-C must not leave the secrets on disk
            if not finished:  # interrupted (SIGTERM, Ctrl-C): no Ansible process left running
                terminate_tree(str(root), grace=2.0)
            shutil.rmtree(root, ignore_errors=True)
    return whole
