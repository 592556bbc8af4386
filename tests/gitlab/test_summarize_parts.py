"""The summarize job of a split dispatch: the plan job's ``parts.json`` names every part's
summary file and tasks, so a part whose collect job uploaded nothing costs only its own tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_gitlab import FakeGitLab
from gitlab_helpers import JOB_ENV, Clock, RunCli, kv_task, make_tasks

from runner_agent.core.errors import InvalidInput
from runner_agent.gitlab.api import connect
from runner_agent.gitlab.bundle import (
    DISPATCH_PACKAGE,
    PARTS_FILE,
    Bundle,
    Part,
    Parts,
    build_bundle,
    dump,
    job_context,
    load_parts,
    summarize,
)
from runner_agent.gitlab.retry import RetryPolicy
from runner_agent.model.agents import AgentRegistry
from runner_agent.report.model import Report, Status, merge_reports

IDENTITIES = ("a/1", "a/2", "b/1", "b/2", "c/1", "c/2")  # two tasks per part at max_jobs 3
NO_REPORT = "no report arrived from its job"


def _summary(*identities: str) -> bytes:
    return dump(merge_reports([Report(i, "kv_file", None, Status.SUCCESS) for i in identities]))


@pytest.fixture
def bundle(fake: FakeGitLab, registry: AgentRegistry) -> Bundle:
    made = build_bundle(make_tasks(registry, *(kv_task(i) for i in IDENTITIES)), ref="main")
    fake.put_package(DISPATCH_PACKAGE, made.dispatch_id, "bundle.json", made.data)
    return made


def _parts(bundle: Bundle) -> Parts:
    return Parts(
        bundle.dispatch_id,
        len(IDENTITIES),
        (
            Part("summary-1.json", (0, 1)),
            Part("summary-2.json", (2, 3)),
            Part("summary-3.json", (4, 5)),
        ),
    )


def _summarize(clock: Clock, bundle: Bundle, parts: Parts | None) -> dict[str, object]:
    api = connect(JOB_ENV, retry_policy=RetryPolicy(sleep=clock.sleep))
    ctx = job_context({**JOB_ENV, "RA_DISPATCH_ID": bundle.dispatch_id}, api=api)
    assert ctx is not None
    return summarize(ctx, parts)


def test_a_missing_middle_part_costs_only_its_own_tasks(
    fake: FakeGitLab, clock: Clock, bundle: Bundle
) -> None:
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-1.json", _summary("a/1", "a/2"))
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-3.json", _summary("c/1", "c/2"))
    before = len(fake.calls)

    merged = _summarize(clock, bundle, _parts(bundle))

    assert merged["tasks"] == 6 and merged["status"] == "error"
    assert merged["counts"] == {"success": 4, "error": 2}
    reports = merged["reports"]
    assert isinstance(reports, list)
    assert [(r["identity"], r["status"], r["error"]) for r in reports] == [
        ("a/1", "success", ""),
        ("a/2", "success", ""),
        ("b/1", "error", NO_REPORT),
        ("b/2", "error", NO_REPORT),
        ("c/1", "success", ""),
        ("c/2", "success", ""),
    ]
    # the bundle, one GET per part (the missing one included, not retried), the upload
    calls = [(c.method, c.path.rsplit("/", 1)[-1]) for c in fake.calls[before:]]
    assert calls == [
        ("GET", "bundle.json"),
        ("GET", "summary-1.json"),
        ("GET", "summary-2.json"),
        ("GET", "summary-3.json"),
        ("PUT", "summary.json"),
    ]
    stored = fake.package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary.json")
    assert json.loads(stored or b"") == merged


def test_without_the_parts_a_gap_still_hides_the_parts_after_it(
    fake: FakeGitLab, clock: Clock, bundle: Bundle
) -> None:
    """The fallback (summarize run without the plan job's artifacts), as documented."""
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-1.json", _summary("a/1", "a/2"))
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-3.json", _summary("c/1", "c/2"))
    merged = _summarize(clock, bundle, None)
    assert merged["counts"] == {"success": 2, "error": 4}


def test_a_task_missing_from_a_part_that_arrived_is_an_error_of_that_part(
    fake: FakeGitLab, clock: Clock, bundle: Bundle
) -> None:
    """A collect job whose task job was killed uploads fewer reports than its part's tasks."""
    for name, done in [("summary-1.json", ("a/1",)), ("summary-2.json", ("b/1", "b/2"))]:
        fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, name, _summary(*done))
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-3.json", _summary("c/1", "c/2"))
    merged = _summarize(clock, bundle, _parts(bundle))
    failed = merged["failed"]
    assert isinstance(failed, list)
    assert [(f["identity"], f["error"]) for f in failed] == [("a/2", NO_REPORT)]


