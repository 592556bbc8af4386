"""Retries for GitLab requests, in one place: the HTTP session python-gitlab sends through.

python-gitlab's own retry loop is switched off (see :mod:`runner_agent.gitlab.api`): it sleeps
with ``time.sleep``, reads ``Retry-After`` with ``int()`` (an HTTP date breaks it), has no cap
on the wait, and retries a POST that GitLab may already have carried out. Here:

- 429 is always retried, after ``Retry-After`` (seconds or an HTTP date) or ``RateLimit-Reset``
  (a minute when neither is sent): the request was refused, not processed; a wait longer than
  ``max_retry_after`` is an error;
- 500, 502, 503, 504 and 52x, dropped connections and read timeouts are retried with jittered
  exponential backoff, for idempotent requests only;
- a connect timeout is retried for every request: nothing was sent.

Whether the request in flight is idempotent is a context variable set by the caller.
"""

from __future__ import annotations

import contextvars
import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from runner_agent.core import signals

__all__ = ["TRANSIENT", "RetryPolicy", "RetryingSession", "idempotent", "within"]

log = logging.getLogger("runner_agent.gitlab")

TRANSIENT = frozenset([500, 502, 503, 504, *range(520, 531)])
_IDEMPOTENT: contextvars.ContextVar[bool] = contextvars.ContextVar("idempotent", default=True)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


@contextmanager
def idempotent(value: bool) -> Iterator[None]:
    """Mark the requests sent inside the block as safe (or not) to send twice."""
    token = _IDEMPOTENT.set(value)
    try:
        yield
    finally:
        _IDEMPOTENT.reset(token)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Requests sent inside the block give up once ``seconds`` have passed: shorter timeouts,
    no retry that would end later. For the last words of a job being stopped, which the
    runner kills a few seconds after asking it to stop."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried. Inject ``sleep`` (and ``now``) to test without waiting."""

    max_retries: int = 6
    backoff: float = 0.5  # first wait; doubles each retry, with jitter
    max_backoff: float = 30.0
    max_retry_after: float = 300.0  # a longer Retry-After is an error, not a nap
    # a 429 that says not when (older GitLab's application rate limits, such as pipeline
    # creation, send no Retry-After): their windows are a minute long
    unsaid_retry_after: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2.0**attempt)
        return float(base * (0.5 + self.jitter() / 2))

    def retry_after(self, headers: Mapping[str, str]) -> float | None:
        """Seconds GitLab asks us to wait: ``Retry-After`` (seconds or HTTP date), else
        ``RateLimit-Reset`` (epoch seconds)."""
        value = headers.get("Retry-After")
        if value:
            value = value.strip()
            if value.isdigit():
                return float(value)
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            return max(0.0, when.timestamp() - self.now())
        reset = headers.get("RateLimit-Reset", "")
        return max(0.0, float(reset) - self.now()) if reset.isdigit() else None


# The headers that carry a GitLab credential: python-gitlab sends PRIVATE-TOKEN (access
# tokens), JOB-TOKEN (CI_JOB_TOKEN) or Authorization (OAuth); requests strips only the last
# on a cross-host redirect (requests.Session.rebuild_auth).
CREDENTIAL_HEADERS = ("PRIVATE-TOKEN", "JOB-TOKEN", "Authorization")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit for http and https."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class RetryingSession(requests.Session):
    """The HTTP session under python-gitlab: retries by :class:`RetryPolicy`, counts requests,
    and never follows a redirect to another host with a GitLab credential."""

    def __init__(self, policy: RetryPolicy, timeout: float, home: str = "") -> None:
        super().__init__()
        self.policy = policy
        self.default_timeout = timeout
        self.home = home  # the GitLab the credentials are for; "" until connect() sets it

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        """On a redirect (object storage for package files and artifacts, GitLab's direct
        download: doc/administration/object_storage.md, proxy_download), keep credentials only
        when the target is the GitLab they were given for."""
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        target = origin(str(prepared_request.url))
        home = self.home or str(response.request.url)
        if target != origin(home):
            for name in CREDENTIAL_HEADERS:
                prepared_request.headers.pop(name, None)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        idempotent = _IDEMPOTENT.get()
        deadline = _deadline()
        verb = method.decode() if isinstance(method, bytes) else method
        where = f"{verb.upper()} {urlsplit(str(url)).path}"
        attempt = 0
        while True:
            if deadline is not None:
                if _left(deadline) <= 0:  # not sent: a deadline is a deadline
                    raise requests.exceptions.ConnectTimeout(f"{where}: past its deadline")
                kwargs["timeout"] = max(0.2, min(_seconds(kwargs["timeout"]), _left(deadline)))
            try:
                response = super().request(method, url, *args, **kwargs)
            except requests.exceptions.ConnectTimeout:
                wait = self.policy.delay(attempt)  # never sent: safe to send again
                if attempt >= self.policy.max_retries or _late(deadline, wait):
                    raise
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ):
                if not idempotent or attempt >= self.policy.max_retries:
                    raise
                wait = self.policy.delay(attempt)
                if _late(deadline, wait):
                    raise
            else:
                asked = self._wait_for(response, attempt, idempotent)
                if asked is None or _late(deadline, asked):
                    return response
                wait = asked
            attempt += 1
            log.info("%s: retry %d/%d in %.1fs", where, attempt, self.policy.max_retries, wait)
            self.policy.sleep(wait)

    def _wait_for(
        self, response: requests.Response, attempt: int, idempotent: bool
    ) -> float | None:
        status = response.status_code
        if attempt >= self.policy.max_retries:
            return None
        if status == 429:
            asked = self.policy.retry_after(response.headers)
            if asked is not None and asked > self.policy.max_retry_after:
                return None
            if asked is None:  # a rate limit window, with jitter so clients do not line up
                unsaid = min(self.policy.unsaid_retry_after, self.policy.max_retry_after)
                return unsaid * (1 + self.policy.jitter() / 10)
            return asked
        if status in TRANSIENT and idempotent:
            return self.policy.delay(attempt)
        return None


def _deadline() -> float | None:
    """The ``within`` deadline, or STOP_GRACE after a stop signal, whichever comes first."""
    found = [d for d in (_DEADLINE.get(), _stopping_deadline()) if d is not None]
    return min(found) if found else None


def _stopping_deadline() -> float | None:
    since = signals.stop_requested_at()
    return None if since is None else since + signals.STOP_GRACE


def _seconds(timeout: Any) -> float:
    """A requests timeout as one number: the connect part of a (connect, read) pair."""
    return float(timeout[0] if isinstance(timeout, tuple) else timeout)


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def _late(deadline: float | None, wait: float) -> bool:
    """Whether a retry after ``wait`` seconds would come after the deadline."""
    return deadline is not None and time.monotonic() + wait >= deadline
