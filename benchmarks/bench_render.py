"""Render + validation of 1,000 and 10,000 tasks: time per task, the ratio against
``yaml.safe_dump`` of the same job mappings (target: at most 3), and peak memory.

Run: ``.venv/bin/python benchmarks/bench_render.py [SIZES...]``. Prints figures measured in one
run on this machine; nothing here asserts a timing.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import yaml

from runner_agent.model.tasks import Task
from runner_agent.pipeline.render import RenderedPipeline, RenderOptions, render_child

TARGET_RATIO = 3.0


def make_tasks(n: int) -> list[Task]:
    """n tasks over n/2 identities (so half the jobs wait for another), on 3 runner tags."""
    return [
        Task(
            identity=f"acme/service-{i % max(1, n // 2):05d}",
            agent="kv_file",
            command="update" if i % 3 else "install",
            config={
                "path": f"/etc/acme/service-{i}.json",
                "format": "json",
                "values": {"port": 8000 + i % 1000, "replicas": 3, "motd": "it's ${VAR}: #1"},
            },
            tags=(f"acme-dc{i % 3}", "runner-agent"),
            timeout=600 + i % 7 * 60,
        )
        for i in range(n)
    ]


def best_of(repeat: int, func: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(func: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(n: int, repeat: int) -> dict[str, float]:
    tasks = make_tasks(n)
    options = RenderOptions(tasks_from_job="runner-agent-plan")
    pipelines: list[RenderedPipeline] = render_child(tasks, options)
    docs = [yaml.load(p.text, Loader=yaml.CSafeLoader) for p in pipelines]
    render_s = best_of(repeat, lambda: render_child(tasks, options))
    dump_s = best_of(repeat, lambda: [yaml.safe_dump(d) for d in docs])
    cdump_s = best_of(repeat, lambda: [yaml.dump(d, Dumper=yaml.CSafeDumper) for d in docs])
    return {
        "tasks": n,
        "pipelines": len(pipelines),
        "render_s": render_s,
        "per_task_us": render_s / n * 1e6,
        "ratio": render_s / dump_s,
        "ratio_c": render_s / cdump_s,
        "peak_mb": peak_bytes(lambda: render_child(tasks, options)) / 2**20,
    }


def main(sizes: list[int]) -> None:
    rows = [measure(n, repeat=3 if n <= 1000 else 1) for n in sizes]
    print("render + validation (GitLab CI schema and rules) of n tasks, best of runs")
    head = f"{'tasks':>7} {'pipes':>5} {'total s':>8} {'us/task':>8} "
    print(head + f"{'/safe_dump':>10} {'/CSafeDumper':>12} {'peak MB':>8} {'KB/task':>8}")
    for r in rows:
        print(
            f"{r['tasks']:>7} {r['pipelines']:>5} {r['render_s']:>8.2f} {r['per_task_us']:>8.0f} "
            f"{r['ratio']:>10.2f} {r['ratio_c']:>12.2f} {r['peak_mb']:>8.1f} "
            f"{r['peak_mb'] * 1024 / r['tasks']:>8.1f}"
        )
    verdict = "met" if all(r["ratio"] <= TARGET_RATIO for r in rows) else "NOT met"
    print(f"target: at most {TARGET_RATIO:.0f}x yaml.safe_dump of the same job mappings: {verdict}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = last["tasks"] / first["tasks"]
        per_task_kb = (last["peak_mb"] - first["peak_mb"]) * 1024 / (last["tasks"] - first["tasks"])
        fixed_mb = first["peak_mb"] - per_task_kb * first["tasks"] / 1024
        print(
            f"{growth:.0f}x the tasks: {last['render_s'] / first['render_s']:.1f}x the time, "
            f"{last['peak_mb'] / first['peak_mb']:.1f}x the peak memory"
        )
        print(
            f"peak memory = {fixed_mb:.1f} MB + {per_task_kb:.2f} KB per task (linear: the "
            "output, plus one part's validation at a time)"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10_000])
