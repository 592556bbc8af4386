"""The private data dir of one ansible-playbook run holding one play per agent command.

Several tasks share one run (Ansible's start-up is paid once) without sharing anything else:

- each play reads its task's config and ``runner_agent_*`` values from its own ``vars_files``
  entry (play scope: no other play sees them; extra vars would be global to the run);
- each play has its own hosts: every host of a task's inventory becomes an alias
  ``<host>@ra<n>`` (``ansible_host`` keeps the real name) in groups prefixed ``ra<n>_``
  under one group ``ra<n>`` the play targets, so a host that fails or is unreachable in one
  task is not removed from another task's play, and two tasks may give one host different
  variables;
- the agent's entry point runs in a block whose rescue only marks the host failed: Ansible
  stops the whole playbook when every host of a play has failed, which would end the plays of
  other tasks (``PlaybookExecutor.run`` in ansible-core's lib/ansible/executor/
  playbook_executor.py: "break out if the entire batch failed"); the marker tells the failure
  apart from success in the events;
- the callback plugin ``runner_agent_scrub`` (ansible_plugins/callback) drops, as each play
  starts, the facts and registered results that earlier plays left on their hosts, so
  ``hostvars`` of another task's alias holds inventory variables only.

Values are written as JSON with every string marked unsafe (never templated), as before.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner_agent.core import fs

__all__ = [
    "RESCUE_TASK",
    "Layout",
    "PlaybookSpec",
    "alias",
    "play_name",
    "playbook_text",
    "unsafe",
    "write_plays",
]

RESCUE_TASK = "runner-agent: the agent failed on this host"
CALLBACK_DIR = Path(__file__).resolve().parent / "ansible_plugins" / "callback"
CALLBACK = "runner_agent_scrub"


@dataclass(frozen=True)
class PlaybookSpec:
    """One agent command of one task: a play of a run; built by the runtime, no I/O."""

    agent: str
    roles_path: Path
    command: str
    extravars: Mapping[str, Any]  # the play's vars (config and runner_agent_*), never templated
    inventory: Mapping[str, Any]
    timeout: int  # seconds, from the play's start
    check: bool = False  # check mode (never diff), for this play only
    forks: int = 1
    # the runtime checked the values against the entry point's argument spec (with Ansible's
    # own validator, model.agents.check_config): the play skips Ansible's check task, one
    # worker process less per play
    validated: bool = False


@dataclass
class Layout:
    """What the written files map back to: play names and host aliases."""

    plays: dict[str, int] = field(default_factory=dict)  # play name -> play index
    hosts: dict[str, tuple[int, str]] = field(default_factory=dict)  # alias -> (index, host)

    def host_count(self) -> int:
        return len(self.hosts)


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


def alias(index: int, host: str) -> str:
    return f"{host}@ra{index}"


def play_name(index: int, agent: str, command: str) -> str:
    return f"runner-agent {agent} {command} [ra{index}]"


def playbook_text(plays: Sequence[PlaybookSpec]) -> str:
    """The generated playbook: per play, the agent's entry point for its command on its hosts.

    Fact gathering is left to the settings (off in the toolkit's, see ansible_env), so the
    same playbook serves to measure the settings in benchmarks/.
    """
    book = []
    for index, spec in enumerate(plays):
        play: dict[str, Any] = {
            "name": play_name(index, spec.agent, spec.command),
            "hosts": f"ra{index}",
            "vars_files": [f"vars/ra{index}.json"],
        }
        # what `--check` does for a whole run, for this play only (cycle, and every command of
        # a dry run); no `diff`: Ansible would print whole values into the job log, the diff
        # travels as runner_agent_changes instead (docs/agents.md)
        if spec.check:
            play["check_mode"] = True
        role: dict[str, Any] = {"name": spec.agent, "tasks_from": spec.command}
        if spec.validated:
            role["rolespec_validate"] = False
        play["tasks"] = [
            {
                "block": [
                    {"name": f"{spec.agent} {spec.command}", "ansible.builtin.import_role": role}
                ],
                "rescue": [
                    {
                        "name": RESCUE_TASK,
                        "ansible.builtin.set_fact": {"runner_agent_failed": True},
                        "check_mode": False,
                    }
                ],
            }
        ]
        book.append(play)
    return yaml.safe_dump(book, sort_keys=False)


def _host(host: str, host_vars: Any) -> dict[str, Any]:
    values = dict(host_vars) if isinstance(host_vars, Mapping) else {}
    wrapped: dict[str, Any] = unsafe(values)
    wrapped.setdefault("ansible_host", unsafe(host))  # the alias connects to the real host
    wrapped["runner_agent_host"] = unsafe(host)
    if values.get("ansible_connection") == "local":  # Ansible runs them with this interpreter
        wrapped.setdefault("ansible_python_interpreter", sys.executable)
    return wrapped


def _group(index: int, group: Any, layout: Layout) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(group, Mapping):
        return out
    hosts = group.get("hosts")
    if isinstance(hosts, Mapping):
        out["hosts"] = {}
        for host, host_vars in hosts.items():
            name = alias(index, str(host))
            layout.hosts[name] = (index, str(host))
            out["hosts"][name] = _host(str(host), host_vars)
    if isinstance(group.get("vars"), Mapping):
        out["vars"] = unsafe(group["vars"])
    children = group.get("children")
    if isinstance(children, Mapping):
        out["children"] = {f"ra{index}_{k}": _group(index, v, layout) for k, v in children.items()}
    return out


def play_inventory(index: int, inventory: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    """The task's inventory under group ``ra<index>``: its ``all`` becomes that group, its
    other groups children prefixed ``ra<index>_``, every host an alias (see module doc)."""
    root = _group(index, inventory.get("all") or {}, layout)
    children = root.setdefault("children", {})
    for name, group in inventory.items():
        if name != "all":
            children[f"ra{index}_{name}"] = _group(index, group, layout)
    if not children:
        del root["children"]
    return root


def write_plays(plays: Sequence[PlaybookSpec], root: Path) -> Layout:
    """Lay out ansible-runner's private data dir. Values go to files, never to argv."""
    layout = Layout()
    (root / "project" / "vars").mkdir(parents=True)
    (root / "inventory").mkdir()
    (root / "env").mkdir()
    (root / "tmp").mkdir()
    groups: dict[str, Any] = {}
    for index, spec in enumerate(plays):
        layout.plays[play_name(index, spec.agent, spec.command)] = index
        groups[f"ra{index}"] = play_inventory(index, spec.inventory, layout)
        vars_file = root / "project" / "vars" / f"ra{index}.json"
        fs.write_text(vars_file, json.dumps(unsafe(spec.extravars)))  # 0600: secrets
    fs.write_text(root / "project" / "main.yml", playbook_text(plays))
    fs.write_text(root / "inventory" / "hosts.json", json.dumps({"all": {"children": groups}}))
    return layout