def test_a_part_cannot_report_for_tasks_that_are_not_its_own(
    fake: FakeGitLab, clock: Clock, bundle: Bundle
) -> None:
    # part 1 also claims b/1 (part 2's, which sent nothing) and an identity of no task
    claims = _summary("a/1", "a/2", "b/1", "x/9")
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-1.json", claims)
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-3.json", _summary("c/1", "c/2"))
    merged = _summarize(clock, bundle, _parts(bundle))
    assert merged["tasks"] == 6 and merged["counts"] == {"success": 4, "error": 2}
    failed = merged["failed"]
    assert isinstance(failed, list)
    assert [f["identity"] for f in failed] == ["b/1", "b/2"]


def test_parts_of_another_dispatch_or_bundle_are_refused(
    fake: FakeGitLab, clock: Clock, bundle: Bundle
) -> None:
    other = Parts("20250101t000000-00-00", 6, _parts(bundle).parts)
    with pytest.raises(InvalidInput, match="another dispatch or bundle"):
        _summarize(clock, bundle, other)
    shorter = Parts(bundle.dispatch_id, 2, (Part("summary.json", (0, 1)),))
    with pytest.raises(InvalidInput, match="another dispatch or bundle"):
        _summarize(clock, bundle, shorter)
    assert fake.package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary.json") is None


def test_parts_document_round_trip_and_refusals(tmp_path: Path) -> None:
    parts = Parts("d-1", 3, (Part("summary-1.json", (0, 2)), Part("summary-2.json", (1,))))
    assert Parts.decode(parts.encode()) == parts
    assert load_parts(tmp_path / "none.json") is None
    with pytest.raises(InvalidInput, match="a task in no part or in two"):
        Parts("d-1", 3, (Part("summary-1.json", (0, 1)), Part("summary-2.json", (1,))))
    with pytest.raises(InvalidInput, match="not a summary file name"):
        Parts("d-1", 1, (Part("../bundle.json", (0,)),))
    with pytest.raises(InvalidInput, match="two parts name one summary"):
        Parts("d-1", 2, (Part("summary-1.json", (0,)), Part("summary-1.json", (1,))))
    bad = tmp_path / PARTS_FILE
    for text in (
        "[",
        '{"apiVersion": "runner-agent/v1"}',
        parts.encode().decode().replace('"tasks":[0,2]', '"tasks":[0,"2"]'),
    ):
        bad.write_text(text)
        with pytest.raises(InvalidInput, match=f"{PARTS_FILE}: not the plan job's parts"):
            load_parts(bad)


def test_plan_writes_the_parts_and_summarize_reads_them(
    fake: FakeGitLab,
    run_cli: RunCli,
    bundle: Bundle,
    registry: AgentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real hand-over: the plan job's ``parts.json`` (its artifact), the summarize CLI."""
    for key, value in {**JOB_ENV, "RA_DISPATCH_ID": bundle.dispatch_id}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITLAB_TOKEN")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        "plan", "--dispatch-id", bundle.dispatch_id, "--checksum", bundle.checksum,
        "--max-jobs", "3", "--tasks-per-job", "1", "--tasks-from-job", "runner-agent-plan",
        "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    written = json.loads(out)
    assert written["pipelines"] == 3 and ".runner-agent/parts.json" in written["files"]
    assert load_parts(tmp_path / ".runner-agent" / PARTS_FILE) == _parts(bundle)

    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-1.json", _summary("a/1", "a/2"))
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-3.json", _summary("c/1", "c/2"))
    code, out, err = run_cli("summarize", "-o", "json")  # the default --parts: the artifact
    assert code == 1, err
    assert json.loads(out)["counts"] == {"success": 4, "error": 2}
    summary = json.loads((tmp_path / ".runner-agent" / "summary.json").read_text())
    assert [f["identity"] for f in summary["failed"]] == ["b/1", "b/2"]

    (tmp_path / ".runner-agent" / PARTS_FILE).write_text("{}")
    code, _, err = run_cli("summarize")
    assert code == 2 and "not the plan job's parts" in err
