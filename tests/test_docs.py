"""Checks that keep the docs honest: links resolve, named commands and the options written
after them exist, named RUNNER_AGENT_* settings are read by the code, references are complete
(every task field, every shipped agent's options and commands, how to write an agent), the
README links every topic page and states every exit code.

The docs may name only the CLI commands in DOC_COMMANDS, and each of them must be registered.
When a command is added to the CLI, add it here before the docs name it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from runner_agent.cli import cli
from runner_agent.core.resources import schema_path, shipped_roles_dir

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])

# The commands the docs may name as `runner-agent <command>`: registered ones only.
DOC_COMMANDS = (
    "agents",
    "validate",
    "run",
    "collect",
    "render",
    "plan",
    "dotenv",
    "dispatch",
    "status",
    "wait",
    "reports",
    "cancel",
    "schedule",
    "state",
    "summarize",
    "stackl",
    "history",
    "rollback",
    "job",
)
# Text that reads like `runner-agent <command>` but names no command, and what it is.
NOT_COMMANDS = {
    "cycle": "`runner-agent cycle <identity>`, the description of a cycle pipeline schedule",
    "report": "`runner-agent report`, the name the pipelines expose the HTML report under",
}

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MENTION = re.compile(r"(?<![\w./-])runner-agent[ \t]+([a-z][a-z0-9-]*)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _lines(page: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, inside a fenced code block) for every line of a page."""
    fenced = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            yield number, line, True
            continue
        yield number, line, fenced


def _prose(line: str) -> str:
    """A line without its inline code spans."""
    return _INLINE_CODE.sub("", line)


