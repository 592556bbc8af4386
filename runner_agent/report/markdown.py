"""A plan as Markdown: what dry runs would change, for the person who approves it in GitLab.

``runner-agent collect --markdown plan.md`` writes it in a ``dispatch --plan`` pipeline; the
plan job links it from merge requests (``expose_as``). One table of added, changed and removed
keys per identity and host, in GitLab Flavored Markdown (doc/user/markdown.md, "Tables").

Every value that came from a task or an endpoint is written as JSON text (ASCII only, so no
newline, control character or invisible character survives) inside a code span whose fence is
longer than any run of backticks in it, with ``|`` escaped as ``\\|`` (GFM tables split cells
on unescaped pipes, even inside code spans). A code span is literal text: no link, image,
autolink, emphasis or HTML can start inside it, so a hostile key or value can neither break
the table nor inject a link. Secrets arrive already masked (``********``) in the reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner_agent.core import fs
from runner_agent.report.model import Report

__all__ = ["MAX_CELL", "code_cell", "plan_markdown", "write_markdown"]

MAX_CELL = 200  # characters of a value shown in a cell; the HTML page and the JSON keep all
MAX_ROWS = 500  # rows per plan; the rest is counted, and is in the plan's JSON
_PLAIN = re.compile(r"[A-Za-z0-9_./:@-]{1,200}")
_TICKS = re.compile(r"`+")
_SIGN = {"added": "added", "changed": "changed", "removed": "removed"}


def _text(value: Any) -> str:
    """A value as ASCII JSON, cut to MAX_CELL characters."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True, default=str)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def code_cell(text: str) -> str:
    """``text`` (printable ASCII, no newline) as a code span that is safe in a table cell."""
    longest = max((len(m) for m in _TICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _name(value: str) -> str:
    """Identities, hosts and keys as they are when plain, as JSON text otherwise."""
    return code_cell(value if _PLAIN.fullmatch(value) else _text(value))


def _side(item: Mapping[str, Any], side: str) -> str:
    return code_cell(_text(item[side])) if side in item else ""


def _rows(reports: Sequence[Report]) -> tuple[list[str], int]:
    rows: list[str] = []
    total = 0
    for report in reports:
        for host, items in report.key_changes.items():
            for item in items:
                total += 1
                if len(rows) >= MAX_ROWS:
                    continue
                change = _SIGN.get(str(item.get("change", "")), "?")
                cells = [
                    _name(report.identity),
                    _name(host),
                    _name(str(item.get("key", ""))),
                    change,
                    _side(item, "before"),
                    _side(item, "after"),
                ]
                rows.append("| " + " | ".join(cells) + " |")
    return rows, total


def plan_markdown(reports: Sequence[Report], title: str = "runner-agent plan") -> str:
    """The plan of these dry-run reports: a count, one row per key change, and the tasks
    whose dry run did not succeed (their changes are unknown)."""
    rows, total = _rows(reports)
    counts = {c: 0 for c in _SIGN}
    for report in reports:
        for items in report.key_changes.values():
            for item in items:
                change = str(item.get("change", ""))
                if change in counts:
                    counts[change] += 1
    lines = [f"# {title}", ""]
    lines.append(
        f"{len(reports)} task(s): {counts['added']} key(s) added, {counts['changed']} changed, "
        f"{counts['removed']} removed. Secret values show as `********`."
    )
    lines.append("")
    if rows:
        lines.append("| identity | host | key | change | before | after |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        lines.extend(rows)
        if total > len(rows):
            lines.extend(["", f"... and {total - len(rows)} more change(s): see plan.json."])
    else:
        lines.append("Nothing would change.")
    bad = [r for r in reports if r.status.value not in ("success", "skipped")]
    if bad:
        lines.extend(["", "## Dry runs that did not succeed (do not approve blindly)", ""])
        lines.extend(f"- {_name(r.identity)}: {code_cell(_text(r.status.value))}" for r in bad)
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, reports: Sequence[Report]) -> None:
    """Write :func:`plan_markdown` to ``path`` (folders made, replaced atomically). Raises
    UnsafePath (an InvalidInput) when it cannot be written."""
    fs.write_text(path, plan_markdown(reports))
