"""The plan's parts: which summary file each child pipeline's collect job uploads and which of
the dispatch's tasks it covers (``parts.json``, written by the plan job beside its pipeline and
never uploaded; the summarize job gets it with the plan job's artifacts). Pure: no network.

Also the canonical JSON every stored runner_agent document uses, and the dispatch id rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner_agent.core.errors import InvalidInput, Problem

__all__ = [
    "API_VERSION",
    "DISPATCH_ID",
    "PARTS_FILE",
    "SUMMARY_NAME",
    "Part",
    "Parts",
    "dump",
    "load_parts",
]

API_VERSION = "runner-agent/v1"
PARTS_FILE = "parts.json"
# what the agent project's spec:inputs accept, and a valid generic package version
DISPATCH_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# a collect job's summary: summary.json, or summary-<k>.json for part k of a split dispatch
SUMMARY_NAME = re.compile(r"^summary(-[0-9]{1,4})?\.json$")


def dump(data: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, compact, UTF-8): what runner_agent stores."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Part:
    """One child pipeline: the summary file its collect job uploads (``summary.json`` or
    ``summary-<k>.json``) and its tasks, as positions in the bundle."""

    summary: str
    tasks: tuple[int, ...]


@dataclass(frozen=True)
class Parts:
    """How the plan job split a dispatch, so the summarize job knows every summary file to
    read and whose tasks a missing one leaves without a report.

    Raises InvalidInput when a task is in no part or in several, or a file name is not a
    summary's: a wrong map would blame the wrong tasks.
    """

    dispatch_id: str
    tasks: int
    parts: tuple[Part, ...]

    def __post_init__(self) -> None:
        problems = [
            Problem(PARTS_FILE, f"{p.summary!r} is not a summary file name", field="summary")
            for p in self.parts
            if not SUMMARY_NAME.fullmatch(p.summary)
        ]
        if not DISPATCH_ID.fullmatch(self.dispatch_id):
            problems.append(Problem(PARTS_FILE, "not a dispatch id", field="dispatch_id"))
        names = [p.summary for p in self.parts]
        if len(set(names)) != len(names):
            problems.append(Problem(PARTS_FILE, "two parts name one summary", field="summary"))
        positions = sorted(i for p in self.parts for i in p.tasks)  # 0..tasks-1, each once
        if positions != list(range(len(positions))) or len(positions) != self.tasks:
            problems.append(Problem(PARTS_FILE, "a task in no part or in two", field="tasks"))
        if problems:
            raise InvalidInput(problems)

    def encode(self) -> bytes:
        return dump(
            {
                "apiVersion": API_VERSION,
                "kind": "Parts",
                "dispatch_id": self.dispatch_id,
                "tasks": self.tasks,
                "parts": [{"summary": p.summary, "tasks": list(p.tasks)} for p in self.parts],
            }
        )

    @classmethod
    def decode(cls, data: bytes, source: str = PARTS_FILE) -> Parts:
        """Raises InvalidInput when ``data`` is not a valid parts document."""
        try:
            doc = json.loads(data)
            if doc["apiVersion"] != API_VERSION or doc["kind"] != "Parts":
                raise ValueError(f"not a {API_VERSION} Parts document")
            parts = tuple(Part(str(p["summary"]), _positions(p["tasks"])) for p in doc["parts"])
            return cls(str(doc["dispatch_id"]), doc["tasks"], parts)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(Problem(source, f"not the plan job's parts: {exc}")) from exc
        except InvalidInput as exc:
            raise InvalidInput([replace(p, source=source) for p in exc.problems]) from exc


def _positions(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list) or any(type(v) is not int or v < 0 for v in values):
        raise ValueError("task positions are whole numbers")
    return tuple(values)


def load_parts(path: Path) -> Parts | None:
    """The plan job's ``parts.json`` at ``path``, or None when there is none (the summarize job
    run without the plan job's artifacts). Raises InvalidInput when it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(Problem(str(path), f"cannot be read: {exc}")) from exc
    return Parts.decode(data, str(path))
