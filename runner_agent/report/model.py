"""Reports: what one task's run did, as JSON, JUnit XML, dotenv and a table.

A report is built from the runtime's per-command results and never holds a secret: the runtime
masks them before it builds one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from runner_agent.core import fs
from runner_agent.core.redact import MASK, Redactor
from runner_agent.model.identity import is_identity
from runner_agent.model.tasks import dotenv_prefix

__all__ = [
    "CommandResult",
    "FailedTask",
    "HostStats",
    "Report",
    "Status",
    "TaskResult",
    "account_for",
    "change_line",
    "compose_changes",
    "diff_lines",
    "dotenv",
    "job_dotenv",
    "load_report",
    "load_reports",
    "masked",
    "merge_reports",
    "printable",
    "table",
]

# GitLab refuses a job's whole dotenv report (HTTP 400 on the artifact upload: no variable
# reaches a later job) with more variables than the plan's `dotenv_variables` limit, 20 by
# default on Self-Managed, or a file not smaller than `dotenv_size`, 5 KB by default
# (doc/administration/instance_limits.md, "Limit dotenv variables", "Limit dotenv file size";
# app/services/ci/parse_dotenv_artifact_service.rb: `file.size < dotenv_size_limit`,
# "Dotenv files cannot have more than N variables"). The limit is per job, not per task.
DOTENV_MAX = 20
DOTENV_BYTES = 5120  # the file must stay below it
_DOTENV_KEY = re.compile(r"[^A-Za-z0-9_]")
# what ends a line for a reader of lines (Ruby's String#lines and Python's splitlines alike)
_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# XML 1.0 characters (https://www.w3.org/TR/xml/#charsets): anything else cannot be written
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Status(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    LOCKED = "locked"


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class FailedTask:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass(frozen=True)
class TaskResult:
    """One Ansible task on one host: a JUnit test case."""

    host: str
    task: str
    outcome: str  # ok, changed, failed, unreachable, skipped
    duration: float = 0.0
    message: str = ""


@dataclass
class CommandResult:
    command: str
    status: Status
    rc: int | None = None
    hosts: dict[str, HostStats] = field(default_factory=dict)
    failed_tasks: list[FailedTask] = field(default_factory=list)
    results: list[TaskResult] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    duration: float = 0.0
    error: str = ""
    timed_out: bool = False
    check_mode: bool = False
    # per host: [{key, change, before, after}] written or removed (would be, in check mode)
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Report:
    identity: str
    agent: str
    version: str | None
    status: Status
    commands: list[CommandResult] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    duration: float = 0.0
    error: str = ""
    timed_out: bool = False
    source: str = ""
    pipeline_url: str = ""
    job_url: str = ""
    check: bool = False  # a dry run (run --check): nothing written, changes say what would be
    revision: int | None = None  # the revision the run recorded (runner-agent history)
    conflicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rollback: left
    notes: list[str] = field(default_factory=list)  # what the report's reader should know

    @property
    def changed(self) -> int:
        """Changes made; a check-mode command (cycle) only says what it would change."""
        return sum(h.changed for c in self.commands if not c.check_mode for h in c.hosts.values())

    @property
    def failed(self) -> int:
        return sum(h.failed + h.unreachable for c in self.commands for h in c.hosts.values())

    @property
    def drift(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for c in self.commands:
            for host, items in c.drift.items():
                out.setdefault(host, []).extend(items)
        return out

    @property
    def key_changes(self) -> dict[str, list[dict[str, Any]]]:
        """Per host, what the commands did to each key, taken together (would have, in check
        mode): the value before the first command that touched it, after the last one."""
        return compose_changes(c.changes for c in self.commands)

    def to_dict(self, *, results: bool = False) -> dict[str, Any]:
        """The report as JSON-ready data; per-task results only when asked (JUnit has them)."""
        data = asdict(self)
        data["commands_run"] = [c.command for c in self.commands]
        data["changed"] = self.changed
        data["failed"] = self.failed
        data["drift"] = self.drift
        data["key_changes"] = self.key_changes
        if not results:
            for c in data["commands"]:
                c.pop("results", None)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def write(self, path: Path) -> tuple[Path, Path]:
        """Write the report JSON to ``path`` and the JUnit XML beside it; return both paths.
        Raises UnsafePath (see runner_agent.core.fs)."""
        junit_path = path.with_name(path.name.removesuffix(".json") + ".junit.xml")
        fs.write_text(path, self.to_json())
        fs.write_text(junit_path, junit([self]))
        return path, junit_path


def masked(report: Report, redactor: Redactor) -> Report:
    """A copy of ``report`` with ``redactor``'s secrets masked in its free text: errors,
    messages, Ansible task names, and the values of outputs, drift, changes and conflicts.
    Names and words the report is made of (identity, agent, command, status, host, keys) are
    left as they are, so masking never changes a report's shape, whatever the secret."""
    if not redactor:
        return report
    text = redactor.text

    def command(c: CommandResult) -> CommandResult:
        return replace(
            c,
            failed_tasks=[
                replace(f, task=text(f.task), message=text(f.message)) for f in c.failed_tasks
            ],
            results=[replace(r, task=text(r.task), message=text(r.message)) for r in c.results],
            outputs=redactor.values(c.outputs),
            # a drift or change entry's key is a name, like an output's: only the values
            # (change, before, after) are text
            drift=_mask_entries(c.drift, redactor),
            changes=_mask_entries(c.changes, redactor),
            error=text(c.error),
        )

    return replace(
        report,
        commands=[command(c) for c in report.commands],
        outputs=redactor.values(report.outputs),
        error=text(report.error),
        conflicts=_mask_entries(report.conflicts, redactor),
    )


