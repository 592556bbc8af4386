"""``validate`` and ``agents``: look at tasks and agents without running anything."""

from __future__ import annotations

from pathlib import Path

import click

from runner_agent.agents import default_registry
from runner_agent.cli._common import agents_path_option, output_option, print_json
from runner_agent.tasks import load_tasks


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
        click.echo(f"{agent.name} {agent.version}  {agent.description}")
        for command in agent.commands.values():
            lock = "" if agent.takes_lock(command.name) else " (read-only, no lock)"
            click.echo(f"  {command.name}{lock}: {command.description}")
            for name, spec in command.options.items():
                need = "required" if spec.get("required") else f"default {spec.get('default')!r}"
                kind = spec.get("type", "str")
                choices = (
                    f" one of {', '.join(map(str, spec['choices']))}" if spec.get("choices") else ""
                )
                click.echo(f"      {name} ({kind}, {need}){choices}")
    return 0


COMMANDS = [validate, agents]
