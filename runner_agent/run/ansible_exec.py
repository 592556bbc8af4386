"""Run one agent command through ansible-runner: the package's only importer of it.

Preparing (private data dir, playbook, inventory, extra vars, environment) is kept apart from
executing (ansible-runner, events into results). The private data dir holds the config in clear
text and ansible-runner's artifacts hold the whole environment: it lives in a private temporary
folder that is removed after the run, and nothing in it is ever published.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner_agent.core import fs
from runner_agent.core.redact import Redactor
from runner_agent.core.resources import ansible_dir
from runner_agent.core.signals import deferred
from runner_agent.report.model import FailedTask, HostStats, TaskResult

__all__ = ["PlaybookResult", "PlaybookSpec", "ansible_env", "run_playbook", "write_private_dir"]

DRIFT_KEY = "runner_agent_drift"
CHANGES_KEY = "runner_agent_changes"  # per host: keys written or removed, with values
_UNIX_PATH_MAX = 107
_COLLECTIONS = "~/.ansible/collections:/usr/share/ansible/collections"  # Ansible's default
_OUTCOMES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass(frozen=True)
class PlaybookSpec:
    """Everything one ansible-runner run needs; built by the runtime, no I/O."""

    agent: str
    roles_path: Path
    command: str
    extravars: Mapping[str, Any]
    inventory: Mapping[str, Any]
    timeout: int
    check: bool = False
    forks: int = 1


@dataclass
class PlaybookResult:
    status: str  # ansible-runner's: successful, failed, timeout, canceled, error
    rc: int | None
    hosts: dict[str, HostStats] = field(default_factory=dict)
    results: list[TaskResult] = field(default_factory=list)
    failed_tasks: list[FailedTask] = field(default_factory=list)
    stats_data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # Ansible's [ERROR] lines, for the report


def unsafe(value: Any) -> Any:
    """``value`` with every string wrapped the way Ansible's JSON loader reads unsafe text.

    Unsafe strings are never templated, so task data stays data. YAML's ``!unsafe`` tag is not
    used: ansible-core 2.19 resolves a tagged quoted scalar as if it were plain, turning
    ``!unsafe "0640"`` into the int 416 and ``!unsafe "true"`` into a bool.
    """
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, Mapping):
        return {str(k): unsafe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe(v) for v in value]
    return value


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
        "ANSIBLE_FORKS": str(max(1, min(forks, 50))),
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


def playbook_text(agent: str, command: str) -> str:
    """The generated playbook: the agent's entry point for the command, on every host.

    Fact gathering is left to the settings (off in the toolkit's, see ansible_env), so the
    same playbook serves to measure the settings in benchmarks/.
    """
    play = [
        {
            "name": f"runner-agent {agent} {command}",
            "hosts": "all",
            "tasks": [
                {
                    "name": f"{agent} {command}",
                    "ansible.builtin.import_role": {"name": agent, "tasks_from": command},
                }
            ],
        }
    ]
    return yaml.safe_dump(play, sort_keys=False)


def _inventory(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """The inventory as Ansible reads it: host and group variables unsafe (never templated),
    and hosts on the local connection using this interpreter, whose Ansible runs them."""
    out: dict[str, Any] = {}
    for name, group in inventory.items():
        if not isinstance(group, Mapping):
            out[name] = group
            continue
        out[name] = dict(group)
        hosts = group.get("hosts")
        if isinstance(hosts, Mapping):
            out[name]["hosts"] = {h: _host(v) for h, v in hosts.items()}
        if isinstance(group.get("vars"), Mapping):
            out[name]["vars"] = unsafe(group["vars"])
        if isinstance(group.get("children"), Mapping):
            out[name]["children"] = _inventory(group["children"])
    return out


def _host(host_vars: Any) -> Any:
    if not isinstance(host_vars, Mapping):
        return host_vars
    wrapped = unsafe(host_vars)
    if host_vars.get("ansible_connection") == "local":
        wrapped.setdefault("ansible_python_interpreter", sys.executable)
    return wrapped


def write_private_dir(spec: PlaybookSpec, root: Path) -> None:
    """Lay out ansible-runner's private data dir. Values go to files, never to argv."""
    (root / "project").mkdir(parents=True)
    (root / "inventory").mkdir()
    (root / "env").mkdir()
    (root / "tmp").mkdir()
    fs.write_text(root / "project" / "main.yml", playbook_text(spec.agent, spec.command))
    fs.write_text(root / "inventory" / "hosts.json", json.dumps(_inventory(spec.inventory)))
    # ansible-runner passes a dict of extravars on the command line as JSON; a file in
    # env/extravars is passed as "-e @file" instead, so no value reaches argv
    fs.write_text(root / "env" / "extravars", json.dumps(unsafe(spec.extravars)))  # 0600


class _Collector:
    """Turns ansible-runner events into results; keeps none of them on disk.

    Secrets are masked here, where Ansible's text enters the toolkit: before a line is
    streamed and before a message is squashed or cut, so no change of the text can split a
    secret out of reach of the mask.
    """

    def __init__(self, on_output: Callable[[str], None] | None, redactor: Redactor) -> None:
        self.on_output = on_output
        self.redactor = redactor
        self.result = PlaybookResult(status="", rc=None)

    def __call__(self, event: dict[str, Any]) -> bool:
        stdout = self.redactor.text(str(event.get("stdout") or ""))
        if self.on_output and stdout:
            self.on_output(stdout)
        if "[ERROR]" in stdout:
            text = " ".join(stdout.split("[ERROR]:", 1)[-1].split())
            self.result.errors = [*self.result.errors, text[:1000]][-3:]
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind in _OUTCOMES:
            self._task(kind, data)
        elif kind == "playbook_on_stats":
            self._stats(data)
        return False  # nothing to keep in ansible-runner's artifacts

    def _task(self, kind: str, data: dict[str, Any]) -> None:
        outcome = _OUTCOMES[kind]
        res = data.get("res") or {}
        if outcome == "failed" and data.get("ignore_errors"):
            outcome = "ok"
        if outcome == "ok" and res.get("changed"):
            outcome = "changed"
        host = str(data.get("host", ""))
        task = self.redactor.text(str(data.get("task", "")))  # a templated name shows values
        failed = outcome in ("failed", "unreachable")
        message = _message(self.redactor.values(res)) if failed else ""
        self.result.results.append(
            TaskResult(host, task, outcome, float(data.get("duration") or 0.0), message)
        )
        if message:
            self.result.failed_tasks.append(
                FailedTask(host, task, message, unreachable=outcome == "unreachable")
            )

    def _stats(self, data: dict[str, Any]) -> None:
        names = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
        }
        for source, target in names.items():
            for host, count in (data.get(source) or {}).items():
                stats = self.result.hosts.setdefault(host, HostStats())
                setattr(stats, target, int(count))
        for host in data.get("processed") or {}:
            self.result.hosts.setdefault(host, HostStats())
        self.result.stats_data = self.redactor.values(dict(data.get("artifact_data") or {}))