def _mask_entries(
    per_host: Mapping[str, Sequence[Mapping[str, Any]]], redactor: Redactor
) -> dict[str, list[dict[str, Any]]]:
    """Per host entries (drift, changes, conflicts) with their values masked; ``key`` is a
    name, like an output's, and stays as it is (so a short secret never garbles it)."""
    return {
        host: [{k: v if k == "key" else redactor.values(v) for k, v in e.items()} for e in entries]
        for host, entries in per_host.items()
    }


def compose_changes(
    steps: Iterable[Mapping[str, Sequence[Mapping[str, Any]]]],
) -> dict[str, list[dict[str, Any]]]:
    """Per host and key, the net change of several steps of changes, sorted by key.

    An ``added`` then ``removed`` key nets out; ``before`` comes from the first step that
    touched the key, ``after`` from the last one.
    """
    absent = object()
    net: dict[str, dict[str, tuple[Any, Any]]] = {}
    for step in steps:
        for host, items in step.items():
            keys = net.setdefault(host, {})
            for item in items:
                key = str(item.get("key", ""))
                after = item.get("after", absent)
                before = keys[key][0] if key in keys else item.get("before", absent)
                keys[key] = (before, after)
    out: dict[str, list[dict[str, Any]]] = {}
    for host, keys in net.items():
        items_out = out.setdefault(host, [])
        for key in sorted(keys):
            before, after = keys[key]
            if before is absent and after is absent:
                continue
            if before is absent:
                items_out.append({"key": key, "change": "added", "after": after})
            elif after is absent:
                items_out.append({"key": key, "change": "removed", "before": before})
            elif before != after or before == MASK:  # masked secrets: say changed
                items_out.append(
                    {"key": key, "change": "changed", "before": before, "after": after}
                )
    return out


def load_reports(items: Iterable[Any]) -> list[Report]:
    """The items that are reports, as Reports; anything else (a report without a status, not
    a mapping) is left out. For reports read back from GitLab, which any job can upload."""
    reports = []
    for item in items:
        try:
            reports.append(load_report(item))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return reports


def _get(data: Mapping[str, Any], key: str, kind: Any, default: Any, where: str = "") -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise TypeError(f"{where}{key}: {type(value).__name__} is not the expected type")
    return value


def _items(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    items: list[Mapping[str, Any]] = _get(data, key, list, [], where)
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"{where}{key}[{n}]: a mapping, not {type(item).__name__}")
    return items


def _failed(f: Mapping[str, Any], at: str) -> FailedTask:
    at = f"{at}failed_tasks."
    return FailedTask(
        host=_get(f, "host", str, None, at),
        task=_get(f, "task", str, None, at),
        message=_get(f, "message", str, None, at),
        unreachable=_get(f, "unreachable", bool, False, at),
    )


def _result(r: Mapping[str, Any], at: str) -> TaskResult:
    at = f"{at}results."
    return TaskResult(
        host=_get(r, "host", str, None, at),
        task=_get(r, "task", str, None, at),
        outcome=_get(r, "outcome", str, None, at),
        duration=_get(r, "duration", (int, float), 0.0, at),
        message=_get(r, "message", str, "", at),
    )


