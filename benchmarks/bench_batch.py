"""Many tasks in one `runner-agent run --local`: what each task costs once Ansible has started.

Side by side in one run (medians): one kv_file task, 20 tasks and 200 tasks, each task its own
identity and file, all through the CLI as a user runs them. They share ansible-playbook runs
(one play per task), so the fixed cost (Python, Ansible's start-up, ansible-runner) is paid
once. Targets (issue "Throughput and latency", point 5): 20 tasks at most 4 times one task;
200 tasks at most 0.15 s per task after the first.

    python benchmarks/bench_batch.py [ROUNDS] [LARGE]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from _bench import BIN, clean_env, side_by_side, timed, verdict

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
LARGE = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def task_file(work: Path, count: int) -> Path:
    tasks = [
        {
            "identity": f"bench/n{count}-{i}",
            "agent": "kv_file",
            "command": "update",
            "config": {
                "path": str(work / f"n{count}" / f"{i}.json"),
                "format": "json",
                "values": {"port": 8080 + i, "replicas": 3, "features": {"tls": True}},
            },
        }
        for i in range(count)
    ]
    path = work / f"tasks-{count}.yml"
    path.write_text(yaml.safe_dump(tasks))
    return path


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))

    def runner(count: int) -> float:
        cmd = [str(BIN / "runner-agent"), "run", str(task_file(work, count)), "--local"]
        cmd += ["--state-dir", str(work / "state")]
        return timed(cmd, clean_env())

    medians = side_by_side({"1 task": lambda: runner(1), "20 tasks": lambda: runner(20)}, ROUNDS)
    large = side_by_side({"1 task": lambda: runner(1), f"{LARGE} tasks": lambda: runner(LARGE)}, 1)
    for name, seconds in {**medians, f"{LARGE} tasks": large[f"{LARGE} tasks"]}.items():
        print(f"runner-agent run --local, {name:10s} {seconds:7.2f} s")
    ratio = medians["20 tasks"] / medians["1 task"]
    print(f"ratio 20 tasks / 1 task: {ratio:.2f} (target <= 4: {verdict(ratio, 4)})")
    per_task = (large[f"{LARGE} tasks"] - large["1 task"]) / (LARGE - 1)
    print(
        f"time per task after the first, {LARGE} tasks: {per_task:.3f} s "
        f"(target <= 0.15: {verdict(per_task, 0.15)})"
    )


if __name__ == "__main__":
    main()
