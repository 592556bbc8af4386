"""STACKL's Redis for the worker tests: tests/endpoints.py's redis-server, with a password (as
STACKL's own Redis has) and that password in the URL the worker is given."""

from __future__ import annotations

import dataclasses
import secrets

from endpoints import RedisServer
from endpoints import start_redis as start_endpoint

__all__ = ["RedisServer", "start_redis"]


def start_redis(timeout: float = 20) -> RedisServer:
    """A redis-server on 127.0.0.1 with a random password; ``url`` carries it."""
    password = secrets.token_hex(16)
    server = start_endpoint(password=password, timeout=timeout)
    return dataclasses.replace(server, url=f"redis://:{password}@127.0.0.1:{server.port}/0")