def load_report(data: Mapping[str, Any]) -> Report:
    """A Report from its JSON form, every field checked (a report may come from a file or a
    job anyone can write). Raises TypeError, ValueError or KeyError naming the field."""
    if not isinstance(data, Mapping):
        raise TypeError(f"a report is a mapping, not {type(data).__name__}")
    number = (int, float)
    commands = []
    for n, c in enumerate(_items(data, "commands", "")):
        at = f"commands[{n}]."
        hosts = _get(c, "hosts", Mapping, {}, at)
        commands.append(
            CommandResult(
                command=_get(c, "command", str, None, at),
                status=Status(str(c.get("status"))),
                rc=_get(c, "rc", (int, type(None)), None, at),
                hosts={
                    str(h): HostStats(**_get(hosts, h, Mapping, None, f"{at}hosts.")) for h in hosts
                },
                failed_tasks=[_failed(f, at) for f in _items(c, "failed_tasks", at)],
                results=[_result(r, at) for r in _items(c, "results", at)],
                outputs=dict(_get(c, "outputs", Mapping, {}, at)),
                drift=dict(_get(c, "drift", Mapping, {}, at)),
                started=_get(c, "started", str, "", at),
                finished=_get(c, "finished", str, "", at),
                duration=_get(c, "duration", number, 0.0, at),
                error=_get(c, "error", str, "", at),
                timed_out=_get(c, "timed_out", bool, False, at),
                check_mode=_get(c, "check_mode", bool, False, at),
                changes=dict(_get(c, "changes", Mapping, {}, at)),
            )
        )
    identity = _get(data, "identity", str, None)
    if not is_identity(identity):
        raise ValueError(f"identity: {identity[:100]!r} is not a valid identity")
    texts = ("started", "finished", "error", "source", "pipeline_url", "job_url")
    fields = {k: _get(data, k, str, "") for k in texts if k in data}
    if "duration" in data:
        fields["duration"] = _get(data, "duration", number, 0.0)
    if "timed_out" in data:
        fields["timed_out"] = _get(data, "timed_out", bool, False)
    if "check" in data:
        fields["check"] = _get(data, "check", bool, False)
    if "revision" in data:
        fields["revision"] = _get(data, "revision", (int, type(None)), None)
    if "conflicts" in data:
        fields["conflicts"] = dict(_get(data, "conflicts", Mapping, {}))
    if "notes" in data:
        fields["notes"] = [str(n) for n in _get(data, "notes", list, [])]
    try:
        status = Status(str(data.get("status")))
    except ValueError:
        raise ValueError(f"status: {str(data.get('status'))[:40]!r} is not a status") from None
    return Report(
        identity=identity,
        agent=_get(data, "agent", str, ""),
        version=_get(data, "version", (str, type(None)), None),
        status=status,
        commands=commands,
        outputs=dict(_get(data, "outputs", Mapping, {})),
        **fields,
    )


def junit(reports: Iterable[Report]) -> str:
    """JUnit XML: a suite per task command, a case per Ansible task and host.

    A task that ran no command (skipped, locked, an unresolved output) is a suite of one case
    saying why, and a command that ended in error (a timeout) adds a failing case, so GitLab's
    test report shows every task.
    """
    root = ET.Element("testsuites", name="runner-agent")
    for report in reports:
        for command in report.commands:
            suite = ET.SubElement(
                root,
                "testsuite",
                name=f"{report.identity} {command.command}",
                timestamp=command.started,
                time=f"{command.duration:.3f}",
            )
            for r in command.results:
                _case(
                    suite,
                    f"{report.identity}.{command.command}.{r.host}",
                    r.task or "(unnamed task)",
                    r.duration,
                    r.outcome,
                    r.message,
                )
            if command.error:
                _case(
                    suite,
                    report.identity,
                    command.command,
                    command.duration,
                    "error",
                    command.error,
                )
            lines = diff_lines(report.identity, command, limit=None)
            if lines:
                ET.SubElement(suite, "system-out").text = _xml("\n".join(lines) + "\n")
        if not report.commands:
            suite = ET.SubElement(
                root,
                "testsuite",
                name=report.identity,
                timestamp=report.started,
                time=f"{report.duration:.3f}",
            )
            outcome = (
                "skipped"
                if report.status is Status.SKIPPED
                else ("ok" if report.status is Status.SUCCESS else "error")
            )
            _case(
                suite, report.identity, report.status.value, report.duration, outcome, report.error
            )
    for suite in root:
        cases = [c for c in suite if c.tag == "testcase"]
        suite.set("tests", str(len(cases)))
        for kind, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            suite.set(kind, str(sum(1 for c in cases if c.find(tag) is not None)))
    for element in root.iter():  # valid XML whatever a field holds (a report read back, too)
        element.attrib = {k: _xml(v) for k, v in element.attrib.items()}
        if element.text:
            element.text = _xml(element.text)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _xml(text: str) -> str:
    """``text`` with the characters XML cannot hold written as escapes (``\\x01``)."""
    return _NOT_XML.sub(lambda m: _escaped(m.group()), str(text))


