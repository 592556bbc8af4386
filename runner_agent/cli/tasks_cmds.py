"""``validate`` and ``agents``: look at tasks and agents without running anything."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import click

from runner_agent.cli._common import agents_path_option, output_option, print_json
from runner_agent.model.agents import Agent, default_registry
from runner_agent.model.tasks import load_tasks


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@agents_path_option
@output_option
def validate(paths: tuple[Path, ...], agents_path: tuple[Path, ...], output: str) -> int:
    """Check task files: format, fields, agent, command and config against the agent's spec.

    Prints one line per problem, naming the file, the task's index and the field, and exits
    2; exits 0 when every task is valid. Nothing is run, sent or written.

    \b
    Example:
      runner-agent validate examples/*.yml
    """
    tasks = load_tasks(paths, default_registry(agents_path))
    if output == "json":
        print_json({"valid": True, "tasks": [t.to_dict() for t in tasks]})
    else:
        click.echo(f"ok: {len(tasks)} task(s) in {len(paths)} file(s)")
    return 0


@click.command()
@agents_path_option
@output_option
def agents(agents_path: tuple[Path, ...], output: str) -> int:
    """List the agents: version, commands and the config each command accepts.

    Agents are Ansible roles found in --agents-path folders, on RUNNER_AGENT_PATH, and the
    ones shipped with runner-agent (kv_file, kv_etcd).
    """
    registry = default_registry(agents_path)
    if output == "json":
        print_json([a.to_dict() for a in registry])
        return 0
    for agent in registry:
        click.echo(_describe(agent))
    return 0


def _describe(agent: Agent) -> str:
    """An agent for people: its commands once, then the union of their options."""
    names = [c if agent.takes_lock(c) else f"{c} (read-only)" for c in agent.commands]
    about = textwrap.fill(agent.description, 96, initial_indent="  ", subsequent_indent="  ")
    lines = [
        f"{agent.name} {agent.version}",
        about,
        f"  commands: {', '.join(names)}",
        "  config:",
    ]
    options: dict[str, dict[str, Any]] = {}
    required: dict[str, list[str]] = {}
    for command in agent.commands.values():
        for name, spec in command.options.items():
            options.setdefault(name, dict(spec))
            if spec.get("required"):
                required.setdefault(name, []).append(command.name)
    width = max((len(n) for n in options), default=0)
    for name, spec in options.items():
        by = required.get(name, [])
        need = (
            "required"
            if len(by) == len(agent.commands)
            else (f"required by {', '.join(by)}" if by else "")
        )
        if not by and spec.get("default") is not None:
            need = f"default {spec['default']!r}"
        choices = f" ({'|'.join(map(str, spec['choices']))})" if spec.get("choices") else ""
        lines.append(
            f"    {name.ljust(width)}  {str(spec.get('type', 'str')).ljust(4)}  "
            f"{need}{choices}".rstrip()
        )
    return "\n".join(lines) + "\n"
