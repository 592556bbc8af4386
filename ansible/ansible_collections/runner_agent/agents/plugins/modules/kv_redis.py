#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""Push a key/value packet into one Redis hash, in one module call.

One pipelined round trip reads (AUTH, SELECT, WATCH, HGETALL); one pipelined MULTI/EXEC writes
only the fields that differ and deletes the others (when pruning). WATCH makes a concurrent
change of the hash between the read and the write abort the transaction: nothing is written,
and the module fails saying so. Standard library only: the RESP protocol is spoken directly
(https://redis.io/docs/latest/develop/reference/protocol-spec/).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kv_redis
short_description: Write, remove or read a key/value packet kept in one Redis hash
description:
  - "The packet lives in one hash at O(key): nested values flatten to fields V(a/b); strings are
    stored as they are, other values as compact JSON."
  - Reads the hash in one pipelined round trip, then writes only the fields that differ (and
    deletes the others when O(prune)) in one MULTI/EXEC transaction, under WATCH, so a
    concurrent change makes the write fail rather than be lost.
  - Over TLS with a V(rediss://) URL, the server's certificate and name are checked unless
    O(validate_certs=false).
  - In check mode nothing is written; RV(drift) lists the fields that differ, never values, and
    RV(changes) the same fields with their values before and after.
version_added: "1.0.0"
author:
  - runner_agent authors (@runner-agent)
options:
  url:
    type: str
    required: true
    description:
      - V(redis://HOST:PORT/DB) or V(rediss://HOST:PORT/DB) (TLS). Port defaults to 6379, db
        to 0. Credentials in the URL are refused; use O(user) and O(password).
  key:
    type: str
    required: true
    aliases: [prefix]
    description: The hash holding the packet, such as V(acme:web).
  values:
    type: dict
    description: The packet; required when O(operation=write).
  prune:
    type: bool
    default: true
    description: Delete the hash's fields that are not in O(values).
  user:
    type: str
    description: Redis ACL user (Redis 6 and later); without it, O(password) is the default user's.
  password:
    type: str
    description: The password (C(requirepass), or the ACL user's). Never logged.
  ca_cert:
    type: path
    description: PEM file of the CA that signed the server's certificate (V(rediss://)).
  client_cert:
    type: path
    description: PEM client certificate, for a server with C(tls-auth-clients yes).
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
    description: Seconds for connecting and for each answer.
  operation:
    type: str
    default: write
    choices: [write, remove, read]
    description: Write the values, delete the whole hash, or read it.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The fields before and after, one C(field = value) per line.
  platform:
    platforms: posix
notes:
  - Run it on one host (usually V(localhost)); it talks to Redis from there.
"""

EXAMPLES = r"""
- name: Keep the web service's settings in the hash acme:web, as ACL user web, over TLS
  runner_agent.agents.kv_redis:
    url: rediss://redis.internal:6380/0
    key: acme:web
    values:
      port: 8080
      db: {host: db.internal, pool: 10}
    user: web
    password: "{{ lookup('ansible.builtin.env', 'REDIS_PASSWORD') }}"
    ca_cert: /etc/acme/redis-ca.pem

- name: Report the fields that differ, writing nothing
  runner_agent.agents.kv_redis:
    url: redis://127.0.0.1:6379/0
    key: acme:web
    values: {port: 8080}
  check_mode: true
"""

RETURN = r"""
url:
  description: The URL, which never holds credentials.
  returned: always
  type: str
  sample: redis://127.0.0.1:6379/0
key:
  description: The hash.
  returned: always
  type: str
  sample: acme:web
keys:
  description: Fields in O(values) (write) or stored (read); 0 for remove.
  returned: success
  type: int
  sample: 3
drift:
  description: The fields that differ from what is stored, and how; never their values.
  returned: O(operation=write)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed"}]
changes:
  description:
    - The fields written or removed (or that would be, in check mode), each with its value
      before (absent for an added field) and after (absent for a removed one), as stored.
    - The runtime masks the values of secret keys (docs/agents.md, the check contract).
  returned: O(operation=write) or O(operation=remove)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed", "before": "5", "after": "10"}]
deleted:
  description: Fields deleted (write) or whether the hash was deleted (remove, 0 or 1).
  returned: O(operation=write) or O(operation=remove)
  type: int
  sample: 0
values:
  description: The stored fields and their values.
  returned: O(operation=read)
  type: dict
  sample: {"port": "8080", "db/host": "db.internal"}
round_trips:
  description: Pipelined exchanges with the server (one to read, one to write).
  returned: success
  type: int
  sample: 2
"""

import json
import socket
import ssl

from urllib.parse import unquote, urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runner_agent.agents.plugins.module_utils.kv import drift, flatten, key_changes
from ansible_collections.runner_agent.agents.plugins.module_utils.tls import refused_certificate

DEFAULT_PORT = 6379


class RedisError(Exception):
    """Redis answered with an error, or could not be reached."""


class ReplyError(Exception):
    """One error reply (-ERR ..., -NOPERM ...), kept as a reply in a pipeline."""


# ---------------------------------------------------------------- pure logic


def parse_url(url):
    """(scheme, host, port, db) of a redis:// or rediss:// URL. Raises ValueError."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("url must start with redis:// or rediss://, got %r" % url)
    if parts.username or parts.password:
        raise ValueError("url must not hold credentials: give user and password as options")
    if not parts.hostname:
        raise ValueError("url %r names no host" % url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("url %r has an invalid port" % url) from None
    path = unquote(parts.path or "").strip("/")
    if path and not path.isdigit():
        raise ValueError("url %r: the path must be a database number such as /0" % url)
    return parts.scheme, parts.hostname, port, int(path or 0)


def encode_value(value):
    """What a field holds for a leaf: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def desired_state(values):
    """field -> stored string, for a (nested) values mapping."""
    return dict((k, encode_value(v)) for k, v in flatten(values or {}).items())


def plan(desired, actual, prune=True):
    """(sets, deletes, drift) turning ``actual`` into ``desired`` (field -> string)."""
    changes = drift(desired, actual, removed=prune)
    sets = [(d["key"], desired[d["key"]]) for d in changes if d["change"] != "removed"]
    deletes = [d["key"] for d in changes if d["change"] == "removed"]
    return sets, deletes, changes


def encode_command(*args):
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def render_state(state):
    return "".join("%s = %s\n" % (key, state[key]) for key in sorted(state))


# ---------------------------------------------------------------- RESP over a socket


class Connection(object):
    """One connection speaking RESP2; ``pipeline`` sends commands together, reads all replies."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.round_trips = 0

    def pipeline(self, commands):
        """The replies to ``commands`` (error replies as ReplyError values), in one exchange."""
        self.sock.sendall(b"".join(encode_command(*c) for c in commands))
        self.round_trips += 1
        return [self._reply() for command in commands]

    def _line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size):
        while len(self.buffer) < size + 2:
            chunk = self.sock.recv(max(65536, size + 2 - len(self.buffer)))
            if not chunk:
                raise RedisError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for index in range(count)]
        raise RedisError("unexpected reply from the server: %r" % line[:40])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(url, timeout=10, tls=None):
    """A Connection to the URL's server (TLS for rediss://). Raises RedisError."""
    scheme, host, port = parse_url(url)[:3]
    tls = tls or {}
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.timeout) as exc:
        raise RedisError("cannot reach redis %s: %s" % (url, exc)) from None
    if scheme == "rediss":
        context = ssl.create_default_context(cafile=tls.get("ca_cert"))
        if not tls.get("validate_certs", True):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.get("client_cert"):
            context.load_cert_chain(tls["client_cert"], tls.get("client_key"))
        try:
            sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise RedisError("cannot reach redis %s: %s"
                             % (url, refused_certificate(exc) or exc)) from None
    return Connection(sock)


def _check(reply, url, what):
    if isinstance(reply, ReplyError):
        raise RedisError("redis %s refused %s: %s" % (url, what, reply))
    return reply


def _text(data):
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _fields(flat):
    """field -> value of an HGETALL reply (a flat list: field, value, field, value, ...)."""
    flat = flat or []
    return dict((_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat), 2))


class Client(object):
    """The hash operations kv_redis needs, each in as few round trips as Redis allows."""

    def __init__(self, url, timeout=10, tls=None, user=None, password=None):
        self.url = url
        self.db = parse_url(url)[3]
        self.timeout = timeout
        self.tls = tls
        self.user = user
        self.password = password
        self.conn = None

    @property
    def round_trips(self):
        return self.conn.round_trips if self.conn else 0

    def _hello(self):
        """The commands that open the exchange of a fresh connection: AUTH, and SELECT unless
        the db is 0 (where a connection starts; ACL users often may not SELECT)."""
        commands = []
        if self.password is not None:
            auth = ("AUTH", self.user, self.password) if self.user else ("AUTH", self.password)
            commands.append(auth)
        if self.db:
            commands.append(("SELECT", self.db))
        return commands

    def _first(self, commands):
        """Open the connection and run ``commands`` after AUTH and SELECT, in one exchange."""
        if self.conn is None:
            self.conn = connect(self.url, self.timeout, self.tls)
        hello = self._hello()
        try:
            replies = self.conn.pipeline(hello + list(commands))
        except (OSError, socket.timeout) as exc:
            raise RedisError("redis %s: %s" % (self.url, exc)) from None
        if self.password is not None:
            _check(replies[0], self.url, "the credentials of user %r"
                   % (self.user or "default"))
        if self.db:
            _check(replies[len(hello) - 1], self.url, "SELECT %d" % self.db)
        return replies[len(hello):]

    def read(self, key, watch=False):
        """field -> value (text) of the hash; with ``watch``, WATCH it first (same exchange)."""
        commands = ([("WATCH", key)] if watch else []) + [("HGETALL", key)]
        replies = self._first(commands)
        if watch:
            _check(replies[0], self.url, "WATCH %s" % key)
        return _fields(_check(replies[-1], self.url, "HGETALL %s" % key))

    def write(self, key, sets, deletes):
        """Apply ``sets`` and ``deletes`` in one MULTI/EXEC (after read(watch=True))."""
        commands = []
        if sets:
            args = ["HSET", key]
            for field, value in sets:
                args.extend([field, value])
            commands.append(tuple(args))
        if deletes:
            commands.append(tuple(["HDEL", key] + list(deletes)))
        self._exec(key, commands)

    def delete(self, key):
        """DEL the hash in one MULTI/EXEC (after read(watch=True)): the fields read are the ones
        deleted, and a change in between aborts it (RedisError), nothing deleted."""
        self._exec(key, [("DEL", key)])

    def _exec(self, key, commands):
        """Run ``commands`` in one MULTI/EXEC on the watched ``key``, in one exchange."""
        commands = [("MULTI",)] + list(commands) + [("EXEC",)]
        try:
            replies = self.conn.pipeline(commands)
        except (OSError, socket.timeout) as exc:
            raise RedisError("redis %s: %s" % (self.url, exc)) from None
        for reply, command in zip(replies[1:-1], commands[1:-1]):
            _check(reply, self.url, "%s %s" % (command[0], key))  # queued, or refused (NOPERM)
        result = _check(replies[-1], self.url, "the transaction on %s" % key)
        if result is None:
            raise RedisError("redis %s: %s changed while it was being written; nothing was "
                             "written, run again" % (self.url, key))
        for reply in result:
            _check(reply, self.url, "the transaction on %s" % key)

    def close(self):
        if self.conn is not None:
            self.conn.close()


# ---------------------------------------------------------------- operations


def op_write(module, client, key, values, prune):
    desired = desired_state(values)
    actual = client.read(key, watch=not module.check_mode)
    sets, deletes, changes = plan(desired, actual, prune)
    changed = bool(sets or deletes)
    if changed and not module.check_mode:
        client.write(key, sets, deletes)
    result = dict(changed=changed, keys=len(desired), drift=changes,
                  changes=key_changes(desired, actual, changes),
                  deleted=0 if module.check_mode else len(deletes))
    if module._diff:
        after = dict(actual)
        after.update(dict(sets))
        for field in deletes:
            after.pop(field, None)
        result["diff"] = dict(before_header=key, after_header=key,
                              before=render_state(actual), after=render_state(after))
    return result


def op_remove(module, client, key):
    held = client.read(key, watch=not module.check_mode)
    if held and not module.check_mode:
        client.delete(key)
    gone = [{"key": field, "change": "removed"} for field in sorted(held)]
    deleted = 1 if held else 0  # Redis keeps no empty hash
    return dict(changed=deleted > 0, deleted=deleted, keys=0, changes=key_changes({}, held, gone))


def op_read(module, client, key):
    stored = client.read(key)
    return dict(changed=False, values=stored, keys=len(stored))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            key=dict(type="str", required=True, aliases=["prefix"], no_log=False),
            values=dict(type="dict"),
            prune=dict(type="bool", default=True),
            user=dict(type="str"),
            password=dict(type="str", no_log=True),
            ca_cert=dict(type="path"),
            client_cert=dict(type="path"),
            client_key=dict(type="path", no_log=False),
            validate_certs=dict(type="bool", default=True),
            request_timeout=dict(type="int", default=10),
            operation=dict(type="str", default="write", choices=["write", "remove", "read"]),
        ),
        required_if=[("operation", "write", ["values"])],
        required_by={"user": "password"},
        required_together=[("client_cert", "client_key")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        parse_url(p["url"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if not p["key"]:
        module.fail_json(msg="key must not be empty")
    tls = dict((k, p[k]) for k in ("ca_cert", "client_cert", "client_key", "validate_certs"))
    client = Client(p["url"], p["request_timeout"], tls, p["user"], p["password"])
    try:
        if p["operation"] == "write":
            result = op_write(module, client, p["key"], p["values"], p["prune"])
        elif p["operation"] == "remove":
            result = op_remove(module, client, p["key"])
        else:
            result = op_read(module, client, p["key"])
    except RedisError as exc:
        module.fail_json(msg=str(exc), url=p["url"], key=p["key"])
    finally:
        client.close()
    result.update(url=p["url"], key=p["key"], round_trips=client.round_trips)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
