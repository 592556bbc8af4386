"""Data stays data: values that would break YAML, a shell line or GitLab come out literally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import Task, load_tasks
from runner_agent.pipeline import render
from runner_agent.pipeline.grouping import lock_shard
from runner_agent.pipeline.render import (
    RenderOptions,
    job_name,
    render_child,
    resource_group,
    to_yaml,
)

FIXTURES = Path(__file__).parent / "fixtures"

NASTY = [
    'it\'s "quoted"',
    "key: value",
    "# not a comment",
    "trailing #",
    "line one\nline two",
    "crlf\r\nline",
    "tab\there",
    "${VAR}",
    "$VAR",
    "$$escaped",
    "$(rm -rf /)",
    "`id`",
    "!reference [.secret, script]",
    "&anchor",
    "*alias",
    "<<: *x",
    "{a: b}",
    "[a, b]",
    "? complex",
    "- item",
    "%TAG ! tag:x",
    "@at",
    "null",
    "~",
    "yes",
    "No",
    "on",
    "y",
    "123",
    "0x1F",
    "1:20",
    "1e3",
    ".inf",
    ".Inf",
    ".5",
    "..",
    "/5",
    ".runner-agent/tasks/0001.json",
    "2001-12-14",
    "=",
    "",
    " leading and trailing ",
    "zürich 日本 שלום",
    "🚀 astral",
    "\u2028line separator\u2029",
    "\x85next line",
    "\ufeffbom",
    "\x00nul\x07bell\x1bescape",
    "back\\slash",
    "x" * 20_000,
    "acme/web:update:3",
]

LOADERS = [yaml.SafeLoader, yaml.CSafeLoader]  # PyYAML and libyaml (what GitLab's Psych wraps)


@pytest.mark.parametrize("value", NASTY, ids=range(len(NASTY)))
@pytest.mark.parametrize("loader", LOADERS, ids=["pyyaml", "libyaml"])
def test_scalar_reads_back_as_is(value: str, loader: type[yaml.SafeLoader]) -> None:
    text = f"block: {to_yaml(value)}\nflow: {to_yaml([value, {value: value}])}\n"
    assert yaml.load(text, Loader=loader) == {"block": value, "flow": [value, {value: value}]}
    assert "\n" not in to_yaml(value)
    assert to_yaml(value).isascii()


@pytest.mark.parametrize("value", [0, -1, 2.5, True, False, None])
def test_other_scalars_keep_their_type(value: Any) -> None:
    assert yaml.safe_load(f"v: {to_yaml(value)}") == {"v": value}


def test_templates_cannot_place_raw_values() -> None:
    env = render._environment()
    with pytest.raises(jinja2.TemplateError, match="without the yaml filter"):
        env.from_string("job: {{ name }}").render(name="x: y")
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("job: {{ missing | yaml }}").render()
    assert env.from_string("job: {{ name | yaml }}").render(name="x: y") == 'job: "x: y"'


def _effective(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return {**doc.get("default", {}), **doc[name]}


def test_tags_come_out_literally() -> None:
    tags = tuple(v for v in NASTY if v)
    task = Task("acme/web", "kv_file", "update", tags=tags)
    (pipeline,) = render_child([task])
    for loader in LOADERS:
        doc = yaml.load(pipeline.text, Loader=loader)
        # a job's tags are a set to GitLab: grouping.py orders them
        assert doc["acme/web:update:0"]["tags"] == sorted(tags)
        assert doc["runner-agent-collect"]["tags"] == sorted(tags)


IDENTITIES = [v for v in NASTY if v] + ["a" * 300 + "1", "a" * 300 + "2", ".hidden", "stages"]


def test_identities_never_enter_yaml_raw_but_reach_the_job_exactly() -> None:
    tasks = [Task(identity, "kv_file", "update") for identity in IDENTITIES]
    (pipeline,) = render_child(tasks)
    doc = yaml.load(pipeline.text, Loader=yaml.CSafeLoader)
    names = [n for n in doc if n not in ("stages", "default", "runner-agent-collect")]
    assert len(names) == len(tasks) == len(set(names))
    for name in names:
        job = doc[name]
        assert len(name) <= 255 and not name.startswith(".")
        assert set(name) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:~-"
        )
        assert "$" not in job["resource_group"] and len(job["resource_group"]) <= 255
        # the job's script names its task file; the file holds the identity exactly
        task_path = job["script"][0].split("'")[1]
        data = json.loads(pipeline.task_files[task_path])
        assert data == tasks[pipeline.jobs[name]].to_dict()
        assert data["identity"] == IDENTITIES[pipeline.jobs[name]]


def test_long_identities_keep_distinct_hashed_names() -> None:
    a, b = "a" * 300 + "1", "a" * 300 + "2"
    assert job_name(a, "update", 7) != job_name(b, "update", 7)
    assert len(job_name(a, "update", 7)) == 255 and job_name(a, "update", 7).endswith(":7")
    # the lock is the identity's shard (docs/decisions.md): stable, and within the shard count
    assert resource_group("acme/web") == resource_group("acme/web") == lock_shard("acme/web", 16)
    shards = {resource_group(f"acme/{n}", 4) for n in range(200)}
    assert shards == {f"runner-agent/shard-{n:03d}" for n in range(4)}


def test_config_values_travel_only_in_task_files() -> None:
    (task,) = load_tasks([FIXTURES / "nasty_config.yml"], default_registry())
    long_value = "L" * 100_000
    task = Task(**{**task.__dict__, "config": {**task.config, "long": long_value}})
    (pipeline,) = render_child([task])
    (data,) = [json.loads(b) for b in pipeline.task_files.values()]
    assert data["config"] == {**task.config, "long": long_value}
    assert data["config"]["values"]["subshell"] == "$(touch /tmp/pwned)"
    for value in task.config["values"].values():
        assert value not in pipeline.text
    assert long_value not in pipeline.text
    doc = yaml.load(pipeline.text, Loader=yaml.CSafeLoader)
    assert doc["acme/nasty:update:0"]["tags"] == sorted(task.tags)
    assert "variables" not in doc["acme/nasty:update:0"]


def test_script_lines_hold_only_paths_we_made() -> None:
    tasks = [Task("x'; rm -rf / #", "kv_file", "update"), Task("$(id)", "kv_file")]
    (pipeline,) = render_child(tasks, RenderOptions(runner_agent_cmd="python3 -m runner_agent"))
    doc = yaml.safe_load(pipeline.text)
    for name in pipeline.jobs:
        script = " ".join(doc[name]["script"])
        assert "rm -rf" not in script and "$(id)" not in script
        assert "python3 -m runner_agent run '.runner-agent/tasks/000" in script


def test_unencodable_text_is_refused() -> None:
    from runner_agent.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="JSON task file"):
        render_child([Task("acme/web", "kv_file", config={"bad": "\udc80"})])
