"""The rendered pipeline as a picture: a Mermaid flowchart of its jobs and what they wait for.

GitLab draws Mermaid in Markdown (issues, merge requests, wikis, README files), so the graph
of a task set can sit beside the change that makes it. One box per child pipeline (a part of
a split task set); in it one node per task job, labelled with its tasks' identities and
commands (in the order the job runs them) and runner tags; an arrow for each job it waits
for: ``then`` for an identity's previous tasks (an identity cut by runner tags), ``outputs``
for an identity whose outputs it reads; and the collect job, which runs after all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from runner_agent.model.tasks import Task
from runner_agent.pipeline.render import RenderedPipeline

__all__ = ["mermaid", "mermaid_markdown"]

_NOT_JOBS = frozenset({"stages", "default", "variables", "workflow", "include", "spec"})


def mermaid(pipelines: Sequence[RenderedPipeline], tasks: Sequence[Task] = ()) -> str:
    """A Mermaid ``flowchart`` of the pipelines' jobs and their ``needs``; with the tasks
    rendered, the labels name their identity and command (a long job name is shortened)."""
    lines = ["flowchart LR"]
    for number, pipeline in enumerate(pipelines, start=1):
        lines.extend(_part(number, len(pipelines), pipeline, tasks))
    lines.append("  classDef collect fill:#f6f8fa,stroke:#8c959f,stroke-dasharray: 4 3")
    return "\n".join(lines) + "\n"


def mermaid_markdown(pipelines: Sequence[RenderedPipeline], tasks: Sequence[Task] = ()) -> str:
    """:func:`mermaid` in a fenced block, for a Markdown page GitLab renders."""
    return f"```mermaid\n{mermaid(pipelines, tasks)}```\n"


def _part(number: int, parts: int, pipeline: RenderedPipeline, tasks: Sequence[Task]) -> list[str]:
    jobs = _jobs(yaml.safe_load(pipeline.text) or {})
    ids = {name: f"p{number}j{k}" for k, name in enumerate(jobs)}
    known = {
        n: [tasks[i] for i in pipeline.job_tasks.get(n, (first,)) if i < len(tasks)]
        for n, first in pipeline.jobs.items()
        if first < len(tasks)
    }

    def identities(name: str) -> set[str]:
        if known.get(name):
            return {t.identity for t in known[name]}
        return {name.rsplit(":", 2)[0]}

    title = "child pipeline" if parts == 1 else f"child pipeline, part {number} of {parts}"
    lines = [f'  subgraph p{number}["{_text(title)}"]', "    direction LR"]
    task_jobs = [name for name in jobs if name in pipeline.jobs]
    lines.append(f'    subgraph p{number}t["tasks"]')
    for name in task_jobs:
        found = known.get(name)
        runs = (
            [(t.identity, t.command or "digest") for t in found]
            if found
            else [(name.rsplit(":", 2)[0], name.rsplit(":", 2)[-2])]
        )
        lines.append(f'      {ids[name]}["{_label(runs, jobs[name])}"]')
    for name in task_jobs:
        for need in _needs(jobs[name]):
            if need in ids:
                kind = "then" if identities(need) & identities(name) else "outputs"
                lines.append(f"      {ids[need]} -->|{kind}| {ids[name]}")
    lines.append("    end")
    for name in jobs:
        if name not in pipeline.jobs:  # the collect job: after every task job, whatever ended
            lines.append(f'    {ids[name]}["{_text(name)}<br/>after all, always"]:::collect')
            lines.append(f"    p{number}t -.-> {ids[name]}")
    lines.append("  end")
    return lines


def _jobs(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(name): job
        for name, job in document.items()
        if name not in _NOT_JOBS and not str(name).startswith(".") and isinstance(job, Mapping)
    }


def _needs(job: Mapping[str, Any]) -> list[str]:
    """The jobs of the same pipeline this job waits for (not the parent's plan job)."""
    found = []
    for need in job.get("needs") or []:
        if isinstance(need, str):
            found.append(need)
        elif isinstance(need, Mapping) and "pipeline" not in need and "job" in need:
            found.append(str(need["job"]))
    return found


def _label(runs: Sequence[tuple[str, str]], job: Mapping[str, Any]) -> str:
    """The job's tasks in order (identity, command), then its runner tags."""
    shown = []
    for identity, command in runs:
        if command == "digest":  # no command given: the state decides
            command = "digest: install or update"
        shown.append(f"<b>{_text(identity)}</b><br/>{_text(command)}")
    tags = ", ".join(str(t) for t in job.get("tags") or [])
    return "<br/>".join(shown) + (f"<br/><i>{_text(tags)}</i>" if tags else "")


def _text(value: str) -> str:
    """Text for a quoted Mermaid label: the characters Mermaid or HTML would read, as entities."""
    out = []
    for ch in value:
        if ch.isalnum() or ch in " ./_-:,@+=":
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)
