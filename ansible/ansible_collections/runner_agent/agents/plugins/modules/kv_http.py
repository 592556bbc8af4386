#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""Keep a JSON document behind an HTTP API equal to a key/value packet, in one module call.

GET reads the document (and its ETag); only when it differs is it written, with PUT (the whole
document) or PATCH (a JSON merge patch of the top-level keys that differ, RFC 7396), and with
If-Match when the server gave an ETag, so a concurrent edit is a conflict (412), not a lost
update (RFC 9110 sections 8.8.3 and 13.1.1). Standard library and Ansible's Request only.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kv_http
short_description: Write, remove or read a JSON document behind an HTTP API
description:
  - Reads the document at O(url) with GET, compares it with O(values) by key (nesting
    flattened to V(a/b)) and writes it only when it differs.
  - With O(method=PUT) the document becomes O(values) (keys not in it are removed); with
    O(method=PATCH) the top-level keys that differ are sent, each whole and merged with what
    the document holds under it (nested keys O(values) does not name are kept), and other keys
    are left alone, whether the server merges them (RFC 7396) or replaces them.
  - When the GET answer carries an C(ETag), the write carries C(If-Match) with it, so a
    concurrent edit makes the server answer 412 and the module fail, nothing written.
  - In check mode nothing is written; RV(drift) lists the keys that differ, never their values,
    and RV(changes) the same keys with their values before and after.
version_added: "1.0.0"
author:
  - runner_agent authors (@runner-agent)
options:
  url:
    type: str
    required: true
    description:
      - The document's URL (V(https://config.internal/v1/services/web)).
      - Credentials in the URL and control characters are refused; give a secret as O(token).
  values:
    type: dict
    description: The document (PUT) or the keys to set (PATCH); required when O(operation=write).
  method:
    type: str
    default: PUT
    choices: [PUT, PATCH]
    description: How the document is written.
  ignore:
    type: list
    elements: str
    default: []
    description:
      - Top-level keys the server manages (such as V(id) or V(updatedAt)), left out of the
        comparison and kept in a PUT.
  headers:
    type: dict
    default: {}
    description:
      - Extra request headers (not secret; they may be logged). An C(Authorization) header is
        refused, use O(token).
  token:
    type: str
    description: "A bearer token, sent as C(Authorization: Bearer ...). Never logged."
  ca_cert:
    type: path
    description: PEM file of the CA that signed the server's certificate.
  client_cert:
    type: path
    description: PEM client certificate, for servers that ask for one.
  client_key:
    type: path
    description: PEM private key of O(client_cert).
  validate_certs:
    type: bool
    default: true
    description: Check the server's certificate and that its name matches the URL's host.
  request_timeout:
    type: int
    default: 10
    description: Seconds per HTTP request.
  operation:
    type: str
    default: write
    choices: [write, remove, read]
    description: Write the document, DELETE it, or read it.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The flattened keys before and after, one C(key = value) per line.
  platform:
    platforms: posix
notes:
  - Run it on one host (usually V(localhost)); it talks HTTP to the service from there.
"""

EXAMPLES = r"""
- name: Keep the web service's document in the config service
  runner_agent.agents.kv_http:
    url: https://config.internal/v1/services/web
    values:
      port: 8080
      db: {host: db.internal, pool: 10}
    token: "{{ lookup('ansible.builtin.env', 'CONFIG_TOKEN') }}"
    ignore: [updatedAt]

- name: Set one key, leaving the others alone
  runner_agent.agents.kv_http:
    url: http://127.0.0.1:3000/configs/web
    method: PATCH
    values: {log_level: info}
"""

RETURN = r"""
url:
  description: The document's URL.
  returned: always
  type: str
  sample: https://config.internal/v1/services/web
keys:
  description: Keys (leaves) in O(values) (write) or in the document (read).
  returned: success
  type: int
  sample: 3
drift:
  description: The keys that differ from the document, and how; never their values.
  returned: O(operation=write)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed"}]
changes:
  description:
    - The keys written or removed (or that would be, in check mode), each with its value
      before (absent for an added key) and after (absent for a removed one), as JSON values.
    - Keys in O(ignore) are left out; O(operation=remove) lists every other key of the document.
    - The runtime masks the values of secret keys (docs/agents.md, the check contract).
  returned: O(operation=write) or O(operation=remove)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed", "before": 5, "after": 10}]
