"""The dispatcher's logic against GitLab in memory (the seam): the order of a submit's
requests, coalescing, the in-flight checks, exactly one pipeline."""

from __future__ import annotations

import pytest
from gitlab_helpers import Clock, kv_task, make_tasks
from memory_gitlab import MemoryGitLab

from runner_agent.core.errors import GitLabError, LockedError
from runner_agent.gitlab.bundle import BUNDLE_FILE, DISPATCH_PACKAGE
from runner_agent.gitlab.dispatch import Dispatcher
from runner_agent.gitlab.inflight import LOCK_PACKAGE, MemoryLedger
from runner_agent.gitlab.port import ApiError
from runner_agent.model.agents import AgentRegistry


@pytest.fixture
def gitlab() -> MemoryGitLab:
    return MemoryGitLab()


def dispatcher_on(gitlab: MemoryGitLab, clock: Clock) -> Dispatcher:
    """A dispatcher with its own ledger: a machine of its own."""
    return Dispatcher(api=gitlab, ledger=MemoryLedger(), clock=clock, sleep=clock.sleep, settle=1.0)


@pytest.fixture
def dispatcher(gitlab: MemoryGitLab, clock: Clock) -> Dispatcher:
    return dispatcher_on(gitlab, clock)


def test_a_submit_uploads_the_bundle_then_creates_the_pipeline_then_marks_the_identities(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    kinds = [
        (call[0], call[1] if call[0] == "put_package_file" else "") for call in gitlab.writes()
    ]
    assert kinds == [
        ("put_package_file", DISPATCH_PACKAGE),
        ("create_pipeline", ""),
        ("put_package_file", LOCK_PACKAGE),
    ]
    assert gitlab.package(DISPATCH_PACKAGE, handle.dispatch_id, BUNDLE_FILE) is not None


def test_an_identical_submit_joins_the_run_in_flight(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    first = dispatcher.submit(make_tasks(registry), ref="main")
    again = dispatcher.submit(make_tasks(registry), ref="main")
    assert again == first and len(gitlab.created_pipelines()) == 1


def test_a_different_run_on_an_identity_is_refused_and_writes_nothing(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    first = dispatcher.submit(make_tasks(registry), ref="main")
    writes = len(gitlab.writes())
    with pytest.raises(LockedError, match=first.web_url):
        dispatcher.submit(make_tasks(registry, kv_task(command="uninstall")), ref="main")
    assert len(gitlab.writes()) == writes


def test_an_overlapping_batch_is_a_different_run(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    dispatcher.submit(make_tasks(registry), ref="main")
    with pytest.raises(LockedError):
        dispatcher.submit(make_tasks(registry, kv_task(), kv_task("acme/db")), ref="main")


@pytest.mark.parametrize("ended", ["success", "failed", "canceled"])
def test_a_finished_run_neither_is_joined_nor_blocks(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry, ended: str
) -> None:
    first = dispatcher.submit(make_tasks(registry), ref="main")
    gitlab.set_status(first.pipeline_id, ended)
    other = dispatcher.submit(make_tasks(registry, kv_task(command="uninstall")), ref="main")
    gitlab.set_status(other.pipeline_id, ended)
    again = dispatcher.submit(make_tasks(registry), ref="main")
    assert len({first.pipeline_id, other.pipeline_id, again.pipeline_id}) == 3


def test_another_machines_run_is_found_through_its_marker(
    gitlab: MemoryGitLab, clock: Clock, registry: AgentRegistry
) -> None:
    first = dispatcher_on(gitlab, clock).submit(make_tasks(registry), ref="main")
    second = dispatcher_on(gitlab, clock).submit(make_tasks(registry), ref="main")
    assert second == first and len(gitlab.created_pipelines()) == 1
    with pytest.raises(LockedError):
        dispatcher_on(gitlab, clock).submit(
            make_tasks(registry, kv_task(command="uninstall")), ref="main"
        )


@pytest.mark.parametrize("fault", ["lost", "unsent"])
def test_a_creation_that_may_have_failed_ends_with_exactly_one_pipeline(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry, fault: str
) -> None:
    gitlab.server.creation_faults.append(fault)  # answer lost after GitLab acted, or before
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    (created,) = gitlab.created_pipelines()
    assert handle.pipeline_id == created["id"]


def test_creation_gives_up_after_its_rounds_with_at_most_one_pipeline(
    gitlab: MemoryGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    gitlab.server.creation_faults.extend(["unsent"] * dispatcher.ambiguous_rounds)
    with pytest.raises(GitLabError, match="could not create the pipeline"):
        dispatcher.submit(make_tasks(registry), ref="main")
    assert gitlab.created_pipelines() == []


def test_the_stand_in_refuses_package_versions_gitlab_refuses(gitlab: MemoryGitLab) -> None:
    with pytest.raises(ApiError) as refused:
        gitlab.put_package_file(DISPATCH_PACKAGE, "acme..web", "state.json", b"{}")
    assert refused.value.status == 400
