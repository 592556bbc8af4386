"""kv_etcd writing 1,000 keys against a plain Python HTTP client writing the same keys.

The agent's time is its module task's own duration as Ansible reports it (start-up excluded);
the client is http.client on one kept-alive connection, one PUT per key, as a script would
write them. Both write into an empty prefix of the same etcd. Target: ratio at most 2.
"""

from __future__ import annotations

import base64
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlparse

from _bench import LOCALHOST, verdict
from endpoints import etcd_delete_prefix, etcd_get_prefix, start_etcd

from runner_agent.model.agents import default_registry
from runner_agent.run.ansible_exec import PlaybookSpec, run_playbook

KEYS = 1000
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def values() -> dict[str, str]:
    return {f"key{i:04d}": f"value-{i}" for i in range(KEYS)}


def plain_client(endpoint: str, prefix: str) -> float:
    url = urlparse(endpoint)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    start = time.perf_counter()
    for key, value in values().items():
        body = json.dumps(
            {
                "key": base64.b64encode(f"{prefix}{key}".encode()).decode(),
                "value": base64.b64encode(value.encode()).decode(),
            }
        )
        conn.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"etcd answered {resp.status}")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def agent_write(endpoint: str, prefix: str) -> tuple[float, float]:
    agent = default_registry().get("kv_etcd")
    spec = PlaybookSpec(
        agent="kv_etcd",
        roles_path=agent.roles_path,
        command="update",
        extravars={
            "endpoint": endpoint,
            "prefix": prefix,
            "values": values(),
            "runner_agent_no_log": False,
        },
        inventory=LOCALHOST,
        timeout=600,
    )
    start = time.perf_counter()
    result = run_playbook(spec)
    total = time.perf_counter() - start
    if result.status != "successful":
        raise SystemExit(f"kv_etcd failed: {result.failed_tasks or result.errors}")
    module = [r.duration for r in result.results if r.task.startswith("Write the values")]
    return module[0], total


def main() -> None:
    server = start_etcd()
    try:
        client, module, total = [], [], []
        for i in range(ROUNDS):
            for prefix in (f"/bench/{i}/client/", f"/bench/{i}/agent/"):
                etcd_delete_prefix(server.endpoint, prefix)
            client.append(plain_client(server.endpoint, f"/bench/{i}/client/"))
            m, t = agent_write(server.endpoint, f"/bench/{i}/agent/")
            module.append(m)
            total.append(t)
            assert len(etcd_get_prefix(server.endpoint, f"/bench/{i}/agent/")) == KEYS
    finally:
        server.stop()
    c, m, t = statistics.median(client), statistics.median(module), statistics.median(total)
    print(f"plain Python client, {KEYS} PUTs:        {c:6.3f} s (median of {ROUNDS})")
    print(f"kv_etcd module task, {KEYS} keys:        {m:6.3f} s")
    print(f"kv_etcd whole run (Ansible start-up in): {t:6.3f} s")
    print(
        f"ratio agent / plain client (start-up excluded): {m / c:.2f} "
        f"(target <= 2: {verdict(m / c, 2.0)})"
    )


if __name__ == "__main__":
    main()