status:
  description: The HTTP status of the last request.
  returned: success
  type: int
  sample: 200
etag:
  description: The document's ETag as read (before any write); empty when the server gave none.
  returned: success
  type: str
  sample: W/"2a-8b1lQ4GVu6XOr1I2gDJnxYmBQzE"
values:
  description: The document.
  returned: O(operation=read)
  type: dict
  sample: {"port": 8080}
requests:
  description: HTTP requests sent.
  returned: success
  type: int
  sample: 2
"""

import json
import socket
import ssl

from http.client import HTTPException

from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible_collections.runner_agent.agents.plugins.module_utils.transport import HTTP, control, url_problem
from ansible_collections.runner_agent.agents.plugins.module_utils.kv import drift, flatten, key_changes
from ansible_collections.runner_agent.agents.plugins.module_utils.tls import refused_certificate

UNREACHABLE = (URLError, UrlsConnectionError, socket.timeout, ssl.SSLError, OSError, ValueError,
               HTTPException)
REASONS = {
    401: "the token is missing or not accepted",
    403: "the token may not do this",
    404: "there is no document at this URL",
    409: "conflict: the document was changed by someone else",
    412: "conflict: the document changed since it was read (ETag); nothing was written",
}


class HTTPDocError(Exception):
    """The server answered with an error, with no JSON document, or could not be reached."""


# ---------------------------------------------------------------- pure logic


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compared(document, ignore):
    """The flattened document without the keys the server manages."""
    return flatten(dict((k, v) for k, v in (document or {}).items() if k not in ignore))


def merged(base, values):
    """``values`` laid over ``base``: mappings key by key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(values, dict):
        return values
    out = dict(base)
    for key, value in values.items():
        out[key] = merged(base.get(key), value)
    return out


def outcome(document, values, method, ignore):
    """The document as the write leaves it. PUT: ``values``, with the server's keys
    (``ignore``) kept from the document. PATCH: ``values`` merged into the document, nested
    mappings key by key, so a nested key the values do not name is kept."""
    document = document or {}
    if method == "PUT":
        after = dict((k, v) for k, v in document.items() if k in ignore)
        after.update(values)
        return after
    return merged(document, dict((k, v) for k, v in values.items() if k not in ignore))


def plan(document, values, method, ignore):
    """(body or None, drift): what to send to make the document hold ``values``, and the keys
    that differ between the document and what the write leaves (see outcome)."""
    document = document or {}
    after = outcome(document, values, method, ignore)
    changes = drift(compared(after, ignore), compared(document, ignore),
                    lambda a, b: canonical(a) == canonical(b))
    if not changes:
        return None, changes
    if method == "PUT":
        return after, changes
    # each top-level key that differs, whole and merged: a server that replaces top-level
    # values (json-server) and one that merges them (RFC 7396) leave the same document
    return dict((k, after[k]) for k in after
                if k not in document or canonical(after[k]) != canonical(document[k])), changes


def render_state(flat):
    return "".join("%s = %s\n" % (k, canonical(flat[k])) for k in sorted(flat))


# ---------------------------------------------------------------- HTTP


