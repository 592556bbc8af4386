"""kv_http writing 100 documents against requests writing them in one session.

Side by side in one run, against the same json-server (npm, started here). Ansible start-up
excluded: the agent's side is the module's own code run in this process for each document, as
its task runs it (GET, compare, PUT with If-Match, each request on a fresh connection through
Ansible's open_url); requests does the same GET and PUT per document on one kept-alive session.
Every document exists with other values, so both sides write all 100. Target: ratio at most 2.
"""

from __future__ import annotations

import statistics
import sys
import time

from _bench import ROOT, verdict

sys.path.insert(0, str(ROOT / "tests"))
from agents.ansible_run import load_library
from endpoints import start_json_server

DOCUMENTS = 100
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
kv = load_library("kv_http", "kv_http")


class Module:
    """Enough of AnsibleModule for op_write: not check mode, no diff."""

    check_mode = False
    _diff = False


def document(i: int, round_: int) -> dict[str, object]:
    return {"port": 8000 + i, "round": round_, "owner": "bench", "tags": ["a", "b"]}


def with_requests(base: str, side: str, round_: int) -> float:
    import requests

    start = time.perf_counter()
    with requests.Session() as session:
        for i in range(DOCUMENTS):
            url = f"{base}/{side}/{i}"
            current = session.get(url, timeout=10)
            current.raise_for_status()
            body = {"id": i, **document(i, round_)}
            headers = {"If-Match": current.headers.get("ETag", "*")}
            session.put(url, json=body, headers=headers, timeout=10).raise_for_status()
    return time.perf_counter() - start


def with_module(base: str, side: str, round_: int) -> float:
    start = time.perf_counter()
    for i in range(DOCUMENTS):
        client = kv.Client(f"{base}/{side}/{i}", 10)
        result = kv.op_write(Module(), client, document(i, round_), "PUT", {"id"})
        assert result["changed"] and client.requests == 2
    return time.perf_counter() - start


def main() -> None:
    seed = [{"id": i, **document(i, -1)} for i in range(DOCUMENTS)]
    server = start_json_server({"plain": seed, "agent": [dict(d) for d in seed]})
    try:
        plain, agent = [], []
        for r in range(ROUNDS):
            plain.append(with_requests(server.base, "plain", r))
            agent.append(with_module(server.base, "agent", r))
        assert server.get("/agent/7") == {"id": 7, **document(7, ROUNDS - 1)}
    finally:
        server.stop()
    p, a = statistics.median(plain), statistics.median(agent)
    print(
        f"requests, one session, {DOCUMENTS} documents (GET+PUT): {p:6.3f} s (median of {ROUNDS})"
    )
    print(f"kv_http module code, {DOCUMENTS} documents:            {a:6.3f} s")
    print(
        f"ratio agent / requests (Ansible start-up excluded): {a / p:.2f} "
        f"(target <= 2: {verdict(a / p, 2.0)})"
    )


if __name__ == "__main__":
    main()
