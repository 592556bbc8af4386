"""The pipeline as a Mermaid picture: every job a node, every `needs` an arrow, parts boxed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import Task, tasks_from_data
from runner_agent.pipeline.graph import mermaid, mermaid_markdown
from runner_agent.pipeline.render import RenderOptions, render_child

_NODE = re.compile(r'^\s+(p\d+j\d+)\["(.*)"\]')
_EDGE = re.compile(r"^\s+(p\d+j\d+) -->\|(then|outputs)\| (p\d+j\d+)$")


def kv(identity: str, **extra: Any) -> dict[str, Any]:
    config = {"path": f"/tmp/graph/{identity}.json", "values": {"k": "v"}}
    return {"identity": identity, "agent": "kv_file", "config": config, **extra}


def tasks() -> list[Task]:
    items = [
        kv("acme/web", command="install", runner={"tags": ["dc1"]}),
        kv("acme/cache"),
        kv("acme/web", command="update", runner={"tags": ["dc1"]}),
        {
            **kv("acme/app"),
            "outputs_from": ["acme/cache"],
            "config": {"path": "/tmp/app.json", "values": {"p": "${outputs:acme/cache:path}"}},
        },
    ]
    return tasks_from_data(items, "<test>", default_registry())


def parse(text: str) -> tuple[dict[str, str], set[tuple[str, str, str]]]:
    """Node id -> label, and (from label, kind, to label) edges."""
    nodes = {m[1]: m[2] for line in text.splitlines() if (m := _NODE.match(line))}
    edges = {
        (nodes[m[1]], m[2], nodes[m[3]]) for line in text.splitlines() if (m := _EDGE.match(line))
    }
    return nodes, edges


def test_every_job_is_a_node_and_every_need_an_arrow() -> None:
    items = tasks()
    pipelines = render_child(items, RenderOptions())
    text = mermaid(pipelines, items)
    assert text.startswith("flowchart LR\n")
    nodes, edges = parse(text)
    labels = sorted(nodes.values())
    # acme/web's two tasks share one job: one node naming both, in the order they run
    web = "<b>acme/web</b><br/>install<br/><b>acme/web</b><br/>update<br/><i>dc1</i>"
    assert labels == [
        "<b>acme/app</b><br/>digest: install or update",
        "<b>acme/cache</b><br/>digest: install or update",
        web,
        "runner-agent-collect<br/>after all, always",
    ]
    cache, app = (
        "<b>acme/cache</b><br/>digest: install or update",
        "<b>acme/app</b><br/>digest: install or update",
    )
    assert edges == {(cache, "outputs", app)}
    # the same picture as the pipeline GitLab runs: one arrow per `needs` inside it
    doc = yaml.safe_load(pipelines[0].text)
    inside = [n for j in pipelines[0].jobs for n in doc[j].get("needs", []) if "pipeline" not in n]
    assert len(inside) == len(edges)


def test_without_the_tasks_the_labels_come_from_the_job_names() -> None:
    items = [t for t in tasks() if t.identity != "acme/web"]  # one task per job
    pipelines = render_child(items, RenderOptions())
    assert mermaid(pipelines) == mermaid(pipelines, items)


def test_an_identity_cut_by_runner_tags_draws_a_then_arrow() -> None:
    items = tasks_from_data(
        [kv("acme/web", runner={"tags": ["dc1"]}), kv("acme/web", runner={"tags": ["dc2"]})],
        "<t>",
        default_registry(),
    )
    _, edges = parse(mermaid(render_child(items, RenderOptions(tasks_per_job=20)), items))
    assert {kind for _, kind, _ in edges} == {"then"}


def test_a_split_task_set_draws_one_box_per_part() -> None:
    pipelines = render_child(tasks(), RenderOptions(max_jobs=3))
    text = mermaid(pipelines)
    assert len(pipelines) > 1
    titles = re.findall(r'subgraph p\d+\["([^"]+)"\]', text)
    assert (
        titles
        == [f"child pipeline, part {n} of {len(pipelines)}" for n in range(1, 4)][: len(pipelines)]
    )
    assert text.count(":::collect") == len(pipelines)
    _, edges = parse(text)
    assert {kind for _, kind, _ in edges} == {"outputs"}  # kept inside their part


def test_labels_cannot_break_out_of_their_quotes() -> None:
    from runner_agent.pipeline.graph import _text

    assert _text('a"b]<x>|c;') == "a#34;b#93;#60;x#62;#124;c#59;"


def test_render_graph_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "tasks.yml"
    items.write_text(yaml.safe_dump([kv("acme/web"), kv("acme/web", command="update")]))
    page = tmp_path / "docs" / "pipeline.md"
    assert main(["render", str(items), "--graph", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "acme/web:digest:0+1" in printed  # the YAML, as without --graph
    text = page.read_text()
    assert text.startswith("```mermaid\nflowchart LR\n") and text.endswith("```\n")
    pipelines = render_child(
        tasks_from_data(yaml.safe_load(items.read_text()), "<t>", default_registry()),
        RenderOptions(),
    )
    listed = tasks_from_data(yaml.safe_load(items.read_text()), "<t>", default_registry())
    assert text == mermaid_markdown(pipelines, listed)
    assert main(["render", str(items), "--graph", "-"]) == 0
    only = capsys.readouterr().out
    assert only.startswith("flowchart LR\n") and "stages:" not in only  # the picture alone
    assert main(["render", str(items), "--graph", str(tmp_path / "pipeline.mmd")]) == 0
    assert (tmp_path / "pipeline.mmd").read_text().startswith("flowchart LR\n")
