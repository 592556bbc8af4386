"""A 1,000-task dispatch with the default grouping against one task per job, side by side:
runner jobs created, pipelines created, and API requests.

Counted, not timed: the jobs and pipelines from the YAML ``render`` writes for the plan job
(the parent pipeline's own jobs added: plan, the trigger job, summary), the dispatcher's
requests through the tests' GitLab stand-in (tests/gitlab/fake_gitlab.py, the real
python-gitlab client), and the jobs' requests by what each job does:

- runner-agent in a task job: per task one state read, one state write and one report upload
  (gitlab/state_store.py, gitlab/bundle.py ``publish_reports``), the same whatever the
  grouping; the collect job of each child pipeline uploads its summary and the summary job
  reads each part's summary and writes the merged one;
- the runner itself, per job: at least 4 requests of the runner API (lib/api/ci/runner.rb in
  gitlab-org/gitlab: ``POST /jobs/request`` to take it, ``GET /jobs/:id/artifacts`` for the
  plan job's task files, ``POST /jobs/:id/artifacts`` for its reports, ``PUT /jobs/:id`` to
  finish), log uploads (``PATCH /jobs/:id/trace``) not counted: a floor, not a measure.

With ``--timed`` it also measures, side by side in one run, ``runner-agent run --local`` of
1, 5, 10, 20, 50 and 100 kv_file tasks (benchmarks/bench_batch.py's tasks), and prints what a
1,000-task dispatch costs per choice of tasks per job, a runner job's own start assumed at
RUNNER_START seconds (image, checkout, artifacts down and up, Python: not measured here): the
figures docs/scaling.md chose the default from.

    python benchmarks/bench_grouping.py [TASKS] [--timed]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gitlab"))

from fake_gitlab import CANARY_TOKEN, FakeGitLab, mocked  # noqa: E402

from runner_agent.gitlab.api import connect  # noqa: E402
from runner_agent.gitlab.dispatch import Dispatcher  # noqa: E402
from runner_agent.gitlab.inflight import MemoryLedger  # noqa: E402
from runner_agent.gitlab.retry import RetryPolicy  # noqa: E402
from runner_agent.model.agents import default_registry  # noqa: E402
from runner_agent.model.tasks import Task, tasks_from_data  # noqa: E402
from runner_agent.pipeline.grouping import DEFAULT_TASKS_PER_JOB  # noqa: E402
from runner_agent.pipeline.render import RenderOptions, render_child, render_index  # noqa: E402

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
TASKS = int(ARGS[0]) if ARGS else 1000
TIMED = "--timed" in sys.argv
RUNNER_START = 10.0  # seconds: a shell-executor runner's own work per job (an assumption)
SLOTS = 8  # jobs a handful of runners run at once (4 runners, concurrent = 2)
SIZES = (1, 5, 10, 20, 50, 100)
PARENT_JOBS = 3  # runner-agent-plan, runner-agent-run (a trigger job), runner-agent-summary
RUNNER_REQUESTS_PER_JOB = 4  # a floor: see the module's text
MAX_JOBS = 200  # the agent project's max_jobs default


@dataclass
class Count:
    task_jobs: int = 0
    jobs: int = 0
    pipelines: int = 0
    dispatcher: int = 0
    agents: int = 0
    runner: int = 0

    @property
    def requests(self) -> int:
        return self.dispatcher + self.agents + self.runner


def dispatcher_requests(tasks: list[Task], per_job: int) -> int:
    """Submit, one poll that finds it finished, and the reports: through the stand-in."""
    fake = FakeGitLab()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with mocked(fake):
        api = connect(
            {"GITLAB_URL": "http://localhost", "GITLAB_TOKEN": CANARY_TOKEN},
            project="42",
            retry_policy=RetryPolicy(sleep=sleep, now=lambda: now[0]),
        )
        dispatcher = Dispatcher(
            api,
            ledger=MemoryLedger(),
            clock=lambda: now[0],
            sleep=sleep,
            warn=lambda _: None,
            tasks_per_job=per_job,
        )
        handle = dispatcher.submit(tasks)
        fake.set_status(handle.pipeline_id, "success")
        dispatcher.wait(handle, interval=10)
        return len(fake.calls)


def count(tasks: list[Task], per_job: int) -> Count:
    opts = RenderOptions(
        tasks_per_job=per_job, max_jobs=MAX_JOBS, tasks_from_job="runner-agent-plan"
    )
    children = render_child(tasks, opts)
    found = Count(pipelines=1 + len(children), jobs=PARENT_JOBS)
    for child in children:
        doc = yaml.safe_load(child.text)
        found.jobs += sum(1 for k in doc if k not in ("stages", "default", "variables"))
        found.task_jobs += len(child.job_tasks)
    if len(children) > 1:  # the index pipeline: its fetch job and a trigger job per part
        files = [f".runner-agent/pipeline-{n}.yml" for n in range(1, len(children) + 1)]
        index = yaml.safe_load(render_index(files, tasks_from_job="runner-agent-plan"))
        found.pipelines += 1
        found.jobs += sum(1 for k in index if k not in ("stages", "variables"))
    found.dispatcher = dispatcher_requests(tasks, per_job)
    # per task: state read + write, report upload; per child: summary upload; summary job:
    # one read per part, one upload
    found.agents = 3 * len(tasks) + len(children) + len(children) + 1
    found.runner = RUNNER_REQUESTS_PER_JOB * found.jobs
    return found


def main() -> None:
    registry = default_registry()
    items = [
        {
            "identity": f"bench/t{i:04d}",
            "agent": "kv_file",
            "runner": {"tags": [f"dc{i % 3}"]},  # three runner pools
            "config": {"path": f"/tmp/bench/{i}.json", "values": {"i": i}},
        }
        for i in range(TASKS)
    ]
    tasks = tasks_from_data(items, "<bench>", registry)
    one, grouped = count(tasks, 1), count(tasks, DEFAULT_TASKS_PER_JOB)
    print(f"dispatch of {TASKS} tasks on 3 runner tag sets (max_jobs {MAX_JOBS})")
    print(f"  {'':34s} {'1 per job':>10s} {f'{DEFAULT_TASKS_PER_JOB} per job':>11s} {'ratio':>7s}")
    rows = [
        ("task jobs", one.task_jobs, grouped.task_jobs),
        ("jobs created (all pipelines)", one.jobs, grouped.jobs),
        ("pipelines created", one.pipelines, grouped.pipelines),
        ("API: dispatcher (measured)", one.dispatcher, grouped.dispatcher),
        ("API: runner-agent in the jobs", one.agents, grouped.agents),
        (f"API: runner, {RUNNER_REQUESTS_PER_JOB} per job (floor)", one.runner, grouped.runner),
        ("API requests in all", one.requests, grouped.requests),
    ]
    for name, a, b in rows:
        print(f"  {name:34s} {a:10d} {b:11d} {b / a:7.2f}")
    if TIMED:
        timed_choice()


def timed_choice() -> None:
    """Runner time and wall time of a 1,000-task dispatch per tasks-per-job, from measured
    `run --local` times of a job's worth of tasks and the assumed start of a runner job."""
    import math
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _bench import BIN, clean_env, side_by_side, timed

    argv, sys.argv = sys.argv, sys.argv[:1]  # bench_batch reads its own arguments on import
    from bench_batch import task_file

    sys.argv = argv

    work = Path(tempfile.mkdtemp(prefix="bench-grouping-"))

    def run(count: int) -> float:
        cmd = [str(BIN / "runner-agent"), "run", str(task_file(work, count)), "--local"]
        return timed([*cmd, "--state-dir", str(work / "state")], clean_env())

    seconds = side_by_side({str(n): (lambda n=n: run(n)) for n in SIZES}, 2)
    print(f"\n1,000 tasks; a runner job's start assumed {RUNNER_START:.0f} s; {SLOTS} slots")
    print(f"  {'per job':>7s} {'run --local':>11s} {'jobs':>5s} {'runner-s':>9s} {'wall s':>7s}")
    for n in SIZES:
        jobs = math.ceil(1000 / n)
        job = RUNNER_START + seconds[str(n)]
        wall = math.ceil(jobs / min(SLOTS, 16)) * job  # 16 lock shards cap it too
        print(f"  {n:7d} {seconds[str(n)]:10.2f}s {jobs:5d} {jobs * job:9.0f} {wall:7.0f}")


if __name__ == "__main__":
    main()
