"""One task dispatched: jobs on its critical path, and ``dispatch --wait`` against ``run --local``.

Through the round-trip stand-in (tests/roundtrip/): a GitLab on 127.0.0.1 whose pipelines
gitlab-ci-local runs with the shipped agent project, the jobs calling back with a job token.
Side by side in one run, on this machine, for the same kv_file task (a fresh identity each
round, so every run installs, then updates):

- the one-job path (the default for a dispatch that fits in one job): jobs created;
- the parent/child path (``--no-one-job``): plan, the task's job, collect, summary;
- ``run --local`` of the task.

Targets (issue 13): 1 job on the critical path (parent/child: 4), and ``dispatch --wait`` at
most 1.5 times ``run --local``. A runner's own start per job (image, checkout) is not in
gitlab-ci-local's shell executor: on GitLab each job of the parent/child path pays it again.

Run: .venv/bin/python benchmarks/bench_one_job.py [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gitlab"))
sys.path.insert(0, str(ROOT / "tests" / "roundtrip"))

from harness import operator_cli, running_standin  # noqa: E402
from standin import Cli, GitLabStandIn  # noqa: E402

TARGET_JOBS = 1
TARGET_RATIO = 1.5


def _task(tmp: Path, name: str) -> Path:
    task = {
        "identity": f"bench/{name}",
        "agent": "kv_file",
        "config": {"path": str(tmp / "out" / f"{name}.json"), "values": {"n": 1}},
    }
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump([task]))
    return path


def _jobs(standin: GitLabStandIn, pipeline_id: int) -> int:
    """Jobs of the pipeline and of its child pipelines (bridges are not jobs): for one task
    every one of them is on the critical path, one after the other."""
    children = [int(b["downstream_pipeline"]["id"]) for b in standin.bridges.get(pipeline_id, [])]
    return sum(len(standin.jobs.get(p, [])) for p in [pipeline_id, *children])


def _dispatch(
    cli: Cli, standin: GitLabStandIn, path: Path, *flags: str
) -> tuple[float, float, int]:
    """Seconds of ``dispatch --wait``, seconds the engine ran the pipeline, jobs."""
    started = time.perf_counter()
    code, out, err = cli("dispatch", str(path), *flags, "--wait", "--interval", "1", "-o", "json")
    seconds = time.perf_counter() - started
    handle: Any = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
    assert code == 0 and json.loads(out)["counts"] == {"success": 1}, err
    run = standin.runs[int(handle["pipeline_id"])]
    engine = (run.ended or run.started) - run.started
    return seconds, engine, _jobs(standin, int(handle["pipeline_id"]))


def _local(cli: Cli, path: Path, state: Path) -> float:
    started = time.perf_counter()
    code, _, err = cli("run", str(path), "--local", "--state-dir", str(state), "-o", "json")
    assert code == 0, err
    return time.perf_counter() - started


def main(rounds: int) -> None:
    one: list[float] = []
    split: list[float] = []
    local: list[float] = []
    engine: dict[str, list[float]] = {"one": [], "split": []}
    jobs: dict[str, set[int]] = {"one": set(), "split": set()}
    with tempfile.TemporaryDirectory(prefix="ra-bench-") as folder:
        tmp = Path(folder)
        with running_standin(tmp) as standin, pytest.MonkeyPatch.context() as patch:
            cli = operator_cli(standin, patch, tmp)
            for n in range(rounds):  # interleaved, so drift hits all three alike
                seconds, ran, count = _dispatch(cli, standin, _task(tmp, f"one{n}"))
                one.append(seconds)
                engine["one"].append(ran)
                jobs["one"].add(count)
                path = _task(tmp, f"split{n}")
                seconds, ran, count = _dispatch(cli, standin, path, "--no-one-job")
                split.append(seconds)
                engine["split"].append(ran)
                jobs["split"].add(count)
                local.append(_local(cli, _task(tmp, f"local{n}"), tmp / "state"))
    m_one, m_split, m_local = (statistics.median(x) for x in (one, split, local))
    ratio = m_one / m_local
    print(f"one kv_file task, {rounds} rounds, medians (gitlab-ci-local shell executor)")
    print(f"{'':28}{'one job':>12}{'parent/child':>14}{'run --local':>13}")
    print(
        f"{'jobs on the critical path':28}{_set(jobs['one']):>12}{_set(jobs['split']):>14}{'-':>13}"
    )
    print(f"{'seconds (dispatch --wait)':28}{m_one:>12.2f}{m_split:>14.2f}{m_local:>13.2f}")
    e_one, e_split = (statistics.median(engine[k]) for k in ("one", "split"))
    print(f"{'seconds (engine ran it)':28}{e_one:>12.2f}{e_split:>14.2f}{'-':>13}")
    print(f"{'ratio to run --local':28}{ratio:>12.2f}{m_split / m_local:>14.2f}{1:>13.2f}")
    ok_jobs = jobs["one"] == {TARGET_JOBS}
    print(f"jobs: {_set(jobs['one'])} (target {TARGET_JOBS}) {_verdict(ok_jobs)}")
    print(
        f"dispatch --wait / run --local: {ratio:.2f} (target <= {TARGET_RATIO}) "
        f"{_verdict(ratio <= TARGET_RATIO)}"
    )


def _set(values: set[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
