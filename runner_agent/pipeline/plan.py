"""The files ``runner-agent render --file``, ``plan`` and ``dotenv`` write.

``plan`` is the parent pipeline's plan job: its inputs (a task file in the repository, an
identity, or a dispatch id and checksum) in, the child pipeline and its task files out; for a
dispatch also ``parts.json``, the summarize job's map of the parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner_agent.core import fs
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.tasks import Task, load_tasks, tasks_from_data, with_command
from runner_agent.pipeline.parts import PARTS_FILE, Part, Parts
from runner_agent.pipeline.render import RenderOptions, render_child, render_index

if TYPE_CHECKING:
    from runner_agent.model.agents import AgentRegistry

__all__ = ["PlanInputs", "Written", "plan", "plan_dispatch", "workdir_for", "write_pipelines"]


@dataclass(frozen=True)
class Written:
    """What was written: the entry pipeline (the one to include or trigger) and every file."""

    entry: str
    files: tuple[str, ...]
    pipelines: int
    tasks: int
    # per pipeline, in order: where its collect job writes the summary -> its tasks' positions
    summaries: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "pipelines": self.pipelines,
            "tasks": self.tasks,
            "files": list(self.files),
        }


def workdir_for(file: Path, project_dir: Path) -> str:
    """FILE's folder relative to the project directory: where task files and reports live."""
    try:
        rel = file.resolve().parent.relative_to(project_dir.resolve())
    except ValueError as exc:
        raise InvalidInput(
            Problem(str(file), f"must be inside the project directory {project_dir}")
        ) from exc
    if not rel.parts:
        raise InvalidInput(
            Problem(str(file), "put it in a folder of the project, such as .runner-agent/")
        )
    return rel.as_posix()


def write_pipelines(
    tasks: Sequence[Task], file: Path, *, project_dir: Path, options: RenderOptions
) -> Written:
    """Render and write FILE, its parts FILE-1.yml... when split, and the task files.

    Layout, FILE being ``<dir>/<name>.yml`` and ``<dir>`` relative to the project directory
    the jobs run in: ``<dir>/tasks/NNNN.json`` one task file per job; with several pipelines
    ``<dir>/<name>-1.yml``... are the parts and FILE the pipeline that triggers them. The jobs
    write ``<dir>/reports/NNNN.json`` (+ ``.junit.xml``, ``.env``) and the collect job
    ``<dir>/summary.json`` (``summary-K.json`` for part K). Raises InvalidInput.
    """
    opts = replace(options, workdir=workdir_for(file, project_dir))
    pipelines = render_child(tasks, opts)
    root = project_dir.resolve()
    out: dict[str, str | bytes] = {}
    for p in pipelines:
        out.update(p.task_files)
    rel = file.resolve().relative_to(root).as_posix()
    if len(pipelines) == 1:
        out[rel] = pipelines[0].text
    else:
        stem, dot, ext = rel.rpartition(".")
        parts = [f"{stem}-{n}.{ext}" if dot else f"{rel}-{n}" for n in range(1, len(pipelines) + 1)]
        out.update(zip(parts, (p.text for p in pipelines), strict=True))
        out[rel] = render_index(
            parts,
            tasks_from_job=opts.tasks_from_job,
            tags=opts.default_tags,
            validate=opts.validate,
            variables=opts.variables,
        )
    for name, data in out.items():
        path = root / name
        raw = data.encode("utf-8") if isinstance(data, str) else data
        # pipeline YAML is meant to be read (committed, included); task files keep the config
        fs.write_bytes(path, raw, mode=fs.PUBLIC if name.endswith(".yml") else fs.PRIVATE)
    summaries = {p.summary: p.tasks for p in pipelines}
    return Written(rel, tuple(sorted(out)), len(pipelines), len(tasks), summaries)