def _message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            return " ".join(str(value).split())[:2000]
    return json.dumps(res, sort_keys=True, default=str)[:2000]


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


def run_playbook(
    spec: PlaybookSpec,
    *,
    on_output: Callable[[str], None] | None = None,
    redactor: Redactor | None = None,
    temp_root: str | None = None,
) -> PlaybookResult:
    """Run the agent command; the private data dir is gone when this returns. What Ansible
    says reaches ``on_output`` and the result with ``redactor``'s secrets masked."""
    import ansible_runner

    root = Path(tempfile.mkdtemp(prefix="runner-agent-", dir=temp_root))
    collector = _Collector(on_output, redactor or Redactor())
    try:
        os.chmod(root, 0o700)
        write_private_dir(spec, root)
        env = ansible_env(spec.forks)
        env["ANSIBLE_ROLES_PATH"] = str(spec.roles_path)
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
        deadline = time.monotonic() + spec.timeout
        timed_out = False

        def cancel() -> bool:
            nonlocal timed_out
            if time.monotonic() < deadline:
                return False
            timed_out = True
            terminate_tree(str(root))
            return True

        finished = False
        runner = ansible_runner.run(
            private_data_dir=str(root),
            playbook="main.yml",
            envvars=env,
            cmdline="--check" if spec.check else None,  # no --diff: values stay out of logs
            # job and idle timeouts are the backstop; cancel() ends the whole process tree
            settings={
                "job_timeout": spec.timeout + 30,
                "idle_timeout": spec.timeout + 30,
                "pexpect_timeout": 1,
                "suppress_ansible_output": True,
            },
            cancel_callback=cancel,
            quiet=True,
            suppress_env_files=True,
            event_handler=collector,
        )
        collector.result.status = "timeout" if timed_out else str(runner.status)
        collector.result.rc = runner.rc
        finished = True
    finally:
        with deferred():  # a second Ctrl-C must not leave the secrets on disk
            if not finished:  # interrupted (SIGTERM, Ctrl-C): no Ansible process left running
                terminate_tree(str(root), grace=2.0)
            shutil.rmtree(root, ignore_errors=True)
    return collector.result
