"""A dry run (`run --check`) of 1,000 etcd keys against the update that writes them.

Both go through the whole runtime (task, digest, ansible-runner, report with every key's
change and values), side by side in one run, each on an empty prefix: the dry run reports
1,000 keys it would add, the update adds them. Target: dry run / update at most 1.2.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path
from time import perf_counter

from _bench import side_by_side, verdict
from endpoints import etcd_get_prefix, start_etcd

from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore
from runner_agent.model.tasks import as_check, tasks_from_data
from runner_agent.report.model import Status
from runner_agent.run.runtime import RunContext, run_tasks

KEYS = 1000
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
TARGET = 1.2


def main() -> None:
    server = start_etcd()
    counter = itertools.count()
    registry = default_registry()
    values = {f"key{i:04d}": f"value-{i}" for i in range(KEYS)}
    with tempfile.TemporaryDirectory() as state_dir:
        ctx = RunContext(registry=registry, store=LocalStateStore(Path(state_dir)), environ={})

        def one(check: bool) -> float:
            n = next(counter)
            prefix = f"/bench-check/{n}/"
            item = {
                "identity": f"bench/check-{n}",
                "agent": "kv_etcd",
                "command": "update",
                "config": {"endpoint": server.endpoint, "prefix": prefix, "values": values},
            }
            tasks = tasks_from_data([item], registry=registry)
            start = perf_counter()
            (report,) = run_tasks(as_check(tasks) if check else tasks, ctx)
            elapsed = perf_counter() - start
            if report.status is not Status.SUCCESS:
                raise SystemExit(f"failed: {report.error}")
            stored = len(etcd_get_prefix(server.endpoint, prefix))
            if len(report.key_changes["localhost"]) != KEYS or stored != (0 if check else KEYS):
                raise SystemExit("the dry run wrote, or a run did not report every key")
            return elapsed

        try:
            medians = side_by_side(
                {"check": lambda: one(True), "update": lambda: one(False)}, ROUNDS
            )
        finally:
            server.stop()
    ratio = medians["check"] / medians["update"]
    print(
        f"run --check, {KEYS} etcd keys (would add): {medians['check']:6.3f} s (median of {ROUNDS})"
    )
    print(f"run update, {KEYS} etcd keys (adds):       {medians['update']:6.3f} s")
    print(f"ratio check / update: {ratio:.2f} (target <= {TARGET}: {verdict(ratio, TARGET)})")


if __name__ == "__main__":
    main()
