"""API requests needed to dispatch 1,000 tasks, wait for them, and fetch every report.

Counted against the tests' stateful GitLab stand-in (``responses``), with an injected clock:
no network, no waiting. Targets: submit <= 10 requests, polling <= 1 request per pipeline per
interval, every report in <= 2 requests.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gitlab"))

from fake_gitlab import CANARY_TOKEN, FakeGitLab, mocked  # noqa: E402

from runner_agent.gitlab.api import connect  # noqa: E402
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, dump  # noqa: E402
from runner_agent.gitlab.dispatch import Dispatcher  # noqa: E402
from runner_agent.gitlab.inflight import MemoryLedger  # noqa: E402
from runner_agent.gitlab.retry import RetryPolicy  # noqa: E402
from runner_agent.model.agents import default_registry  # noqa: E402
from runner_agent.model.tasks import tasks_from_data  # noqa: E402
from runner_agent.report.model import Report, Status, merge_reports  # noqa: E402

TASKS = 1000
INTERVAL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def verdict(value: float, target: float) -> str:
    return "meets target" if value <= target else "MISSES target"


def main() -> None:
    registry = default_registry()
    items = [
        {
            "identity": f"bench/t{i:04d}",
            "agent": "kv_file",
            "config": {"path": f"/tmp/bench/{i}.json", "values": {"i": i, "pw": "${env:PW}"}},
        }
        for i in range(TASKS)
    ]
    tasks = tasks_from_data(items, "<bench>", registry)
    fake = FakeGitLab()
    clock = Clock()
    with mocked(fake):
        api = connect(
            {"GITLAB_URL": "http://localhost", "GITLAB_TOKEN": CANARY_TOKEN},
            project="42",
            retry_policy=RetryPolicy(sleep=clock.sleep, now=clock),
        )
        said: list[str] = []
        dispatcher = Dispatcher(
            api, ledger=MemoryLedger(), clock=clock, sleep=clock.sleep, warn=said.append
        )

        started = time.perf_counter()
        handle = dispatcher.submit(tasks)  # the default branch is asked for: one more request
        submit_seconds = time.perf_counter() - started
        submit = len(fake.calls)
        bundle = fake.package(DISPATCH_PACKAGE, handle.dispatch_id, "bundle.json") or b""

        fake.calls.clear()
        polls = 0

        def progress(status: object, elapsed: float) -> None:
            nonlocal polls
            polls += 1
            if elapsed >= 30 * 60:  # the tasks take half an hour
                fake.set_status(handle.pipeline_id, "success")

        start = clock()
        dispatcher.wait(handle, interval=INTERVAL, max_interval=60, progress=progress)
        waited = clock() - start
        wait_requests = len(fake.calls)
        intervals = waited / INTERVAL

        reports = [Report(t.identity, "kv_file", "1.0.0", Status.SUCCESS) for t in tasks]
        fake.put_package(
            DISPATCH_PACKAGE, handle.dispatch_id, "summary.json", dump(merge_reports(reports))
        )
        fake.calls.clear()
        found = dispatcher.reports(handle)
        fetch = len(fake.calls)

        fake.calls.clear()
        fake.inject("PUT", "package", "503")
        fake.inject("POST", "create_pipeline", "timeout!")
        dispatcher.submit(tasks_from_data(items[:1], "<bench>", registry), ref="main")
        faulty_requests = len(fake.calls)
        one_pipeline = len(
            [p for p in fake.created_pipelines() if "runner-agent" in str(p["name"])]
        )

    print(
        f"dispatch of {TASKS} tasks: bundle {len(bundle) / 1024:.0f} KiB, "
        f"validated and rendered locally in {submit_seconds:.2f}s"
    )
    print(f"  submit          {submit:4d} requests   (target <= 10: {verdict(submit, 10)})")
    print(
        f"  wait            {wait_requests:4d} requests over {waited / 60:.0f} min = "
        f"{wait_requests / intervals:.2f} per {INTERVAL:.0f}s interval "
        f"(target <= 1: {verdict(wait_requests / intervals, 1)})"
    )
    print(
        f"  every report    {fetch:4d} requests for {len(found.reports)} reports "
        f"(target <= 2: {verdict(fetch, 2)})"
    )
    print(
        f"  submit under faults (503 on upload, answer lost after creation): "
        f"{faulty_requests} requests, {one_pipeline} pipelines in all for 2 dispatches"
    )


if __name__ == "__main__":
    main()
