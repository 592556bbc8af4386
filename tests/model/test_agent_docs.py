"""docs/agents.md's config references are generated from the argument specs, and match them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner_agent.model.agent_docs import BEGIN, END, config_reference, update_blocks
from runner_agent.model.agents import Agent, Command, default_registry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agents.md"
SHIPPED = [a for a in default_registry([]) if "ansible_collections" in str(a.path)]


def _agent(**options: dict[str, object]) -> Agent:
    commands = {name: Command(name, options=options) for name in ("install", "update", "uninstall")}
    return Agent("demo", Path("demo"), "1", "a demo", commands)


@pytest.mark.parametrize("agent", SHIPPED, ids=lambda a: a.name)
def test_the_docs_hold_each_shipped_agents_reference_as_generated(agent: Agent) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert BEGIN.format(name=agent.name) in text, f"docs/agents.md has no block for {agent.name}"
    assert update_blocks(text, [agent]) == text, (
        f"the {agent.name} reference in docs/agents.md differs from its argument specs: run "
        "python -m runner_agent.model.agent_docs docs/agents.md"
    )


def test_every_shipped_agent_is_found() -> None:
    assert {a.name for a in SHIPPED} == {"kv_etcd", "kv_file", "kv_http", "kv_redis"}


def test_a_row_gives_type_requirement_default_and_choices() -> None:
    table = config_reference(
        _agent(
            fmt={"type": "str", "default": "json", "choices": ["json", "ini"], "description": "x"},
            url={"type": "str", "required": True, "description": ["The", "URL."]},
        )
    )
    assert "| `fmt` | str |  | `json` | one of `json`, `ini`; x |" in table
    assert "| `url` | str | all |  | The URL. |" in table


def test_secrets_and_aliases_are_said() -> None:
    table = config_reference(
        _agent(
            token={"type": "str", "no_log": True, "description": "t"},
            key={"type": "str", "aliases": ["prefix"], "description": "k"},
        )
    )
    assert "| `token` | str |  |  | t Secret: never logged. |" in table
    assert "| `key` | str |  |  | k (alias: `prefix`) |" in table


def test_a_pipe_in_a_description_does_not_break_the_table() -> None:
    table = config_reference(_agent(mode={"type": "str", "description": "a|b"}))
    assert "a\\|b" in table


def test_update_rewrites_only_the_marked_block() -> None:
    agent = _agent(url={"type": "str", "description": "u"})
    begin, end = BEGIN.format(name="demo"), END.format(name="demo")
    text = f"before\n{begin}\nstale\n{end}\nafter\n"
    updated = update_blocks(text, [agent])
    assert updated.startswith("before\n") and updated.endswith("after\n")
    assert "stale" not in updated and config_reference(agent) in updated