class Client(object):
    def __init__(self, url, timeout=10, tls=None, token=None, headers=None):
        self.url = url
        self.http = HTTP(timeout, **(tls or {}))
        self.token = token
        self.headers = dict(headers or {})
        self.requests = 0
        self.status = 0

    def request(self, method, body=None, etag=None, missing_ok=False):
        """(status, decoded JSON or None, ETag) of one request. Raises HTTPDocError."""
        headers = dict(self.headers)
        headers["Accept"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        data = None
        if body is not None:
            data = json.dumps(body, sort_keys=True).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if etag:
            headers["If-Match"] = etag
        self.requests += 1
        try:
            response = self.http.open(method, self.url, data=data, headers=headers)
        except HTTPError as exc:
            self.status = exc.code
            try:
                exc.read()
            except Exception:  # the status says enough
                pass
            finally:
                exc.close()
            if exc.code == 404 and missing_ok:
                return 404, None, ""
            raise HTTPDocError("%s %s answered %s: %s" % (
                method, self.url, exc.code, REASONS.get(exc.code, exc.reason))) from None
        except UNREACHABLE as exc:
            reason = refused_certificate(exc) or getattr(exc, "reason", None) or exc
            raise HTTPDocError("cannot reach %s: %s" % (self.url, reason)) from None
        try:
            raw = response.read()
            self.status = response.status
            etag = response.headers.get("ETag") or ""
        finally:
            response.close()
        if not raw.strip():
            return self.status, None, etag
        try:
            return self.status, json.loads(raw.decode("utf-8")), etag
        except ValueError:
            raise HTTPDocError("%s %s answered %s with a body that is not JSON"
                               % (method, self.url, self.status)) from None


# ---------------------------------------------------------------- operations


def read_document(client, missing_ok):
    status, document, etag = client.request("GET", missing_ok=missing_ok)
    if status == 404:
        return None, ""
    if not isinstance(document, dict):
        raise HTTPDocError("GET %s answered %s without a JSON object" % (client.url, status))
    return document, etag


def op_write(module, client, values, method, ignore):
    document, etag = read_document(client, missing_ok=method == "PUT")
    body, changes = plan(document, values, method, ignore)
    if body is not None and not module.check_mode:
        client.request(method, body, etag=etag)
    before = compared(document, ignore)
    after = compared(outcome(document, values, method, ignore), ignore)
    result = dict(changed=body is not None, keys=len(flatten(values)), drift=changes,
                  changes=key_changes(after, before, changes), etag=etag)
    if module._diff:
        result["diff"] = dict(before_header=client.url, after_header=client.url,
                              before=render_state(before), after=render_state(after))
    return result


def op_remove(module, client, ignore):
    document, etag = read_document(client, missing_ok=True)
    if document is None:
        return dict(changed=False, keys=0, etag="", changes=[])
    if not module.check_mode:
        client.request("DELETE", etag=etag, missing_ok=True)
    held = compared(document, ignore)
    gone = [{"key": key, "change": "removed"} for key in sorted(held)]
    return dict(changed=True, keys=0, etag=etag, changes=key_changes({}, held, gone))


def op_read(module, client, ignore):
    document, etag = read_document(client, missing_ok=False)
    shown = dict((k, v) for k, v in document.items() if k not in ignore)
    return dict(changed=False, values=shown, keys=len(flatten(shown)), etag=etag)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            values=dict(type="dict"),
            method=dict(type="str", default="PUT", choices=["PUT", "PATCH"]),
            ignore=dict(type="list", elements="str", default=[]),
            headers=dict(type="dict", default={}),
            token=dict(type="str", no_log=True),
            ca_cert=dict(type="path"),
            client_cert=dict(type="path"),
            client_key=dict(type="path", no_log=False),
            validate_certs=dict(type="bool", default=True),
            request_timeout=dict(type="int", default=10),
            operation=dict(type="str", default="write", choices=["write", "remove", "read"]),
        ),
        required_if=[("operation", "write", ["values"])],
        required_together=[("client_cert", "client_key")],
        supports_check_mode=True,
    )
    p = module.params
    problem = url_problem(p["url"])
    if problem:
        module.fail_json(msg=problem)
    if p["token"] is not None and control(p["token"]):
        module.fail_json(msg="token holds a control character (CR, LF, ...)")
    if any(control(str(k)) or control(str(v)) for k, v in p["headers"].items()):
        module.fail_json(msg="headers: a header's name or value holds a control character (CR, LF, ...)")
    if not p["url"].startswith(("http://", "https://")):
        module.fail_json(msg="url must start with http:// or https://, got %r" % p["url"])
    if any(str(h).lower() == "authorization" for h in p["headers"]):
        module.fail_json(msg="headers must not hold Authorization: give the secret as token")
    tls = dict((k, p[k]) for k in ("ca_cert", "client_cert", "client_key", "validate_certs"))
    client = Client(p["url"], p["request_timeout"], tls, p["token"], p["headers"])
    try:
        if p["operation"] == "write":
            result = op_write(module, client, p["values"], p["method"], set(p["ignore"]))
        elif p["operation"] == "remove":
            result = op_remove(module, client, set(p["ignore"]))
        else:
            result = op_read(module, client, set(p["ignore"]))
    except HTTPDocError as exc:
        module.fail_json(msg=str(exc), url=p["url"], status=client.status)
    result.update(url=p["url"], status=client.status, requests=client.requests)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