def _escaped(char: str) -> str:
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def printable(text: str) -> str:
    """``text`` safe for a terminal line: control characters, line breaks, bidi and other
    invisible format marks written as escapes (``\\n``, ``\\u202e``), so a report cannot
    rewrite, hide or reorder what a person reads."""
    return "".join(
        _escaped(ch) if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in str(text)
    )


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _case(
    suite: ET.Element, classname: str, name: str, duration: float, outcome: str, message: str
) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{duration:.3f}")
    tag = {"failed": "failure", "unreachable": "error", "error": "error", "skipped": "skipped"}.get(
        outcome
    )
    if tag:
        ET.SubElement(case, tag, message=message[:500]).text = message or None


def dotenv(report: Mapping[str, Any]) -> str:
    """A task's GitLab dotenv report: ``RA_<IDENTITY>_STATUS``, then its outputs.

    Keys are ``RA_<IDENTITY>_<KEY>`` upper-cased with every other character as ``_``, so a
    later job reads ``$RA_ACME_WEB_URL``. GitLab reads at most 20 variables and under 5 KB:
    the status comes first, outputs follow by key. Values are JSON unless plain strings; what
    does not fit, holds a line break (dotenv cannot carry one), or would be named like a status
    (``..._STATUS``: identity ``a``'s output ``b_status`` is identity ``a/b``'s status name)
    stays in the report JSON only. The report is checked first (:func:`load_report`): raises
    ValueError, TypeError or KeyError naming what is wrong.
    """
    return job_dotenv([report])[0]


def job_dotenv(reports: Sequence[Mapping[str, Any]]) -> tuple[str, list[list[str]]]:
    """One job's dotenv report for its tasks, within GitLab's limits (:data:`DOTENV_MAX`,
    :data:`DOTENV_BYTES`), and per task the variables left out for want of room.

    Every identity's status comes first, in the tasks' order, then each task's outputs as
    :func:`dotenv` orders them: a status is what a later job most needs. An identity with
    several tasks in the job shows its last one (what a later job would read from the last of
    several jobs). Nothing beyond the limits is written (GitLab would refuse the whole file);
    the caller says so in the task's report. Raises ValueError, TypeError or KeyError like
    :func:`dotenv`.
    """
    checked = [load_report(r) for r in reports]
    last = {report.identity: n for n, report in enumerate(checked)}
    lines: list[str] = []
    size = 0
    left: list[list[str]] = [[] for _ in checked]
    names: set[str] = set()

    def place(n: int, name: str, line: str) -> None:
        nonlocal size
        if name in names:  # a name GitLab would read twice: the first one stays
            return
        if len(lines) == DOTENV_MAX or size + len(line.encode()) + 1 >= DOTENV_BYTES:
            left[n].append(name)
            return
        names.add(name)
        lines.append(line)
        size += len(line.encode()) + 1

    shown = [(n, r) for n, r in enumerate(checked) if last[r.identity] == n]
    for n, report in shown:
        name = f"{dotenv_prefix(report.identity)}STATUS"
        place(n, name, f"{name}={report.status.value}")
    for n, report in shown:
        prefix = dotenv_prefix(report.identity)
        outputs = report.outputs
        for key in sorted(outputs):
            value = outputs[key]
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            name = _DOTENV_KEY.sub("_", f"{prefix}{key}").upper()
            if _LINE_BREAK.search(text) or name.endswith("_STATUS"):
                continue
            place(n, name, f"{name}={text}")
    return "".join(x + "\n" for x in lines), left


def merge_reports(reports: Sequence[Report], expected: int | None = None) -> dict[str, Any]:
    """One summary of many reports: the collect job's artifact and ``reports`` output.

    With ``expected``, reports that never arrived (a killed job writes none) are counted in
    ``missing`` and make the summary an error.
    """
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    missing = max(0, expected - len(reports)) if expected is not None else 0
    worst = next(
        (s for s in (Status.ERROR, Status.FAILED, Status.LOCKED) if counts.get(s.value)),
        Status.ERROR if missing else Status.SUCCESS,
    )
    return {
        "status": worst.value,
        "counts": counts,
        "missing": missing,
        "tasks": len(reports) + missing,
        "failed": [
            {
                "identity": r.identity,
                "commands": [c.command for c in r.commands],
                "status": r.status.value,
                "error": r.error or _first_failure(r),
            }
            for r in reports
            if r.status not in (Status.SUCCESS, Status.SKIPPED)
        ],
        "reports": [r.to_dict() for r in reports],
    }


