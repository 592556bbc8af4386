"""Run the shipped agents for real: ansible-playbook on the playbook the runtime generates.

The playbook, inventory and extra vars follow the agent contract: one ``include_role`` with
``tasks_from: <command>``, the task's config as top-level extra vars marked unsafe (never
templated), plus ``runner_agent_identity``, ``runner_agent_command`` and ``runner_agent_no_log``.
A small callback (callback_plugins/record_results.py) records each task result and the
aggregate set_stats data, which is what ansible-runner reports as ``artifact_data``.

Also: ``load_library`` imports a role's module file so its pure functions can be unit-tested,
and ``run_module`` executes a module file directly (AnsibleModule reads its arguments from a
JSON file), a real run that costs a tenth of a playbook.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from runner_agent.core.resources import ansible_dir, collection_dir
from runner_agent.run.ansible_exec import unsafe  # the runtime's own marking, not a copy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COLLECTIONS = ansible_dir()  # holds ansible_collections/runner_agent/agents
ROLES = collection_dir() / "roles"
MODULES = collection_dir() / "plugins" / "modules"
CALLBACKS = HERE / "callback_plugins"
BIN = Path(sys.executable).parent


def load_library(role: str, module: str) -> ModuleType:
    """Import the collection's ``plugins/modules/<module>.py`` as a Python module (its
    module_utils import as ``ansible_collections.runner_agent.agents...``, a namespace package
    found on the path)."""
    if str(COLLECTIONS) not in sys.path:
        sys.path.append(str(COLLECTIONS))
    path = MODULES / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"runner_agent_test_{module}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in roles
    try:
        spec.loader.exec_module(loaded)
    finally:
        sys.dont_write_bytecode = keep
    return loaded


@dataclass
class AgentRun:
    rc: int
    output: str
    results: list[dict[str, Any]]
    custom: dict[str, Any]
    stats: dict[str, dict[str, int]]

    def result(self, action: str, host: str = "localhost") -> dict[str, Any]:
        """The result of the (first) task running ``action`` on ``host``."""
        for entry in self.results:
            if entry["action"] == action and entry["host"] == host:
                return dict(entry["result"])
        raise AssertionError(f"no {action} result for {host} in:\n{self.output}")

    def changed(self, host: str = "localhost") -> int:
        return self.stats[host]["changed"]


def run_role(
    role: str,
    command: str,
    config: dict[str, Any],
    workdir: Path,
    *,
    check: bool = False,
    diff: bool = False,
    no_log: bool = False,
    hosts: tuple[str, ...] = ("localhost",),
    expect_rc: int | None = 0,
) -> AgentRun:
    """ansible-playbook for one agent command, as the runtime runs it; its recorded results."""
    workdir.mkdir(parents=True, exist_ok=True)
    playbook = workdir / "playbook.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"{role} {command}",
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": f"{role} {command}",
                            "ansible.builtin.include_role": {"name": role, "tasks_from": command},
                        }
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }
    inventory = workdir / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {h: host_vars for h in hosts}}}))
    extravars = workdir / "extravars.json"
    extravars.write_text(
        json.dumps(
            {
                **unsafe(config),
                "runner_agent_identity": unsafe("test/" + role),
                "runner_agent_command": command,
                "runner_agent_no_log": no_log,
            }
        )
    )
    record = workdir / "record.json"
    record.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
        "ANSIBLE_CALLBACKS_ENABLED": "record_results",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "RECORD_RESULTS_FILE": str(record),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("ANSIBLE_CONFIG", None)
    args = [
        str(BIN / "ansible-playbook"),
        "-i",
        str(inventory),
        str(playbook),
        "-e",
        f"@{extravars}",
    ]
    if check:
        args.append("--check")
    if diff:
        args.append("--diff")
    proc = subprocess.run(
        args, cwd=workdir, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    output = proc.stdout + proc.stderr
    if expect_rc is not None:
        assert proc.returncode == expect_rc, output
    data = json.loads(record.read_text()) if record.exists() else {}
    return AgentRun(
        rc=proc.returncode,
        output=output,
        results=data.get("results", []),
        custom=data.get("custom", {}),
        stats=data.get("stats", {}),
    )


def run_module(
    role: str,
    module: str,
    args: dict[str, Any],
    workdir: Path,
    *,
    check: bool = False,
    diff: bool = True,
) -> dict[str, Any]:
    """Execute a role's module file directly with ``args``; its JSON result."""
    workdir.mkdir(parents=True, exist_ok=True)
    args_file = workdir / f"{module}-args.json"
    args_file.write_text(
        json.dumps(
            {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
        )
    )
    proc = subprocess.run(
        [sys.executable, str(MODULES / f"{module}.py"), str(args_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(COLLECTIONS)},
    )
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"module output is not JSON: {proc.stdout}\n{proc.stderr}") from exc
    result["rc"] = proc.returncode
    return result
