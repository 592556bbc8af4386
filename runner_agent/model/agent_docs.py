"""An agent's config reference in Markdown, generated from its argument specs.

docs/agents.md holds one generated block per shipped agent, between the markers below; a test
compares each block with what this module generates, so the reference cannot drift from the
specs. Rewrite the blocks with ``python -m runner_agent.model.agent_docs docs/agents.md``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runner_agent.model.agents import Agent, default_registry

__all__ = ["BEGIN", "END", "config_reference", "update_blocks"]

BEGIN = "<!-- BEGIN config reference of {name}: generated from meta/argument_specs.yml -->"
END = "<!-- END config reference of {name} -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _description(spec: Mapping[str, Any]) -> str:
    described = spec.get("description") or ""
    if isinstance(described, list):
        described = " ".join(str(d) for d in described)
    return _cell(str(described))


def _default(spec: Mapping[str, Any]) -> str:
    if "default" not in spec:
        return ""
    value = spec["default"]
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def config_reference(agent: Agent) -> str:
    """The agent's options (the union over its commands) as a Markdown table."""
    options: dict[str, Mapping[str, Any]] = {}
    required: dict[str, list[str]] = {}
    # install's and update's descriptions first: other entry points may say "unused here"
    first = [agent.commands[c] for c in ("install", "update") if c in agent.commands]
    for command in [*first, *agent.commands.values()]:
        for name, spec in command.options.items():
            options.setdefault(name, spec)
            if spec.get("required") and command.name not in required.get(name, []):
                required.setdefault(name, []).append(command.name)
    rows = [
        "| option | type | required by | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, spec in options.items():
        by = required.get(name, [])
        need = "all" if len(by) == len(agent.commands) else ", ".join(sorted(by))
        kind = str(spec.get("type", "str"))
        if spec.get("elements"):
            kind += f" of {spec['elements']}"
        meaning = _description(spec)
        if spec.get("choices"):
            meaning = f"one of {', '.join(f'`{c}`' for c in spec['choices'])}; {meaning}"
        if spec.get("aliases"):
            meaning += f" (alias: {', '.join(f'`{a}`' for a in spec['aliases'])})"
        if spec.get("no_log"):
            meaning += " Secret: never logged."
        rows.append(f"| `{name}` | {kind} | {need} | {_default(spec)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _block(agent: Agent) -> str:
    return (
        f"{BEGIN.format(name=agent.name)}\n\n"
        f"{config_reference(agent)}\n"
        f"{END.format(name=agent.name)}"
    )


def update_blocks(text: str, agents: Iterable[Agent]) -> str:
    """``text`` with each agent's generated block rewritten (blocks not there are left out)."""
    for agent in agents:
        begin, end = BEGIN.format(name=agent.name), END.format(name=agent.name)
        start = text.find(begin)
        stop = text.find(end, start)
        if start >= 0 and stop >= 0:
            text = text[:start] + _block(agent) + text[stop + len(end) :]
    return text


def main(argv: list[str]) -> int:
    page = Path(argv[0] if argv else "docs/agents.md")
    registry = default_registry()
    page.write_text(update_blocks(page.read_text(encoding="utf-8"), registry), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