def _code(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, code text): fenced blocks whole, and the inline code spans of prose."""
    for number, line, fenced in _lines(page):
        if fenced:
            yield number, line
        else:
            for match in _INLINE_CODE.finditer(line):
                yield number, match.group(2)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, line, fenced in _lines(page):
        match = None if fenced else _HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path) -> Iterator[tuple[int, str]]:
    for number, line, fenced in _lines(page):
        if fenced:
            continue
        for match in _LINK.finditer(_prose(line)):
            yield number, match.group(1)


# The topics the docs must cover, each on its own page, each linked from the README.
TOPIC_PAGES = (
    "quickstart",
    "tasks",
    "agents",
    "lifecycle",
    "reports",
    "stackl",
    "scaling",
    "security",
    "agent-project",
    "dispatch",
    "architecture",
    "safety",
)


def test_the_pages_exist() -> None:
    names = {p.name for p in PAGES}
    for page in TOPIC_PAGES:
        assert f"{page}.md" in names, f"docs/{page}.md is missing"


def test_readme_links_every_topic_page() -> None:
    linked = {target.partition("#")[0] for _, target in _links(ROOT / "README.md")}
    missing = [p for p in TOPIC_PAGES if f"docs/{p}.md" not in linked]
    assert not missing, f"README.md's documentation list does not link: {missing}"


def test_writing_an_agent_is_documented() -> None:
    text = (DOCS / "agents.md").read_text(encoding="utf-8")
    section = _section(text, "Writing an agent")
    for needed in ("meta/runner_agent.yml", "meta/argument_specs.yml", "tasks/<command>.yml"):
        assert needed in section, f"docs/agents.md 'Writing an agent' does not explain {needed}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for number, target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_file():
            broken.append(f"{_rel(page)}:{number}: {target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{_rel(page)}:{number}: {target} (no heading #{fragment})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_doc_commands_are_registered() -> None:
    ctx = click.Context(cli)
    listed = set(cli.list_commands(ctx))
    for name in DOC_COMMANDS:
        assert name in listed, f"`runner-agent {name}` is not a registered command"
        assert cli.get_command(ctx, name) is not None, f"`runner-agent {name}` does not load"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_docs_name_only_known_commands(page: Path) -> None:
    unknown = [
        f"{_rel(page)}:{number}: runner-agent {match.group(1)}"
        for number, code in _code(page)
        for match in _MENTION.finditer(code)
        if match.group(1) not in DOC_COMMANDS and match.group(1) not in NOT_COMMANDS
    ]
    assert not unknown, (
        "commands the CLI does not have (or that are missing from DOC_COMMANDS):\n"
        + "\n".join(unknown)
    )


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


# Where a command line ends inside a code span or line: a shell separator or a comment.
_COMMAND_END = re.compile(r"\s(?:;|\||&&|>|2>|#)\s|;|\$\(")
_OPTION = re.compile(r"(--?[A-Za-z][\w-]*)(?:=.*)?")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_docs_name_only_options_the_commands_have(page: Path) -> None:
    """`runner-agent CMD ... --option`: every option written after a command is one of its own
    (or, for a group such as `schedule`, of the subcommand named next)."""
    ctx = click.Context(cli)
    unknown = []
    for number, code in _code(page):
        for match in _MENTION.finditer(code):
            command = cli.get_command(ctx, match.group(1))
            if command is None:
                continue  # test_docs_name_only_known_commands reports it
            words = _COMMAND_END.split(code[match.end() :], maxsplit=1)[0].split()
            if isinstance(command, click.Group) and words and words[0] in command.commands:
                command = command.commands[words[0]]
                words = words[1:]
            known = _options(command)
            for word in words:
                option = _OPTION.fullmatch(word.strip("[]'\"(),"))
                if option and option.group(1) not in known:
                    unknown.append(
                        f"{_rel(page)}:{number}: runner-agent {match.group(1)} {option.group(1)}"
                    )
    assert not unknown, "options the commands do not have:\n" + "\n".join(unknown)


_SETTING = re.compile(r"\bRUNNER_AGENT_[A-Z0-9_]+\b")


def test_docs_name_only_settings_the_code_reads() -> None:
    """Every RUNNER_AGENT_* variable the docs name appears in the package or its templates."""
    sources = [*(ROOT / "runner_agent").rglob("*.py"), *(ROOT / "templates").rglob("*")]
    read = set(
        _SETTING.findall("\n".join(p.read_text(encoding="utf-8") for p in sources if p.is_file()))
    )
    named = {
        (name, _rel(page))
        for page in PAGES
        for name in _SETTING.findall(page.read_text(encoding="utf-8"))
    }
    unknown = sorted(f"{page}: {name}" for name, page in named if name not in read)
    assert not unknown, "variables the code never reads:\n" + "\n".join(unknown)


def _schema_fields(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> list[str]:
    """Every property of the task schema, nested ones dotted (runner.tags)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    fields = []
    for name, sub in node.get("properties", {}).items():
        fields.append(prefix + name)
        fields.extend(_schema_fields(schema, sub, f"{prefix}{name}."))
    return fields


def test_every_task_field_is_documented() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    fields = _schema_fields(schema, schema["$defs"]["task"])
    assert {"identity", "agent", "runner.tags"} <= set(fields)
    text = (DOCS / "tasks.md").read_text(encoding="utf-8")
    missing = [f for f in fields if not re.search(rf"^\| `{re.escape(f)}` \|", text, re.M)]
    assert not missing, f"fields without a row in the docs/tasks.md field table: {missing}"


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/agents.md has no '## {heading}' section"
    return match.group(1)


SHIPPED = sorted(p for p in shipped_roles_dir().iterdir() if (p / "meta").is_dir())


@pytest.mark.parametrize("role", SHIPPED, ids=lambda p: p.name)
def test_every_option_and_command_of_a_shipped_agent_is_documented(role: Path) -> None:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    options = {
        name for entry in specs["argument_specs"].values() for name in (entry.get("options") or {})
    }
    commands = {
        p.stem
        for p in (role / "tasks").glob("*.yml")
        if not p.stem.startswith("_") and p.stem != "main"
    }
    assert options and commands
    section = _section((DOCS / "agents.md").read_text(encoding="utf-8"), role.name)
    no_row = sorted(o for o in options if not re.search(rf"^\| `{o}` \|", section, re.M))
    assert not no_row, f"{role.name} options without a row in docs/agents.md: {no_row}"
    unnamed = sorted(c for c in commands if f"`{c}`" not in section)
    assert not unnamed, f"{role.name} commands not named in docs/agents.md: {unnamed}"
