"""Reports on disk: what ``run --report`` and ``--dotenv`` write, a summary, and the reports
``collect`` reads from files and folders. Every file is replaced atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner_agent.core import fs, strict_json
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.tasks import Task
from runner_agent.report.model import (
    DOTENV_BYTES,
    DOTENV_MAX,
    Report,
    job_dotenv,
    junit,
    load_report,
    merge_reports,
)

__all__ = [
    "loads",
    "numbered_report_paths",
    "read_reports",
    "task_report_paths",
    "write_dotenv",
    "write_reports",
    "write_summary",
]


def task_report_paths(tasks: Sequence[Task], folder: Path) -> tuple[Path, ...]:
    """Each task's report in ``folder``, named after its task file (``0003.json`` for
    ``tasks/0003.json``; ``web-2.json`` for the third task of ``web.yml``): what
    ``run --report-dir`` writes. Raises InvalidInput when two tasks would share a name."""
    per_file: dict[str, int] = {}
    for task in tasks:
        per_file[task.source] = per_file.get(task.source, 0) + 1
    paths: list[Path] = []
    seen: dict[Path, str] = {}
    for task in tasks:
        stem = Path(task.source).stem
        name = f"{stem}.json" if per_file[task.source] == 1 else f"{stem}-{task.document}.json"
        path = folder / name
        if path in seen:
            raise InvalidInput(
                Problem(
                    "--report-dir", f"{task.where} and {seen[path]} would both report to {path}"
                )
            )
        seen[path] = task.where
        paths.append(path)
    return tuple(paths)


def numbered_report_paths(count: int, folder: Path) -> tuple[Path, ...]:
    """``count`` reports in ``folder`` named by position, ``0000.json`` on (wider past 10,000):
    the names a rendered pipeline's task jobs give them, after the task files the plan job
    writes (pipeline/render.py), so the one job of a small dispatch keeps the same files."""
    width = max(4, len(str(count - 1)))
    return tuple(folder / f"{i:0{width}d}.json" for i in range(count))


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """The summary JSON (``merge_reports``) at ``path``, folders made. Raises OSError."""
    fs.write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def write_reports(path: Path, reports: Sequence[Report]) -> None:
    """One task's report at ``path`` (a summary for several) and the JUnit XML beside it
    (``.junit.xml``). Raises OSError."""
    if len(reports) == 1:
        reports[0].write(path)
        return
    write_summary(path, merge_reports(reports))
    fs.write_text(path.with_name(path.name.removesuffix(".json") + ".junit.xml"), junit(reports))


def write_dotenv(path: Path, reports: Report | Sequence[Report]) -> None:
    """The tasks' statuses and outputs as one GitLab dotenv report (one per job), within
    GitLab's limits: a task whose variables do not fit gets a note in its report saying which
    are left out, so nothing is cut silently. Raises OSError."""
    batch = [reports] if isinstance(reports, Report) else list(reports)
    text, left = job_dotenv([r.to_dict() for r in batch])
    for report, names in zip(batch, left, strict=True):
        if names:
            report.notes.append(
                f"dotenv: {', '.join(names)} left out of the job's dotenv report (GitLab reads "
                f"at most {DOTENV_MAX} variables and under {DOTENV_BYTES} bytes per job); "
                "this report keeps every output"
            )
    fs.write_text(path, text)


loads = strict_json.loads  # reports: RFC 8259 JSON (core/strict_json.py)


def read_reports(paths: Sequence[Path]) -> list[Report]:
    """Reports from files (a summary's reports too) and folders (task reports only, so a
    summary kept beside them is not counted twice). Raises InvalidInput naming the file
    that is not a report."""
    files: list[tuple[Path, bool]] = []
    for p in paths:
        found = [(f, False) for f in sorted(p.rglob("*.json"))] if p.is_dir() else [(p, True)]
        files.extend(found)
    reports: list[Report] = []
    for f, named in files:
        try:
            data: Any = loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise InvalidInput(Problem(str(f), f"not a report: {exc}")) from exc
        if isinstance(data, dict) and "reports" in data and not named:
            continue
        if named and not isinstance(data, dict):
            raise InvalidInput(Problem(str(f), f"not a report: {type(data).__name__}"))
        items = data.get("reports", [data]) if isinstance(data, dict) else []
        try:
            reports.extend(load_report(item) for item in items)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(Problem(str(f), f"not a report: missing or bad {exc}")) from exc
    return reports
