"""The HTML report: its structure as a browser parses it, values only ever escaped, links only
to the reports' web URLs, nothing loaded from elsewhere; ``collect --html``; and the pipelines
that expose it as GitLab allows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.core.resources import templates_dir
from runner_agent.model.tasks import Task
from runner_agent.pipeline.render import RenderOptions, render_child
from runner_agent.report.html import html_report
from runner_agent.report.model import (
    CommandResult,
    FailedTask,
    HostStats,
    Report,
    Status,
    TaskResult,
    merge_reports,
)

CANARY = "<script>alert(1)</script>\"'&"
JOB = "https://gitlab.example/acme/agents/-/jobs/7"
PIPELINE = "https://gitlab.example/acme/agents/-/pipelines/3"
# GitLab's own rules for artifacts:expose_as (lib/gitlab/ci/config/entry/artifacts.rb)
EXPOSE_AS = re.compile(r"\w[-\w ]*")
EXTERNAL_TAGS = {"script", "link", "img", "iframe", "object", "embed", "base", "form", "source"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""  # the text inside it, descendants included, as a browser shows it
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str, css: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and (css is None or css in child.attrs.get("class", "").split()):
                found.append(child)
            found.extend(child.find_all(tag, css))
        return found


class Page(HTMLParser):
    """The page as a tree of elements, and every start tag in order."""

    VOID = {"meta", "br", "hr", "img", "link", "input", "source", "base", "embed"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.tags.append((tag, element.attrs))
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


def cells(row: Element) -> list[str]:
    return [td.text for td in row.find_all("td")]


def cycle_report() -> Report:
    drift = {
        "web1": [{"key": "port", "change": "changed"}, {"key": "tls", "change": "added"}],
        "web2": [{"key": "motd", "change": "removed"}],
        "web3": [],
    }
    hosts = {h: HostStats(ok=3, changed=1 if drift[h] else 0) for h in drift}
    return Report(
        "acme/web",
        "kv_file",
        "1.0.0",
        Status.SUCCESS,
        commands=[
            CommandResult("cycle", Status.SUCCESS, rc=0, hosts=hosts, drift=drift, check_mode=True)
        ],
        started="2026-11-22T00:17:14.869219+00:00",
        finished="2026-11-22T00:17:18.716246+00:00",
        duration=3.85,
        job_url=JOB,
        pipeline_url=PIPELINE,
    )


def failed_report(identity: str = "acme/broken", text: str = "/tmp is a folder") -> Report:
    command = CommandResult(
        "install",
        Status.FAILED,
        rc=2,
        hosts={"db1": HostStats(ok=1, failed=1), "db2": HostStats(ok=2)},
        failed_tasks=[FailedTask("db1", "Write the key/value file", text)],
        results=[
            TaskResult("db1", "Validate", "ok", 0.04),
            TaskResult("db1", "Write the key/value file", "failed", 1.5, text),
            TaskResult("db2", "Validate", "ok", 0.03),
        ],
        error=text,
    )
    return Report(
        identity,
        "kv_file",
        "1.0.0",
        Status.FAILED,
        commands=[command],
        outputs={"path": text, "nested": {"list": [1, text]}},
        error=text,
        duration=2.0,
        job_url=JOB,
    )


def all_statuses() -> list[Report]:
    return [
        cycle_report(),
        Report("acme/skipped", "kv_file", None, Status.SKIPPED, error="skipped: before failed"),
        failed_report(),
        Report("acme/locked", "kv_file", None, Status.LOCKED, error="locked by run 12"),
        Report("acme/timeout", "kv_file", None, Status.ERROR, error="timed out", timed_out=True),
    ]


def details_by_identity(page: Page) -> dict[str, Element]:
    found = {}
    for details in page.root.find_all("details", "task"):
        (name,) = details.find_all("strong", "identity")
        found[name.text] = details
    return found


# --- structure ---------------------------------------------------------------------------


def test_every_task_has_a_row_failures_first_with_status_in_text() -> None:
    page = Page(html_report(all_statuses()))
    (table,) = page.root.find_all("table", "summary")
    rows = table.find_all("tr")[1:]
    assert [cells(r)[1] for r in rows] == [
        "acme/timeout",
        "acme/broken",
        "acme/locked",
        "acme/skipped",
        "acme/web",
    ]
    # never colour alone: the status is the cell's text, the row's class only adds colour
    assert [cells(r)[0] for r in rows] == ["error", "failed", "locked", "skipped", "success"]
    assert [r.attrs["class"] for r in rows] == [
        "s-error",
        "s-failed",
        "s-locked",
        "s-skipped",
        "s-success",
    ]
    assert set(details_by_identity(page)) == {cells(r)[1] for r in rows}


def test_failed_error_and_drifted_tasks_open_their_details_the_others_stay_closed() -> None:
    found = details_by_identity(Page(html_report(all_statuses())))
    opened = {identity for identity, d in found.items() if "open" in d.attrs}
    assert opened == {"acme/broken", "acme/timeout", "acme/web"}  # acme/web: a drifted cycle
    # the summary row links to the task's section
    assert found["acme/broken"].attrs["id"] == "task-3"


def test_header_counts_each_status_and_totals() -> None:
    reports = all_statuses()
    page = Page(html_report(reports, summary=merge_reports(reports, expected=7)))
    (counts,) = page.root.find_all("ul", "counts")
    assert [li.text for li in counts.find_all("li")] == [
        "1 error",
        "1 failed",
        "1 locked",
        "1 skipped",
        "1 success",
    ]
    (facts,) = page.root.find_all("header")[0].find_all("dl", "facts")
    named = dict(zip([dt.text for dt in facts.find_all("dt")], facts.find_all("dd"), strict=True))
    assert named["Tasks"].text == "7"  # five reports and two that never arrived
    assert named["Failed hosts"].text == "1"
    assert named["Changed"].text == "0"  # a cycle only says what it would change
    assert named["Pipeline"].find_all("a")[0].attrs["href"] == PIPELINE
    assert "2 task report(s) missing" in page.root.find_all("p", "missing")[0].text


def test_drift_is_listed_per_host_with_a_badge_on_the_row() -> None:
    page = Page(html_report([cycle_report(), failed_report()]))
    web = details_by_identity(page)["acme/web"]
    tables = {t.attrs["data-host"]: t for t in web.find_all("table", "drift")}
    assert set(tables) == {"web1", "web2"}
    listed = {h: [cells(r) for r in t.find_all("tr")[1:]] for h, t in tables.items()}
    assert listed == {
        "web1": [["port", "changed", "", ""], ["tls", "added", "", ""]],
        "web2": [["motd", "removed", "", ""]],
    }
    assert tables["web1"].find_all("caption")[0].text == "Drift on web1"
    (checked,) = web.find_all("p", "no-drift")
    assert checked.attrs["data-host"] == "web3"
    rows = page.root.find_all("table", "summary")[0].find_all("tr")[1:]
    badges = {cells(r)[1]: [b.text for b in r.find_all("span", "drift")] for r in rows}
    assert badges == {"acme/web": ["drift: 3 keys"], "acme/broken": []}


def test_hosts_failed_tasks_results_and_outputs_of_a_task() -> None:
    broken = details_by_identity(Page(html_report([failed_report()])))["acme/broken"]
    (hosts,) = broken.find_all("table", "hosts")
    assert [cells(r) for r in hosts.find_all("tr")[1:]] == [
        ["db1", "1", "0", "1", "0", "0"],
        ["db2", "2", "0", "0", "0", "0"],
    ]
    (failures,) = broken.find_all("table", "failures")
    assert cells(failures.find_all("tr")[1])[:2] == ["db1", "Write the key/value file"]
    results = {
        d.find_all("code")[0].text: ("open" in d.attrs, len(d.find_all("tr")) - 1)
        for d in broken.find_all("details", "results")
    }
    assert results == {"db1": (True, 2), "db2": (False, 1)}  # open where a task failed
    (outputs,) = broken.find_all("table", "outputs")
    values = {cells(r)[0]: cells(r)[1] for r in outputs.find_all("tr")[1:]}
    assert values["path"] == "/tmp is a folder"
    assert json.loads(values["nested"]) == {"list": [1, "/tmp is a folder"]}


# --- safety ------------------------------------------------------------------------------


def test_report_values_appear_only_escaped() -> None:
    report = failed_report(identity=f"acme/{CANARY}", text=f"boom {CANARY}")
    report.commands[0].hosts[CANARY] = HostStats(failed=1)
    report.commands[0].drift[CANARY] = [{"key": CANARY, "change": CANARY}]
    report.outputs[CANARY] = CANARY
    text = html_report([report], title=CANARY)
    assert "<script" not in text.lower() and CANARY not in text and "\"'&" not in text
    page = Page(text)
    assert not [tag for tag, _ in page.tags if tag in EXTERNAL_TAGS]
    shown = page.root.text
    # a browser shows every value as it was: in the title, identity, host, error, drift, output
    assert shown.count(CANARY) >= 10
    (drift,) = page.root.find_all("table", "drift")
    assert drift.attrs["data-host"] == CANARY and cells(drift.find_all("tr")[1])[0] == CANARY


def test_no_resource_is_loaded_and_only_report_urls_are_links() -> None:
    reports = all_statuses()
    reports[1].outputs["docs"] = "https://elsewhere.example/readme"  # an output, not a link
    text = html_report(reports)
    page = Page(text)
    assert not [tag for tag, _ in page.tags if tag in EXTERNAL_TAGS]
    (style,) = page.root.find_all("style")
    assert "url(" not in style.text and "@import" not in style.text
    (csp,) = [a["content"] for t, a in page.tags if t == "meta" and "http-equiv" in a]
    assert "default-src 'none'" in csp
    hrefs = set()
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if "http" in value.lower():
                assert (tag, name) == ("a", "href"), (tag, name, value)
        if tag == "a":
            hrefs.add(attrs["href"])
    assert {h for h in hrefs if not h.startswith("#task-")} == {JOB, PIPELINE}
    assert "elsewhere.example" in page.root.text


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)//https://x",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://gitlab.example/\njavascript:x",
        "//evil.example/x",
        "http://[broken",
    ],
)
def test_a_job_url_that_is_not_a_web_url_is_not_linked(url: str) -> None:
    report = Report("acme/web", "kv_file", None, Status.FAILED, job_url=url, pipeline_url=url)
    page = Page(html_report([report]))
    assert [a["href"] for t, a in page.tags if t == "a"] == ["#task-1"]
    # still shown, as text, so nothing is hidden from the operator
    assert url in [dd.text for dd in page.root.find_all("dd")]


def test_control_characters_and_lone_surrogates_are_shown_not_written() -> None:
    report = Report("acme/\x1b[31mred\x00", "kv_file", None, Status.ERROR, error="bad \ud800 text")
    text = html_report([report])
    text.encode("utf-8")  # a lone surrogate would raise here
    assert "\x1b" not in text and "\x00" not in text
    assert "acme/\\x1b[31mred\\x00" in Page(text).root.text and "bad \ufffd text" in text


def test_bidi_overrides_and_invisible_marks_cannot_disguise_a_value() -> None:
    # U+202E would show "acme/evil" reversed; U+200B would hide inside a name
    report = Report("acme/\u202elive\u200b", "kv_file", None, Status.ERROR, error="a\u2066b")
    text = html_report([report])
    assert not any(ch in text for ch in "\u202e\u200b\u2066")
    shown = Page(text).root.text
    assert "acme/\\u202elive\\u200b" in shown and "a\\u2066b" in shown


def test_the_same_reports_give_the_same_bytes_whatever_the_process() -> None:
    data = json.dumps([r.to_dict(results=True) for r in all_statuses()])
    code = (
        "import json, sys; from runner_agent.report.model import load_report; "
        "from runner_agent.report.html import html_report; "
        "print(html_report([load_report(r) for r in json.loads(sys.stdin.read())]))"
    )
    pages = {
        subprocess.run(
            [sys.executable, "-c", code],
            input=data,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(pages) == 1 and "acme/broken" in pages.pop()


# --- the command line ----------------------------------------------------------------------


def test_collect_writes_the_page_and_keeps_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    for n, report in enumerate([cycle_report(), failed_report()]):
        (folder / f"{n:04d}.json").write_text(report.to_json())
    page = tmp_path / "out" / "report.html"
    assert main(["collect", str(folder), "--html", str(page), "--expect", "3"]) == 1
    assert main(["collect", str(folder), "--expect", "3"]) == 1  # the same without --html
    printed = capsys.readouterr().out
    assert "acme/broken" in printed  # the table is printed as before
    parsed = Page(page.read_text(encoding="utf-8"))
    assert set(details_by_identity(parsed)) == {"acme/web", "acme/broken"}
    assert "1 task report(s) missing" in parsed.root.text
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]  # no temporary left


def test_run_html_shows_the_drift_a_real_cycle_found(tmp_path: Path) -> None:
    target = tmp_path / "web.json"
    task = tmp_path / "web.yml"
    config = {"path": str(target), "values": {"port": 8080, "tls": "on"}}
    task.write_text(yaml.safe_dump({"identity": "acme/web", "agent": "kv_file", "config": config}))
    local = ["--local", "--state-dir", str(tmp_path / "state")]
    assert main(["run", str(task), *local]) == 0
    target.write_text(json.dumps({"port": 9090, "debug": True}))  # edited by hand
    page = tmp_path / "cycle.html"
    assert main(["run", str(task), *local, "--command", "cycle", "--html", str(page)]) == 0
    web = details_by_identity(Page(page.read_text(encoding="utf-8")))["acme/web"]
    (table,) = web.find_all("table", "drift")
    assert table.attrs["data-host"] == "localhost"
    assert sorted(cells(r) for r in table.find_all("tr")[1:]) == [
        ["debug", "removed", "true", "(absent)"],
        ["port", "changed", "9090", "8080"],
        ["tls", "added", "(absent)", '"on"'],
    ]


def test_collect_html_where_no_file_can_be_written_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    report.write_text(cycle_report().to_json())
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert main(["collect", str(report), "--html", str(tmp_path / "blocker" / "r.html")]) == 2
    assert "r.html: cannot write" in capsys.readouterr().err


def test_help_says_what_the_page_holds() -> None:
    from click.testing import CliRunner

    from runner_agent.cli import cli

    for command in ("collect", "reports", "summarize"):
        result = CliRunner().invoke(cli, [command, "--help"])
        text = " ".join(result.output.split())
        assert result.exit_code == 0 and "--html FILE" in text, command
        assert "HTML page" in text and "failures first" in text, command


# --- the pipelines -------------------------------------------------------------------------


def _expose_ok(artifacts: dict[str, Any]) -> None:
    name = artifacts["expose_as"]
    assert EXPOSE_AS.fullmatch(name) and len(name) <= 100
    for path in artifacts["paths"]:  # what GitLab can link: no glob, no variable, no ./
        assert "*" not in path and "$" not in path and not path.startswith("./"), path


def test_every_collect_job_writes_and_exposes_its_page() -> None:
    tasks = [Task(f"acme/{c}", "kv_file", "update") for c in "abcd"]
    pipelines = render_child(tasks, RenderOptions(max_jobs=3))
    assert len(pipelines) == 2
    for number, pipeline in enumerate(pipelines, 1):
        doc = yaml.safe_load(pipeline.text)
        collect = doc[f"runner-agent-collect-{number}"]
        page = f".runner-agent/report-{number}.html"
        assert f"--html '{page}'" in collect["script"][0]
        assert collect["artifacts"]["paths"] == [pipeline.summary, page]
        assert collect["artifacts"]["when"] == "always"
        _expose_ok(collect["artifacts"])


@pytest.mark.parametrize(
    "path",
    [
        templates_dir() / "agent-project.gitlab-ci.yml",
        templates_dir() / "component" / "templates" / "agent.yml",
    ],
    ids=["parent", "component"],
)
def test_the_summary_job_writes_and_exposes_its_page(path: Path) -> None:
    _, config = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    job = config["runner-agent-summary"]
    assert job["script"][0].endswith("--html .runner-agent/report.html")
    assert ".runner-agent/report.html" in job["artifacts"]["paths"]
    assert ".runner-agent/summary.json" in job["artifacts"]["paths"]
    _expose_ok(job["artifacts"])


def test_a_rollbacks_conflicts_are_listed_per_host() -> None:
    report = Report("acme/db", "kv_etcd", "1", Status.SUCCESS)
    report.conflicts = {
        "localhost": [{"key": "a", "found": {"value": "by-hand"}, "expected": {"value": "2"}}]
    }
    page = Page(html_report([report]))
    (table,) = details_by_identity(page)["acme/db"].find_all("table", "conflicts")
    assert [cells(r) for r in table.find_all("tr")[1:]] == [["a", '"by-hand"', '"2"']]
