"""Shared fixtures: a real etcd server on 127.0.0.1 for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from endpoints import EtcdPrefix, start_etcd


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[str]:
    """The client URL of an etcd started for this test session (stopped at its end)."""
    server = start_etcd()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def etcd(etcd_server: str) -> Iterator[EtcdPrefix]:
    """A unique, empty prefix in the session's etcd; its keys are deleted after the test."""
    corner = EtcdPrefix(etcd_server)
    try:
        yield corner
    finally:
        corner.clear()
