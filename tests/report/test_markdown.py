"""The Markdown plan: one row per key change, and no key or value, however hostile, can break
the table or bring a link, image or HTML into it. Checked by parsing the plan with a CommonMark
parser with GFM tables (markdown-it-py), as GitLab renders it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from runner_agent.report.markdown import MAX_CELL, plan_markdown
from runner_agent.report.model import CommandResult, Report, Status

PARSER = MarkdownIt("commonmark").enable("table")
FORBIDDEN = {
    "link_open",
    "image",
    "html_inline",
    "html_block",
    "autolink",
    "em_open",
    "strong_open",
}

HOSTILE = [
    "| a | b |",
    "\\|",
    "\\\\|",
    "`",
    "``x``",
    "` `",
    "[click](https://evil.example)",
    "![img](https://evil.example/x.png)",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "https://evil.example/",
    "www.evil.example",
    "*bold* _em_",
    "line\nbreak",
    "\r\n| --- |",
    "&lt;b&gt;",
    "\u202eevil",  # right-to-left override
    "zero\u200bwidth",
    "",
    " ",
    "-",
    "# heading",
]


def report(identity: str, host: str, items: list[dict[str, Any]]) -> Report:
    command = CommandResult("update", Status.SUCCESS, changes={host: items})
    return Report(identity, "kv_file", "1.0.0", Status.SUCCESS, commands=[command], check=True)


def cells(text: str) -> list[list[list[Token]]]:
    """Body rows of the table: per row, per cell, the cell's inline tokens."""
    tokens = PARSER.parse(text)
    assert not any(t.type in FORBIDDEN for t in tokens)
    rows: list[list[list[Token]]] = []
    in_body = False
    for token in tokens:
        if token.type == "tbody_open":
            in_body = True
        elif token.type == "tbody_close":
            in_body = False
        elif in_body and token.type == "tr_open":
            rows.append([])
        elif in_body and token.type == "inline":
            children = token.children or []
            assert not any(c.type in FORBIDDEN for c in children), children
            rows[-1].append(children)
    return rows


def code(cell: list[Token]) -> str:
    """The text of a cell that must be exactly one code span."""
    assert [t.type for t in cell] == ["code_inline"], cell
    return cell[0].content


def shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.sampled_from(HOSTILE),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
names = st.text(min_size=0, max_size=40) | st.sampled_from(HOSTILE)


@settings(max_examples=300, deadline=None)
@given(
    identity=names,
    host=names,
    keys=st.lists(names, min_size=1, max_size=4, unique=True),
    before=values,
    after=values,
)
def test_hostile_keys_and_values_stay_cells_of_their_row(
    identity: str, host: str, keys: list[str], before: Any, after: Any
) -> None:
    assume(before != after)  # an unchanged key is no change
    items = [{"key": k, "change": "changed", "before": before, "after": after} for k in keys]
    text = plan_markdown([report(identity, host, items)])
    rows = cells(text)
    assert len(rows) == len(keys)
    for row, key in zip(rows, sorted(keys), strict=True):
        assert len(row) == 6
        assert code(row[2]) in (key, shown(key))
        assert code(row[4]) == shown(before)
        assert code(row[5]) == shown(after)
        assert [t.content for t in row[3]] == ["changed"]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(HOSTILE), st.sampled_from(HOSTILE))
def test_hostile_examples_render_no_link_or_html(key: str, value: str) -> None:
    items = [
        {"key": key, "change": "added", "after": value},
        {"key": key + "2", "change": "removed", "before": value},
    ]
    rows = cells(plan_markdown([report("acme/web", "localhost", items)]))
    assert [len(r) for r in rows] == [6, 6]
    assert rows[0][4] == [] and code(rows[0][5]) == shown(value)  # added: no before
    assert code(rows[1][4]) == shown(value) and rows[1][5] == []  # removed: no after


def test_masked_secrets_stay_masked_and_counts_are_given() -> None:
    items = [
        {"key": "password", "change": "changed", "before": "********", "after": "********"},
        {"key": "port", "change": "added", "after": 8080},
    ]
    text = plan_markdown([report("acme/db", "db1", items)])
    assert "1 key(s) added, 1 changed, 0 removed" in text
    rows = cells(text)
    assert code(rows[0][4]) == '"********"' and code(rows[0][5]) == '"********"'


def test_a_failed_dry_run_is_named_and_nothing_is_said_to_change() -> None:
    failed = Report("acme/web", "kv_file", "1.0.0", Status.FAILED, check=True)
    text = plan_markdown([failed])
    assert "Nothing would change." in text
    assert "did not succeed" in text and "`acme/web`" in text


def test_collect_writes_the_plan(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from runner_agent.cli import cli

    items = [{"key": "a|b", "change": "added", "after": "<b>x</b>"}]
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "0000.json").write_text(report("acme/web", "h", items).to_json())
    plan = tmp_path / "plan.md"
    result = CliRunner().invoke(
        cli, ["collect", str(tmp_path / "checks"), "--markdown", str(plan), "--expect", "1"]
    )
    assert result.exit_code == 0, result.output
    rows = cells(plan.read_text())
    assert code(rows[0][2]) == '"a|b"' and code(rows[0][5]) == '"<b>x</b>"'
