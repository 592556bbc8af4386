"""kv_redis writing 1,000 fields against redis-py writing the same fields in one pipeline.

Side by side in one run, against the same redis-server (Debian's, started here with a
password). Ansible start-up excluded: the agent's side is the module's own code run in this
process (connect, AUTH + WATCH + HGETALL in one exchange, compare, one MULTI/HSET/EXEC), as its
task runs it; the whole module task as Ansible reports it (which adds the module process's
start-up) is printed beside it. redis-py opens a connection, authenticates and sends one
pipeline (MULTI/HSET/EXEC) with the same 1,000 fields. Target: ratio at most 2.
"""

from __future__ import annotations

import statistics
import sys
import time

from _bench import LOCALHOST, ROOT, verdict

sys.path.insert(0, str(ROOT / "tests"))
from agents.ansible_run import load_library
from endpoints import start_redis

from runner_agent.model.agents import default_registry
from runner_agent.run.ansible_exec import PlaybookSpec, run_playbook

FIELDS = 1000
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
PASSWORD = "bench-password"
kv = load_library("kv_redis", "kv_redis")


def values() -> dict[str, str]:
    return {f"key{i:04d}": f"value-{i}" for i in range(FIELDS)}


def redis_py(port: int, key: str) -> float:
    import redis

    start = time.perf_counter()
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping=values())
    pipe.execute()
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def module_code(url: str, key: str) -> float:
    start = time.perf_counter()
    client = kv.Client(url, 10, None, None, PASSWORD)
    try:
        desired = kv.desired_state(values())
        sets, deletes, _ = kv.plan(desired, client.read(key, watch=True))
        client.write(key, sets, deletes)
    finally:
        client.close()
    return time.perf_counter() - start


def module_task(url: str, key: str) -> float:
    agent = default_registry().get("kv_redis")
    spec = PlaybookSpec(
        agent="kv_redis",
        roles_path=agent.roles_path,
        command="update",
        extravars={"url": url, "key": key, "password": PASSWORD, "values": values()},
        inventory=LOCALHOST,
        timeout=600,
    )
    result = run_playbook(spec)
    if result.status != "successful":
        raise SystemExit(f"kv_redis failed: {result.failed_tasks or result.errors}")
    return next(r.duration for r in result.results if r.task.startswith("Write the values"))


def main() -> None:
    server = start_redis(PASSWORD)
    check = server.client()
    try:
        plain, code = [], []
        for i in range(ROUNDS):
            plain.append(redis_py(server.port, f"bench:{i}:redis-py"))
            code.append(module_code(server.url, f"bench:{i}:agent"))
            assert check.hlen(f"bench:{i}:agent") == FIELDS == check.hlen(f"bench:{i}:redis-py")
        task = module_task(server.url, "bench:task")
        assert check.hlen("bench:task") == FIELDS
    finally:
        server.stop()
    p, c = statistics.median(plain), statistics.median(code)
    print(f"redis-py, one pipeline of {FIELDS} fields:     {p * 1000:7.1f} ms (median of {ROUNDS})")
    print(f"kv_redis module code (read, compare, write): {c * 1000:7.1f} ms")
    print(f"kv_redis module task (its process start-up in): {task * 1000:7.1f} ms (one run)")
    print(
        f"ratio agent / redis-py (Ansible start-up excluded): {c / p:.2f} "
        f"(target <= 2: {verdict(c / p, 2.0)})"
    )


if __name__ == "__main__":
    main()
