"""Reports as one HTML page an operator opens in a browser: per-task and per-host results,
failures first, drift per host.

The page stands alone: inline CSS, no script, no font, image or stylesheet from elsewhere, so it
opens from a job's artifacts, a mail or a disk, and prints as it shows. Every value taken from a
report is escaped, and only an http(s) URL becomes a link: identities, errors and outputs are
data, never markup. The page depends on the reports alone (no clock), so the same reports give
the same bytes.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner_agent.core import fs
from runner_agent.report.model import (
    CommandResult,
    Report,
    Status,
    merge_reports,
)

__all__ = ["DEFAULT_TITLE", "html_report", "write_html"]

DEFAULT_TITLE = "runner-agent report"
# failures first; a skipped task comes before the successes because something upstream failed
_RANK = {Status.ERROR: 0, Status.FAILED: 1, Status.LOCKED: 2, Status.SKIPPED: 3, Status.SUCCESS: 4}
_OPEN = (Status.ERROR, Status.FAILED)
_HOST_COLUMNS = ("ok", "changed", "failed", "unreachable", "skipped")
_STATUSES = frozenset(s.value for s in Status)
_KNOWN = frozenset({"ok", "changed", "failed", "unreachable", "skipped", "added", "removed"})
# shown as \xNN (\uNNNN): C0/C1 controls (an ANSI colour code, a NUL) would vanish or garble
# the page; a lone surrogate (JSON allows "\ud800") cannot even be written as UTF-8; bidi
# overrides and invisible marks (U+00AD, 061C, 200B-200F, 202A-202E, 2060-2069, FEFF) would
# let a value show as other text than it is
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u202a-\u202e\u2066-\u2069"
    "\u00ad\u061c\u2060-\u2064\ufeff]"
)
_WEB_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)

_CSS = """
:root { color-scheme: light; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2328; background: #fff; margin: 0 auto; padding: 1.5rem; max-width: 78rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
a { color: #0550ae; }
table { border-collapse: collapse; margin: .4rem 0 .8rem; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left;
  vertical-align: top; unicode-bidi: isolate; }
th { background: #f6f8fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: #a40e26; font-weight: 700; }
tr { break-inside: avoid; }
pre, code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: .3rem 0;
  padding: .4rem .6rem; background: #f6f8fa; border: 1px solid #d0d7de; }
pre.error { background: #fff0f0; border-color: #e5a0a8; }
.status, .badge { display: inline-block; padding: 0 .45rem; border: 1px solid;
  border-radius: .8rem; font-weight: 600; font-size: .85em; white-space: nowrap; }
.s-success { color: #1a7f37; background: #e6f6ea; }
.s-failed { color: #a40e26; background: #ffe8ea; }
.s-error { color: #6e0b1c; background: #ffd8dc; }
.s-locked { color: #7d4e00; background: #fff4d6; }
.s-skipped, .s-other { color: #57606a; background: #f3f4f6; }
.badge.drift { color: #6639ba; background: #f1ebff; }
tr.s-failed td:first-child, tr.s-error td:first-child { border-left: 4px solid #cf222e; }
tr.s-locked td:first-child { border-left: 4px solid #bf8700; }
.o-failed, .o-unreachable, .c-removed { color: #a40e26; font-weight: 600; }
.o-changed, .c-changed { color: #7d4e00; }
.o-skipped { color: #57606a; }
.c-added { color: #1a7f37; }
table.diff td.before { background: #ffebe9; } table.diff td.after { background: #dafbe1; }
table.diff del, table.diff ins { text-decoration: none; }
p.check { color: #0550ae; font-weight: 700; }
.muted { color: #57606a; font-weight: normal; }
.counts { list-style: none; padding: 0; margin: .5rem 0; display: flex; flex-wrap: wrap;
  gap: .5rem; }
.counts li { padding: .2rem .6rem; border: 1px solid #d0d7de; border-radius: .4rem; }
.counts li.zero { color: #8c959f; background: #fff; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem;
  margin: .5rem 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
p.missing { color: #6e0b1c; font-weight: 700; }
details.task { border: 1px solid #d0d7de; border-radius: .4rem; margin: .6rem 0;
  padding: 0 .8rem; }
details.task[open] { padding-bottom: .6rem; }
details.task > summary { cursor: pointer; padding: .5rem 0; font-size: 1.05rem; }
details.task.s-failed, details.task.s-error { border-left: 4px solid #cf222e; }
section.command { border-top: 1px solid #d0d7de; margin-top: .6rem; }
@media print {
  body { padding: 0; font-size: 10pt; max-width: none; }
  details::details-content { content-visibility: visible; display: block; }
  details.task { break-inside: auto; }
  a[href^="http"]::after { content: " <" attr(href) ">"; font-size: .85em; color: #57606a; }
}
"""


def html_report(
    reports: Sequence[Report],
    *,
    title: str = DEFAULT_TITLE,
    summary: Mapping[str, Any] | None = None,
) -> str:
    """The reports as one self-contained HTML page.

    ``summary`` is their merged summary (:func:`~runner_agent.report.model.merge_reports`); without
    it one is merged here. It gives the overall status and the reports that never arrived.
    """
    merged = merge_reports(reports) if summary is None else summary
    ordered = sorted(enumerate(reports), key=lambda item: (_RANK[item[1].status], item[0]))
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # nothing runs and nothing loads, even if a value slipped through unescaped
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        _header(reports, merged, title),
        _summary_table(ordered),
        '<h2 id="details">Tasks</h2>\n',
        *(_task(index, report) for index, report in ordered),
        "</body>\n</html>\n",
    ]
    return "".join(parts)


def write_html(
    path: Path,
    reports: Sequence[Report],
    *,
    title: str = DEFAULT_TITLE,
    summary: Mapping[str, Any] | None = None,
) -> None:
    """Write :func:`html_report` to ``path`` (folders made, the file replaced atomically).

    Raises UnsafePath (an InvalidInput) when it cannot be written.
    """
    fs.write_text(path, html_report(reports, title=title, summary=summary))


# --- the page's parts --------------------------------------------------------------------


def _header(reports: Sequence[Report], merged: Mapping[str, Any], title: str) -> str:
    counts = {s: sum(1 for r in reports if r.status is s) for s in Status}
    items = "".join(
        f'<li class="{_status_class(s.value)}{"" if n else " zero"}"><strong>{n}</strong> '
        f"{_e(s.value)}</li>"
        for s, n in sorted(counts.items(), key=lambda item: _RANK[item[0]])
    )
    missing = _int(merged.get("missing"))
    facts = [
        ("Tasks", str(_int(merged.get("tasks"), len(reports)))),
        ("Changed", str(sum(r.changed for r in reports))),
        ("Failed hosts", str(_failed_hosts(reports))),
        ("Task time", _duration(sum(r.duration for r in reports))),
    ]
    span = _span(reports)
    if span:
        facts.append(("Ran", span))
    pipelines = list(dict.fromkeys(r.pipeline_url for r in reports if _is_web_url(r.pipeline_url)))
    html_facts = [(k, _e(v)) for k, v in facts]
    html_facts += [("Pipeline", _link(url, url)) for url in pipelines]
    text = (
        f"<header>\n<h1>{_e(title)}</h1>\n"
        f"<p>Overall: {_badge(str(merged.get('status', '')))}</p>\n"
        f'<ul class="counts" aria-label="tasks by status">{items}</ul>\n'
    )
    if missing:
        text += (
            f'<p class="missing">{missing} task report(s) missing: a job was killed, or its '
            "runner died, before it wrote one.</p>\n"
        )
    return text + _facts(html_facts) + "</header>\n"


def _summary_table(ordered: Sequence[tuple[int, Report]]) -> str:
    head = ("Status", "Identity", "Agent", "Commands", "Changed", "Failed", "Drift", "Duration")
    rows = []
    for index, r in ordered:
        drift = _drift_count(r)
        rows.append(
            [
                _badge(r.status.value),
                f'<a href="#task-{index + 1}">{_e(r.identity)}</a>',
                _e(r.agent),
                _e(", ".join(c.command for c in r.commands) or "-"),
                _num(r.changed),
                _num(r.failed, bad=r.failed > 0),
                _drift_badge(drift) if drift else "-",
                _e(_duration(r.duration)),
                _link(r.job_url, "job log") if _is_web_url(r.job_url) else "-",
            ]
        )
    classes = [_status_class(r.status.value) for _, r in ordered]
    caption = "Every task, failures first"
    return "<h2>Summary</h2>\n" + _table("summary", caption, (*head, "Job"), rows, classes=classes)


def _task(index: int, r: Report) -> str:
    drift = _drift_count(r)
    opened = " open" if r.status in _OPEN or r.drift else ""  # what needs a look
    commands = ", ".join(c.command for c in r.commands) or "no command ran"
    parts = [
        f'<details class="task {_status_class(r.status.value)}" id="task-{index + 1}"{opened}>\n'
        f'<summary>{_badge(r.status.value)} <strong class="identity">{_e(r.identity)}</strong> '
        f'<span class="muted">{_e(r.agent)} · {_e(commands)}</span>'
        f"{' ' + _drift_badge(drift) if drift else ''}</summary>\n",
        _facts(_task_facts(r)),
    ]
    if r.check:
        parts.append(
            '<p class="check">Dry run (--check): nothing was changed or recorded; '
            "the tables say what a run would change.</p>\n"
        )
    if r.error:  # a skip or a lock says why it did not run: not an error of its own
        label = "Why" if r.status in (Status.SKIPPED, Status.LOCKED) else "Error"
        parts.append(f'<h3>{label}</h3>\n<pre class="error">{_e(r.error)}</pre>\n')
    if r.notes:  # such as outputs a job's dotenv report had no room for
        items = "".join(f"<li>{_e(note)}</li>" for note in r.notes)
        parts.append(f'<h3>Notes</h3>\n<ul class="notes">{items}</ul>\n')
    if not r.commands:
        parts.append('<p class="muted">No command ran.</p>\n')
    parts.extend(_command(c) for c in r.commands)
    parts.extend(_conflicts(host, items) for host, items in sorted(r.conflicts.items()))
    if r.outputs:
        parts.append(_outputs(r.outputs))
    parts.append("</details>\n")
    return "".join(parts)


def _task_facts(r: Report) -> list[tuple[str, str]]:
    facts = [
        ("Agent", _e(r.agent)),
        ("Version", _e(r.version or "-")),
        ("Source", _e(r.source or "-")),
        ("Started", _e(_when(r.started) or "-")),
        ("Finished", _e(_when(r.finished) or "-")),
        ("Duration", _e(_duration(r.duration))),
    ]
    if r.timed_out:
        facts.append(("Timed out", _e("yes: the task's deadline passed")))
    for name, url in (("Job", r.job_url), ("Pipeline", r.pipeline_url)):
        if url:
            facts.append((name, _link(url, url)))
    return facts


def _command(c: CommandResult) -> str:
    detail = [f"rc {c.rc}" if c.rc is not None else "no rc", _duration(c.duration)]
    if c.check_mode:
        detail.append("check mode: nothing was changed")
    if c.timed_out:
        detail.append("timed out")
    parts = [
        f'<section class="command">\n<h3>{_e(c.command)} {_badge(c.status.value)} '
        f'<span class="muted">{_e(" · ".join(detail))}</span></h3>\n'
    ]
    if c.error:
        parts.append(f'<pre class="error">{_e(c.error)}</pre>\n')
    if c.hosts:
        caption = "Hosts" + (" (changed: what it would change)" if c.check_mode else "")
        rows = [
            [_e(host)]
            + [_num(getattr(s, k), bad=k in ("failed", "unreachable")) for k in _HOST_COLUMNS]
            for host, s in sorted(c.hosts.items())
        ]
        parts.append(_table("hosts", caption, ("Host", *_HOST_COLUMNS), rows))
    if c.failed_tasks:
        rows = [
            [
                _e(f.host),
                _e(f.task),
                f'<pre class="error">{_e(f.message)}</pre>',
                _e("unreachable" if f.unreachable else "failed"),
            ]
            for f in c.failed_tasks
        ]
        parts.append(_table("failures", "Failed tasks", ("Host", "Task", "Message", "As"), rows))
    parts.extend(_drift(host, items) for host, items in sorted(c.drift.items()))
    verb = "Would change" if c.check_mode else "Changed"
    parts.extend(
        _diff(f"{verb} on {host}", host, items) for host, items in sorted(c.changes.items())
    )
    parts.extend(_results(c))
    parts.append("</section>\n")
    return "".join(parts)


def _drift(host: str, items: Iterable[Any]) -> str:
    rows = [_diff_row(i) for i in items]
    where = f'data-host="{_e(host)}"'
    if not rows:
        return f'<p class="no-drift" {where}>No drift on <code>{_e(host)}</code>.</p>\n'
    head = ("Key", "Change", "Found", "Expected")
    return _table("drift diff", f"Drift on {host}", head, rows, where)


def _diff(caption: str, host: str, items: Iterable[Any]) -> str:
    """A key diff: each key's change, its value before (struck) and after (inserted)."""
    rows = [_diff_row(i) for i in items]
    if not rows:
        return ""
    head = ("Key", "Change", "Before", "After")
    return _table("changes diff", caption, head, rows, f'data-host="{_e(host)}"')


def _conflicts(host: str, items: Iterable[Any]) -> str:
    """A rollback's conflicts on one host: keys someone changed since, left as found."""
    rows = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        cells = []
        for side in ("found", "expected"):
            entry = item.get(side) or {}
            if "value" in entry:
                text = json.dumps(entry["value"], ensure_ascii=False, sort_keys=True, default=str)
            elif "secret" in entry:
                text = f"(secret from {entry['secret'] or 'an unknown source'})"
            else:
                text = "(absent)" if entry else "(never written)"
            cells.append(f"<code>{_e(text)}</code>")
        rows.append([_e(item.get("key", "")), *cells])
    caption = f"Conflicts on {host}: left alone (--force overwrites)"
    head = ("Key", "Found", "Last written")
    return _table("conflicts", caption, head, rows, f'data-host="{_e(host)}"')


def _diff_row(item: Any) -> list[str]:
    if not isinstance(item, Mapping):
        return [_e(item), "", "", ""]

    legacy = "before" not in item and "after" not in item  # a report from before values

    def side(name: str, tag: str) -> str:
        if legacy:
            return "<td></td>"
        if name not in item:
            return f'<td class="absent muted">{_e("(absent)")}</td>'
        value = json.dumps(item[name], ensure_ascii=False, sort_keys=True, default=str)
        return f'<td class="{name}"><{tag}><code>{_e(value)}</code></{tag}></td>'

    return [
        _e(item.get("key", "")),
        _outcome(str(item.get("change", "")), "c"),
        side("before", "del"),
        side("after", "ins"),
    ]


def _results(c: CommandResult) -> list[str]:
    """Per host, the Ansible tasks that ran (a report read back from JSON has none)."""
    hosts: dict[str, list[list[str]]] = {}
    failing: set[str] = set()
    for t in c.results:
        hosts.setdefault(t.host, []).append(
            [
                _e(t.task or "(unnamed task)"),
                _outcome(t.outcome, "o"),
                _num(round(t.duration, 3)),
                f"<pre>{_e(t.message)}</pre>" if t.message else "",
            ]
        )
        if t.outcome in ("failed", "unreachable"):
            failing.add(t.host)
    return [
        f'<details class="results"{" open" if host in failing else ""}>'
        f"<summary>Tasks on <code>{_e(host)}</code> ({len(rows)})</summary>\n"
        + _table("results", "", ("Task", "Outcome", "Seconds", "Message"), rows)
        + "</details>\n"
        for host, rows in sorted(hosts.items())
    ]


def _outputs(outputs: Mapping[str, Any]) -> str:
    rows = []
    for key in sorted(outputs, key=str):
        value = outputs[key]
        text = value if isinstance(value, str) else _json(value)
        shown = f"<pre>{_e(text)}</pre>" if "\n" in text else f"<code>{_e(text)}</code>"
        rows.append([f"<code>{_e(key)}</code>", shown])
    return _table("outputs", "Outputs", ("Key", "Value"), rows)


# --- small pieces ------------------------------------------------------------------------


def _e(value: object) -> str:
    """Text as HTML: escaped, quotes included, so it is safe in an element and an attribute."""
    text = _UNPRINTABLE.sub(_visible, str(value))
    return html.escape(text, quote=True)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else f"\\u{code:04x}"


def _is_web_url(url: str) -> bool:
    if not _WEB_URL.fullmatch(url):
        return False
    try:
        return bool(urlsplit(url).netloc)
    except ValueError:  # a malformed host, such as an unclosed [
        return False


def _link(url: str, text: str) -> str:
    """A link for an http(s) URL; anything else (javascript:, data:, a path) stays text."""
    return f'<a href="{_e(url)}">{_e(text)}</a>' if _is_web_url(url) else _e(text)


def _status_class(value: str) -> str:
    return f"s-{value}" if value in _STATUSES else "s-other"


def _badge(value: str) -> str:
    return f'<span class="status {_status_class(value)}">{_e(value or "unknown")}</span>'


def _drift_badge(count: int) -> str:
    return f'<span class="badge drift">drift: {count} key{"s" if count != 1 else ""}</span>'


def _outcome(value: str, prefix: str) -> str:
    css = f' class="{prefix}-{value}"' if value in _KNOWN else ""
    return f"<span{css}>{_e(value)}</span>"


def _num(value: float, bad: bool = False) -> str:
    return f'<td class="n{" bad" if bad and value else ""}">{_e(value)}</td>'


def _table(
    css: str,
    caption: str,
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    attrs: str = "",
    classes: Sequence[str] = (),
) -> str:
    """Cells are HTML; a cell that is already a ``<td>`` (a number, see _num) is kept."""
    body = "".join(
        (f'<tr class="{classes[i]}">' if classes else "<tr>")
        + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        + "</tr>\n"
        for i, row in enumerate(rows)
    )
    return (
        f'<table class="{css}"{" " + attrs if attrs else ""}>\n'
        + (f"<caption>{_e(caption)}</caption>\n" if caption else "")
        + "<thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + f"</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"
    )


def _facts(facts: Sequence[tuple[str, str]]) -> str:
    """A definition list of (name, HTML already escaped)."""
    items = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>\n" for k, v in facts)
    return f'<dl class="facts">\n{items}</dl>\n'


def _drift_count(r: Report) -> int:
    return sum(len(items) for items in r.drift.values())


def _failed_hosts(reports: Sequence[Report]) -> int:
    return len(
        {
            (r.identity, host)
            for r in reports
            for c in r.commands
            for host, s in c.hosts.items()
            if s.failed or s.unreachable
        }
    )


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _json(value: Any) -> str:
    nested = isinstance(value, dict | list) and bool(value)
    return json.dumps(
        value, indent=2 if nested else None, sort_keys=True, ensure_ascii=False, default=str
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _parse(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _when(text: str) -> str:
    """An ISO time to the second, in UTC; what is not one is shown as it came."""
    moment = _parse(text)
    if moment is None:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(reports: Sequence[Report]) -> str:
    starts = [m for m in (_parse(r.started) for r in reports) if m]
    ends = [m for m in (_parse(r.finished) for r in reports) if m]
    if not starts or not ends:
        return ""
    first, last = min(starts), max(ends)
    wall = _duration(max(0.0, (last - first).total_seconds()))
    return f"{_when(first.isoformat())} to {_when(last.isoformat())} ({wall} wall clock)"
