"""One dotenv report per job, within GitLab's per-job limits: at most 20 variables and a file
smaller than 5 KB (doc/administration/instance_limits.md; GitLab refuses the whole artifact
beyond, app/services/ci/parse_dotenv_artifact_service.rb). What is left out is named in the
task's report, never silently cut."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from runner_agent.report.files import write_dotenv
from runner_agent.report.html import write_html
from runner_agent.report.model import DOTENV_BYTES, DOTENV_MAX, Report, Status, job_dotenv

# GitLab's reading of a dotenv line (parse_dotenv_artifact_service.rb, scan_line!)
GITLAB_LINE = re.compile(r"^(.*?)=(.*)$")


def report(identity: str, status: Status = Status.SUCCESS, **outputs: object) -> Report:
    return Report(identity, "kv_file", "1.0.0", status, outputs=dict(outputs))


def _gitlab_reads(text: str) -> dict[str, str]:
    """The variables GitLab would take, or AssertionError where it would refuse the file."""
    assert len(text.encode()) < DOTENV_BYTES, "Dotenv Artifact Too Big"
    found = {}
    for line in text.splitlines():
        match = GITLAB_LINE.match(line)
        assert match, f"Invalid Format: {line!r}"
        found[match[1].strip()] = match[2].strip()
    assert len(found) <= DOTENV_MAX, "Dotenv files cannot have more than 20 variables"
    return found


def test_more_statuses_than_gitlab_reads_are_named_in_the_reports(tmp_path: Path) -> None:
    reports = [report(f"acme/n{i:02d}", url=f"http://n{i}") for i in range(25)]
    env = tmp_path / "job.env"
    write_dotenv(env, reports)
    found = _gitlab_reads(env.read_text())
    assert list(found) == [f"RA_ACME_N{i:02d}_STATUS" for i in range(20)]  # statuses first
    for i, r in enumerate(reports):
        left = [n for n in r.notes if n.startswith("dotenv:")]
        if i < 20:
            assert left and f"RA_ACME_N{i:02d}_URL" in left[0]  # its output had no room
            assert f"RA_ACME_N{i:02d}_STATUS" not in left[0]
        else:
            assert f"RA_ACME_N{i:02d}_STATUS" in left[0] and "20 variables" in left[0]
        assert r.outputs == {"url": f"http://n{i}"}  # the report keeps every output


def test_a_file_of_exactly_5120_bytes_is_not_written() -> None:
    # status line "RA_A_STATUS=success\n" is 20 bytes; one output line to reach 5120 exactly
    name = "RA_A_BIG="
    value = "x" * (DOTENV_BYTES - 20 - len(name) - 1)
    text, left = job_dotenv([report("a", big=value).to_dict()])
    assert len(("RA_A_STATUS=success\n" + name + value + "\n").encode()) == DOTENV_BYTES
    assert text == "RA_A_STATUS=success\n" and left == [["RA_A_BIG"]]
    text, left = job_dotenv([report("a", big=value[1:]).to_dict()])  # one byte less fits
    assert len(text.encode()) == DOTENV_BYTES - 1 and left == [[]]


def test_an_identity_with_several_tasks_shows_its_last(tmp_path: Path) -> None:
    first = report("acme/web", url="http://old", port=1)
    last = report("acme/web", Status.FAILED, url="http://new")
    found = _gitlab_reads(job_dotenv([first.to_dict(), last.to_dict()])[0])
    assert found == {"RA_ACME_WEB_STATUS": "failed", "RA_ACME_WEB_URL": "http://new"}


def test_the_html_page_shows_the_notes(tmp_path: Path) -> None:
    reports = [report(f"acme/n{i:02d}") for i in range(21)]
    write_dotenv(tmp_path / "job.env", reports)
    write_html(tmp_path / "r.html", reports)
    page = (tmp_path / "r.html").read_text()
    assert "<h3>Notes</h3>" in page and "RA_ACME_N20_STATUS left out" in page


IDENTITIES = ["acme/a", "acme/b", "acme/c-d", "x/y/z", "w"]
VALUES = st.one_of(
    st.text(max_size=400),
    st.integers(),
    st.lists(st.integers(), max_size=5),
    st.text(alphabet="é\u2028\n\r=#", max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(IDENTITIES),
            st.sampled_from(list(Status)),
            st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True), VALUES),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_job_gives_a_file_gitlab_takes_and_names_what_is_left(
    items: list[tuple[str, Status, dict[str, object]]],
) -> None:
    reports = [report(i, s, **o) for i, s, o in items]
    text, left = job_dotenv([r.to_dict() for r in reports])
    found = _gitlab_reads(text)
    last = {r.identity: n for n, r in enumerate(reports)}
    kinds = [name.endswith("_STATUS") for name in found]  # outputs never end in _STATUS
    assert kinds == sorted(kinds, reverse=True)  # every status before any output
    for n, r in enumerate(reports):
        prefix = "RA_" + re.sub(r"[^A-Za-z0-9_]", "_", r.identity).upper() + "_"
        if last[r.identity] != n:
            assert left[n] == []  # an earlier task of the identity: its last one speaks
            continue
        status = prefix + "STATUS"
        assert (found.get(status) == r.status.value) != (status in left[n])
        for key, value in r.outputs.items():
            name = re.sub(r"[^A-Za-z0-9_]", "_", prefix + key).upper()
            text = value if isinstance(value, str) else ""
            dropped = (
                name.endswith("_STATUS")
                or len(text.splitlines()) > 1
                or (text and text.splitlines()[0] != text)
            )
            # in the file GitLab takes, or named in the task's report, or not dotenv material
            assert name in found or name in left[n] or dropped, name
            assert not (name in found and name in left[n])