@dataclass(frozen=True)
class PlanInputs:
    """The parent pipeline's inputs: a dispatch, a task file, or one identity's tasks."""

    dispatch_id: str = ""
    checksum: str = ""
    task_file: str = ""
    identity: str = ""
    agent: str = ""
    command: str = ""
    tasks_dir: str = "tasks"  # where an identity's tasks are looked up in the repository

    def source(self) -> str:
        """The one source given: ``dispatch_id``, ``task_file`` or ``identity``. Raises
        InvalidInput when the inputs name none or several."""
        chosen = [n for n in ("dispatch_id", "task_file", "identity") if getattr(self, n)]
        if len(chosen) != 1:
            raise InvalidInput(
                Problem("inputs", "give exactly one of dispatch_id, task_file, identity (+ agent)")
            )
        return chosen[0]


def _inside(project_dir: Path, name: str, what: str) -> Path:
    path = (project_dir / name).resolve()
    if not path.is_relative_to(project_dir.resolve()):
        raise InvalidInput(Problem(what, f"{name!r} is not inside the project"))
    return path


def _identity_tasks(inputs: PlanInputs, project_dir: Path, registry: AgentRegistry) -> list[Task]:
    """The identity's tasks as the repository declares them, with the command asked for.

    Without any, a task of just identity, agent and command: enough for agents whose command
    needs no config.
    """
    folder = _inside(project_dir, inputs.tasks_dir, "tasks_dir")
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml", ".json"))
    found = [t for t in load_tasks(files, registry) if t.identity == inputs.identity]
    if not found:
        item = {"identity": inputs.identity, "agent": inputs.agent}
        return tasks_from_data(
            [item | ({"command": inputs.command} if inputs.command else {})], "inputs", registry
        )
    if inputs.agent and any(t.agent != inputs.agent for t in found):
        raise InvalidInput(Problem("inputs.agent", f"{inputs.identity} uses {found[0].agent}"))
    if not inputs.command:
        return found
    return with_command(found, inputs.command, registry)


def plan(
    inputs: PlanInputs,
    file: Path,
    *,
    project_dir: Path,
    options: RenderOptions,
    registry: AgentRegistry,
) -> Written:
    """The plan job for a source in the repository: ``task_file`` (a file of the repository)
    or ``identity`` (its tasks in ``tasks_dir``, the command replaced when one is given).

    A ``dispatch_id`` is the caller's to fetch (the bundle lives in GitLab, a layer above):
    it passes the verified tasks to :func:`plan_dispatch`. Raises InvalidInput when the
    inputs name no source, several, a dispatch, or a bad one.
    """
    source = inputs.source()
    if source == "dispatch_id":
        raise InvalidInput(Problem("inputs.dispatch_id", "a dispatch is planned by plan_dispatch"))
    if source == "task_file":
        tasks = load_tasks([_inside(project_dir, inputs.task_file, "inputs.task_file")], registry)
    else:
        tasks = _identity_tasks(inputs, project_dir, registry)
    return write_pipelines(tasks, file, project_dir=project_dir, options=options)


def plan_dispatch(
    tasks: Sequence[Task],
    dispatch_id: str,
    file: Path,
    *,
    project_dir: Path,
    options: RenderOptions,
) -> Written:
    """The plan job for a dispatch: its bundle's ``tasks`` (fetched and verified by the caller)
    into the child pipelines, which get ``RA_DISPATCH_ID``, and ``parts.json`` beside FILE.
    Raises InvalidInput."""
    variables = {**options.variables, "RA_DISPATCH_ID": dispatch_id}
    written = write_pipelines(
        tasks, file, project_dir=project_dir, options=replace(options, variables=variables)
    )
    return _write_parts(written, dispatch_id, file, project_dir)


def _write_parts(written: Written, dispatch_id: str, file: Path, project_dir: Path) -> Written:
    """``parts.json`` beside FILE: the summary file and the tasks of each part, so the
    summarize job (which gets the plan job's artifacts) reads every part's summary, and knows
    whose tasks a missing one leaves without a report, without guessing how many there are."""
    parts = Parts(
        dispatch_id,
        written.tasks,
        tuple(Part(Path(name).name, tasks) for name, tasks in written.summaries.items()),
    )
    path = file.resolve().parent / PARTS_FILE
    fs.write_bytes(path, parts.encode())
    rel = path.relative_to(project_dir.resolve()).as_posix()
    return replace(written, files=tuple(sorted((*written.files, rel))))
