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
---
module: kv_etcd
short_description: Write, remove or read the keys under a prefix of etcd v3
description:
  - Reads the prefix in one range request, then writes only the keys that differ (and deletes
    the ones not in O(values) when O(prune)), in transactions of at most 128 operations.
  - Talks to etcd's v3 JSON gateway (C(/v3/kv/range), C(/v3/kv/txn), C(/v3/kv/deleterange)),
    over TLS when the endpoint is C(https://), with the server's certificate and name checked
    unless O(validate_certs=false), and a client certificate when etcd asks for one.
  - With O(user), authenticates at C(/v3/auth/authenticate) and sends the token with every
    request; a token etcd reports expired or invalid is renewed once, then the request retried.
  - In check mode nothing is written; RV(drift) lists the keys that differ, never their values.
version_added: "1.0.0"
author:
  - runner_agent authors (@runner-agent)
options:
  endpoint:
    type: str
    required: true
    description:
      - etcd client URL (V(http://127.0.0.1:2379), V(https://etcd.internal:2379)).
      - Several, comma-separated, are tried in order when one cannot be reached.
  prefix:
    type: str
    required: true
    description: Key prefix; a trailing V(/) is added if missing. Empty is refused.
  values:
    type: dict
    description: Nested values flatten to prefix + V(a/b); strings stored as they are, others as JSON.
  prune:
    type: bool
    default: true
    description: Delete keys under the prefix that are not in O(values).
  request_timeout:
    type: int
    default: 10
    description: Seconds per HTTP request.
  operation:
    type: str
    default: write
    choices: [write, remove, read]
    description: Write the values, remove the whole prefix, or read what is stored.
  ca_cert:
    type: path
    description: PEM file of the CA that signed etcd's server certificate (default the system's).
  client_cert:
    type: path
    description: PEM file of the client certificate, for etcd started with C(--client-cert-auth).
  client_key:
    type: path
    description: PEM file of the client certificate's private key.
  validate_certs:
    type: bool
    default: true
    description: Check the server's certificate and that its name matches the endpoint's host.
  user:
    type: str
    description: etcd user, for etcd with authentication enabled (C(etcdctl auth enable)).
  password:
    type: str
    description: The user's password. Never logged.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The keys before and after, one C(key = value) per line.
  platform:
    platforms: posix
notes:
  - Run it on one host (usually V(localhost)); it talks HTTP to etcd from there.
  - The JSON gateway is described in etcd's Documentation/dev-guide/api_grpc_gateway.md; the
    error texts come from its api/v3rpc/rpctypes/error.go.
"""

EXAMPLES = r"""
- name: Push the web service's settings under /acme/web/ over TLS, as user web
  runner_agent.agents.kv_etcd:
    endpoint: https://etcd-1.internal:2379,https://etcd-2.internal:2379
    prefix: /acme/web/
    values:
      port: 8080
      db: {host: db.internal, pool: 10}
    ca_cert: /etc/acme/etcd-ca.pem
    user: web
    password: "{{ lookup('ansible.builtin.env', 'ETCD_PASSWORD') }}"

- name: Report the keys that differ, writing nothing
  runner_agent.agents.kv_etcd:
    endpoint: http://127.0.0.1:2379
    prefix: /acme/web/
    values: {port: 8080}
  check_mode: true

- name: Read what is stored under the prefix
  runner_agent.agents.kv_etcd:
    endpoint: http://127.0.0.1:2379
    prefix: /acme/web/
    operation: read
  register: stored
"""

RETURN = r"""
endpoint:
  description: The endpoint that answered.
  returned: always
  type: str
  sample: https://etcd-1.internal:2379
prefix:
  description: The normalised prefix.
  returned: always
  type: str
  sample: /acme/web/
keys:
  description: Keys in O(values) (write) or stored (read); 0 for remove.
  returned: success
  type: int
  sample: 3
revision:
  description: etcd's header revision after the operation.
  returned: success
  type: int
  sample: 42
drift:
  description: The keys that differ from what is stored, relative to the prefix; never values.
  returned: O(operation=write)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed"}]
changes:
  description:
    - The keys written or removed (or that would be, in check mode), each with its value
      before (absent for an added key) and after (absent for a removed one), as stored.
    - The runtime masks the values of secret keys (docs/agents.md, the check contract).
  returned: O(operation=write) or O(operation=remove)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed", "before": "5", "after": "10"}]
transactions:
  description: Transactions sent.
  returned: O(operation=write)
  type: int
  sample: 1
deleted:
  description: Keys deleted.
  returned: O(operation=write) or O(operation=remove)
  type: int
  sample: 0
values:
  description: The stored values, relative key to string.
  returned: O(operation=read)
  type: dict
  sample: {"port": "8080", "db/host": "db.internal"}
requests:
  description: HTTP requests sent, authentication included.
  returned: success
  type: int
  sample: 2
"""

import base64
import json
import socket
import ssl
from http.client import HTTPException

from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible_collections.runner_agent.agents.plugins.module_utils.transport import HTTP, url_problem
from ansible_collections.runner_agent.agents.plugins.module_utils.kv import SEP, drift, flatten, key_changes

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


# etcd's answers when a token is missing, expired or invalid (api/v3rpc/rpctypes/error.go)
TOKEN_ERRORS = ("invalid auth token", "user name is empty")
UNREACHABLE = (URLError, UrlsConnectionError, socket.timeout, ssl.SSLError, OSError,
               HTTPException)


class Client(object):
    """Minimal etcd v3 JSON gateway client over Ansible's Request (TLS, client certificates),
    with etcd's token authentication."""

    def __init__(self, endpoints, timeout=10, tls=None, user=None, password=None):
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("endpoint must not be empty")
        for endpoint in endpoints:
            problem = url_problem(endpoint, "endpoint")  # before it is quoted anywhere
            if problem:
                raise ValueError(problem)
            if not endpoint.startswith(("http://", "https://")):
                raise ValueError("endpoint %r must start with http:// or https://" % endpoint)
        if user and password is None:
            raise ValueError("user needs a password")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.http = HTTP(timeout, **(tls or {}))
        self.user = user
        self.password = password
        self.token = None
        self.used = self.endpoints[0]
        self.requests = 0
        self.authentications = 0

    def _post(self, endpoint, path, body, token):
        """One POST; the decoded answer. Raises HTTPError, or one of UNREACHABLE."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token  # etcd's gateway takes the bare token
        self.requests += 1
        response = self.http.open("POST", endpoint + path, json.dumps(body).encode("utf-8"),
                                  headers)
        try:
            return json.loads(response.read().decode("utf-8") or "{}")
        finally:
            response.close()

    def _authenticate(self, endpoint):
        self.authentications += 1
        try:
            answer = self._post(endpoint, "/v3/auth/authenticate",
                                {"name": self.user, "password": self.password}, None)
        except HTTPError as exc:
            raise EtcdError("etcd %s refused user %r: %s"
                            % (endpoint, self.user, _detail(exc))) from None
        token = answer.get("token") if isinstance(answer, dict) else None
        if not token:
            raise EtcdError("etcd %s gave no token for user %r (is authentication enabled?)"
                            % (endpoint, self.user))
        self.token = token

    def call(self, path, body):
        """POST body (JSON) to the first endpoint that answers; the decoded JSON answer."""
        errors = []
        for endpoint in [self.used] + [e for e in self.endpoints if e != self.used]:
            try:
                return self._call_one(endpoint, path, body)
            except UNREACHABLE as exc:  # HTTP answers became EtcdError in _call_one
                reason = getattr(exc, "reason", None) or exc
                errors.append("%s: %s" % (endpoint, reason))
        raise EtcdError("cannot reach etcd (%s)" % "; ".join(errors))

    def _call_one(self, endpoint, path, body):
        if self.user and (self.token is None or endpoint != self.used):
            self._authenticate(endpoint)
        renewed = False
        while True:
            try:
                answer = self._post(endpoint, path, body, self.token)
            except HTTPError as exc:
                detail = _detail(exc)
                if self.user and not renewed and any(t in detail for t in TOKEN_ERRORS):
                    self._authenticate(endpoint)  # expired (--auth-token-ttl) or revoked
                    renewed = True
                    continue
                raise EtcdError(
                    "etcd %s %s answered %s: %s" % (endpoint, path, exc.code, detail)
                ) from None
            self.used = endpoint
            if isinstance(answer, dict) and answer.get("error"):
                raise EtcdError("etcd %s %s: %s" % (endpoint, path, answer.get("error")))
            return answer

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
        """(deleted count, header revision, relative key -> value deleted): prev_kv asks etcd
        for what the delete removed (DeleteRangeRequest.prev_kv, api/etcdserverpb/rpc.proto)."""
        answer = self.call("/v3/kv/deleterange", {
            "key": b64(prefix), "range_end": b64(range_end(prefix)), "prev_kv": True})
        return (int(answer.get("deleted") or 0), revision_of(answer),
                decode_kvs(prefix, answer.get("prev_kvs")))

    def txn(self, ops):
        answer = self.call("/v3/kv/txn", {"success": ops})
        if answer.get("succeeded") is False:  # cannot happen without compares; be safe
            raise EtcdError("etcd transaction did not succeed")
        return revision_of(answer)


def _detail(exc):
    """The message of an HTTP error answer: etcd's JSON "message" (or "error"), else the body."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except Exception:  # a closed or broken body: the status line says enough
        body = ""
    finally:
        exc.close()
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip() or str(exc.reason)
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or body)
    return body


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
        changes=key_changes(desired, actual, drift),
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
        held, revision = client.read_prefix(prefix)
        deleted = len(held)
    else:
        deleted, revision, held = client.delete_prefix(prefix)
    gone = [{"key": key, "change": "removed"} for key in sorted(held)]
    return dict(changed=deleted > 0, deleted=deleted, revision=revision, keys=0,
                changes=key_changes({}, held, gone))


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
            ca_cert=dict(type="path"),
            client_cert=dict(type="path"),
            client_key=dict(type="path", no_log=False),
            validate_certs=dict(type="bool", default=True),
            user=dict(type="str"),
            password=dict(type="str", no_log=True),
        ),
        required_if=[("operation", "write", ["values"])],
        required_together=[("user", "password"), ("client_cert", "client_key")],
        supports_check_mode=True,
    )
    p = module.params
    tls = dict((k, p[k]) for k in ("ca_cert", "client_cert", "client_key", "validate_certs"))
    try:
        prefix = normalize_prefix(p["prefix"])
        client = Client(p["endpoint"], p["request_timeout"], tls, p["user"], p["password"])
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