def account_for(
    expected: Sequence[str] | None, reports: Sequence[Report], why: str
) -> list[Report]:
    """``reports``, plus an error report (saying ``why``) for each expected identity that has
    none: a task whose job never reported is never silently missing. ``expected`` lists the
    identities, once per task; None when unknown (then ``reports`` as they are). Reports
    beyond what is expected (an identity that is not there, or more of one than it has
    tasks) are left out: a wrong or tampered summary cannot add tasks."""
    if expected is None:
        return list(reports)
    missing = list(expected)
    kept = []
    for r in reports:
        if r.identity in missing:
            missing.remove(r.identity)
            kept.append(r)
    return [*kept, *(Report(i, "", None, Status.ERROR, error=why) for i in missing)]


def _first_failure(report: Report) -> str:
    for c in report.commands:
        for f in c.failed_tasks:
            return f"{f.host}: {f.task}: {f.message}"
    return ""


def table(reports: Sequence[Report]) -> str:
    """A plain-text table a person reads at a glance."""
    head = ("IDENTITY", "AGENT", "COMMANDS", "STATUS", "CHANGED", "FAILED", "DRIFT", "DURATION")
    rows = [head]
    for r in reports:
        drift = sum(len(v) for v in r.drift.values())
        rows.append(
            (
                printable(r.identity),
                printable(r.agent),
                printable(",".join(c.command for c in r.commands) or "-"),
                r.status.value,
                str(r.changed),
                str(r.failed),
                str(drift) if drift else "-",
                f"{r.duration:.1f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    details = []
    for r in reports:
        if r.error and not any(c.error for c in r.commands):
            details.append(f"{r.identity}: {r.error}")
        for c in r.commands:
            for f in c.failed_tasks:
                details.append(f"{r.identity} {c.command} {f.host}: {f.task}: {f.message}")
            if c.error:
                details.append(f"{r.identity} {c.command}: {c.error}")
            details.extend(diff_lines(r.identity, c, check=r.check))
        for host, items in r.conflicts.items():
            details.append(f"{r.identity} conflicts on {host} (left alone; --force overwrites):")
            for item in items:
                found, expected = item.get("found", {}), item.get("expected", {})
                details.append(
                    f"  ! {item.get('key', '')}: found {_side(found)}, "
                    f"last written {_side(expected) if expected else '(never)'}"
                )
    lines.extend(f"  {printable(line)}" for line in details)
    return "\n".join(lines) + "\n"


def _side(entry: Mapping[str, Any]) -> str:
    if "absent" in entry:
        return "(absent)"
    if "secret" in entry:
        return f"(secret from {entry['secret'] or 'an unknown source'})"
    return show_value(entry.get("value"))


TABLE_KEYS = 20  # keys listed per host under the table; the report JSON has them all
_SIGN = {"added": "+", "changed": "~", "removed": "-"}


def show_value(value: Any, width: int = 60) -> str:
    """A value as a person reads it in a diff line: JSON, cut to ``width`` characters."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def change_line(item: Mapping[str, Any], drift: bool = False) -> str:
    """``~ key: "old" -> "new"`` (drift: ``found "x", expected "y"``)."""
    change = str(item.get("change", ""))
    head = f"{_SIGN.get(change, '?')} {item.get('key', '')}"
    before = show_value(item["before"]) if "before" in item else None
    after = show_value(item["after"]) if "after" in item else None
    if drift:
        found = f"found {before}" if before is not None else "missing"
        expected = f"expected {after}" if after is not None else "not expected"
        return f"{head}: {found}, {expected}"
    if change == "added":
        return f"{head}: {after}"
    if change == "removed":
        return f"{head}: was {before}"
    return f"{head}: {before} -> {after}"


def diff_lines(
    identity: str, command: CommandResult, *, check: bool = False, limit: int | None = TABLE_KEYS
) -> list[str]:
    """Lines naming each host's drift and key changes of one command, values included."""
    lines: list[str] = []
    for kind, per_host in (("drift", command.drift), ("changes", command.changes)):
        for host, items in per_host.items():
            if not items:
                continue
            if kind == "drift":
                lines.append(f"{identity} drift on {host}:")
            elif check or command.check_mode:
                lines.append(f"{identity} {command.command} would change on {host}:")
            else:
                lines.append(f"{identity} {command.command} changed on {host}:")
            shown = items if limit is None else items[:limit]
            lines.extend(f"  {change_line(i, kind == 'drift')}" for i in shown)
            if len(items) > len(shown):
                lines.append(f"  … and {len(items) - len(shown)} more (see the report JSON)")
    return lines
