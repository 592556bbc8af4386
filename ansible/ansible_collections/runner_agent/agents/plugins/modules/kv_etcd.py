#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""Push a key/value packet under a prefix of etcd (v3 JSON gateway), in one module call.

One range request reads what is stored under the prefix; only the keys that differ are written,
in transactions of at most 128 operations (etcd's default --max-txn-ops) and about 1 MiB each
(below its default --max-request-bytes of 1.5 MiB). The pure functions (flatten, plan, batching,
range_end, ...) hold the logic and are unit-tested by importing this file. Standard library only.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kv_etcd
short_description: Write, remove or read the keys under a prefix of etcd v3
description:
  - Reads the prefix in one range request, then writes only the keys that differ (and deletes
    the ones not in C(values) when C(prune)), in transactions of at most 128 operations.
  - In check mode nothing is written; C(drift) lists the keys that differ, never their values.
options:
  endpoint:
    type: str
    required: true
    description: "etcd client URL (http://127.0.0.1:2379); several, comma-separated, are tried
      in order when one cannot be reached."
  prefix: {type: str, required: true, description: "Key prefix; a trailing / is added if missing."}
  values: {type: dict, description: "Nested values flatten to prefix + a/b; non-strings JSON."}
  prune: {type: bool, default: true, description: Delete keys under the prefix not in values.}
  request_timeout: {type: int, default: 10, description: Seconds per HTTP request.}
  operation:
    type: str
    default: write
    choices: [write, remove, read]
    description: write the values, remove the whole prefix, or read what is stored.
"""

RETURN = r"""
endpoint: {type: str, description: The endpoint that answered.}
prefix: {type: str, description: The normalised prefix.}
keys: {type: int, description: Keys in values (write) or stored (read).}
revision: {type: int, description: etcd header revision after the operation.}
drift: {type: list, description: "[{key, change: added|changed|removed}] relative to the prefix."}
transactions: {type: int, description: Transactions sent.}
deleted: {type: int, description: Keys deleted.}
values: {type: dict, description: "operation=read: the stored values, relative key -> string."}
"""

import base64
import json
import socket

from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runner_agent.agents.plugins.module_utils.kv import SEP, drift, flatten

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_TXN_BYTES = 1024 * 1024  # JSON body size; etcd's default --max-request-bytes is 1.5 MiB


class EtcdError(Exception):
    """etcd answered with an error, or could not be reached."""


# ---------------------------------------------------------------- pure logic


def b64(data):
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    return base64.b64decode(text or "")


def normalize_prefix(prefix):
    """The prefix ending with '/'. An empty prefix (the whole keyspace) is refused."""
    prefix = (prefix or "").strip()
    if not prefix:
        raise ValueError("prefix must not be empty (it would cover the whole keyspace)")
    return prefix if prefix.endswith(SEP) else prefix + SEP


def range_end(prefix):
    """etcd's range_end for every key starting with ``prefix`` (bytes): last byte + 1.

    Trailing 0xff bytes are dropped first; a prefix of only 0xff bytes gives b"\\0" (every key
    from ``prefix`` on), as etcd's clientv3.GetPrefixRangeEnd does.
    """
    if not isinstance(prefix, bytes):
        prefix = prefix.encode("utf-8")
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def encode_value(value):
    """What etcd stores for a leaf: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def desired_state(values):
    """relative key -> stored string, for a (nested) values mapping."""
    return {key: encode_value(value) for key, value in flatten(values or {}).items()}


def plan(desired, actual, prune=True):
    """(puts, deletes, drift) turning ``actual`` into ``desired`` (relative keys -> strings).

    puts: [(key, value)] for added or changed keys; deletes: [key] stored but not desired
    (only when pruning); drift: [{key, change}] sorted by key, keys only.
    """
    changes = drift(desired, actual, removed=prune)
    puts = [(d["key"], desired[d["key"]]) for d in changes if d["change"] != "removed"]
    deletes = [d["key"] for d in changes if d["change"] == "removed"]
    return puts, deletes, changes


def make_ops(prefix, puts, deletes):
    """Txn request operations (full keys, base64) for the planned puts and deletes."""
    ops = [{"requestPut": {"key": b64(prefix + key), "value": b64(value)}} for key, value in puts]
    ops.extend({"requestDeleteRange": {"key": b64(prefix + key)}} for key in deletes)
    return ops


def batch_ops(ops, max_ops=MAX_TXN_OPS, max_bytes=MAX_TXN_BYTES):
    """Split ops into transactions of at most ``max_ops`` operations and about ``max_bytes``."""
    batches, current, size = [], [], 0
    for op in ops:
        op_size = len(json.dumps(op)) + 2
        if current and (len(current) >= max_ops or size + op_size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(op)
        size += op_size
    if current:
        batches.append(current)
    return batches


def decode_kvs(prefix, kvs):
    """relative key -> value (text) for the kvs of a range answer under ``prefix``."""
    out = {}
    for kv in kvs or ():
        key = unb64(kv.get("key")).decode("utf-8", "replace")
        if key.startswith(prefix):
            out[key[len(prefix):]] = unb64(kv.get("value")).decode("utf-8", "replace")
    return out


def render_state(state):
    """Text of a flat mapping, one 'key = value' per line, for the diff."""
    return "".join("%s = %s\n" % (key, state[key]) for key in sorted(state))


# ---------------------------------------------------------------- HTTP


class Client(object):
    """Minimal etcd v3 JSON gateway client (urllib)."""

    def __init__(self, endpoints, timeout=10):
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("endpoint must not be empty")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.used = self.endpoints[0]
        self.requests = 0

    def call(self, path, body):
        """POST body (JSON) to the first endpoint that answers; the decoded JSON answer."""
        data = json.dumps(body).encode("utf-8")
        errors = []
        for endpoint in [self.used] + [e for e in self.endpoints if e != self.used]:
            request = Request(endpoint + path, data=data,
                              headers={"Content-Type": "application/json"})
            self.requests += 1
            try:
                response = urlopen(request, timeout=self.timeout)
                try:
                    answer = json.loads(response.read().decode("utf-8") or "{}")
                finally:
                    response.close()
            except HTTPError as exc:
                try:
                    detail = exc.read().decode("utf-8", "replace")
                finally:
                    exc.close()
                try:
                    detail = json.loads(detail).get("message") or detail
                except ValueError:
                    pass
                raise EtcdError(
                    "etcd %s %s answered %s: %s" % (endpoint, path, exc.code, detail)
                ) from None
            except (URLError, socket.timeout, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                errors.append("%s: %s" % (endpoint, reason))
                continue
            self.used = endpoint
            if isinstance(answer, dict) and answer.get("error"):
                raise EtcdError("etcd %s %s: %s" % (endpoint, path, answer.get("error")))
            return answer
        raise EtcdError("cannot reach etcd (%s)" % "; ".join(errors))

    def read_prefix(self, prefix):
        """(relative key -> value, header revision) of every key under prefix."""
        answer = self.call("/v3/kv/range",
                           {"key": b64(prefix), "range_end": b64(range_end(prefix))})
        return decode_kvs(prefix, answer.get("kvs")), revision_of(answer)

    def count_prefix(self, prefix):
        answer = self.call("/v3/kv/range", {
            "key": b64(prefix), "range_end": b64(range_end(prefix)), "count_only": True})
        return int(answer.get("count") or 0), revision_of(answer)

    def delete_prefix(self, prefix):
        answer = self.call("/v3/kv/deleterange",
                           {"key": b64(prefix), "range_end": b64(range_end(prefix))})
        return int(answer.get("deleted") or 0), revision_of(answer)

    def txn(self, ops):
        answer = self.call("/v3/kv/txn", {"success": ops})
        if answer.get("succeeded") is False:  # cannot happen without compares; be safe
            raise EtcdError("etcd transaction did not succeed")
        return revision_of(answer)


def revision_of(answer):
    return int((answer.get("header") or {}).get("revision") or 0)


# ---------------------------------------------------------------- operations


def op_write(module, client, prefix, values, prune):
    desired = desired_state(values)
    actual, revision = client.read_prefix(prefix)
    puts, deletes, drift = plan(desired, actual, prune)
    batches = batch_ops(make_ops(prefix, puts, deletes))
    if batches and not module.check_mode:
        for ops in batches:
            revision = client.txn(ops)
    result = dict(
        changed=bool(batches),
        keys=len(desired),
        revision=revision,
        drift=drift,
        transactions=0 if module.check_mode else len(batches),
        deleted=0 if module.check_mode else len(deletes),
    )
    if module._diff:
        after = dict(actual)
        after.update(dict(puts))
        for key in deletes:
            after.pop(key, None)
        result["diff"] = dict(before_header=prefix, after_header=prefix,
                              before=render_state(actual), after=render_state(after))
    return result


def op_remove(module, client, prefix):
    if module.check_mode:
        count, revision = client.count_prefix(prefix)
        return dict(changed=count > 0, deleted=count, revision=revision, keys=0)
    deleted, revision = client.delete_prefix(prefix)
    return dict(changed=deleted > 0, deleted=deleted, revision=revision, keys=0)


def op_read(module, client, prefix):
    stored, revision = client.read_prefix(prefix)
    return dict(changed=False, values=stored, keys=len(stored), revision=revision)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            prefix=dict(type="str", required=True),
            values=dict(type="dict"),
            prune=dict(type="bool", default=True),
            request_timeout=dict(type="int", default=10),
            operation=dict(type="str", default="write", choices=["write", "remove", "read"]),
        ),
        required_if=[("operation", "write", ["values"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        prefix = normalize_prefix(p["prefix"])
        client = Client(p["endpoint"], p["request_timeout"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        if p["operation"] == "write":
            result = op_write(module, client, prefix, p["values"], p["prune"])
        elif p["operation"] == "remove":
            result = op_remove(module, client, prefix)
        else:
            result = op_read(module, client, prefix)
    except EtcdError as exc:
        module.fail_json(msg=str(exc), endpoint=client.used, prefix=prefix)
    result.update(endpoint=client.used, prefix=prefix, requests=client.requests)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
