"""Masking is a property: no form of a secret survives in anything the toolkit prints or stores,
and masking never changes a report's shape (values are masked, never keys or status words)."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from runner_agent.core.redact import MASK, Redactor, forms
from runner_agent.report.html import html_report
from runner_agent.report.model import (
    CommandResult,
    FailedTask,
    Report,
    Status,
    TaskResult,
    dotenv,
    junit,
    load_report,
    masked,
    table,
)
from runner_agent.run.events import PlaysCollector
from runner_agent.run.plays import Layout

# words the report itself is made of: a secret equal to one must not mask the structure
REPORT_WORDS = [
    "success", "failed", "error", "status", "identity", "outputs", "commands", "true",
    "null", "0", "a", "s", "e", ":", '"', "\\", " ", "*", "**", MASK, "RA_", "\n", "<", "&",
]  # fmt: skip

secrets = st.one_of(
    st.sampled_from(REPORT_WORDS),
    st.text(min_size=1, max_size=30),
    st.text(alphabet=" \t\n\"'\\é€😀\x00\x01\x7fab*", min_size=1, max_size=12),
)
around = st.text(max_size=20)


def _sep(secret: str) -> str:
    return next(c for c in "\ue000\ue001\ue002" if c not in secret)


def _leaks(secret: str, text: str) -> list[str]:
    """The forms of ``secret`` found in ``text`` outside the masks."""
    visible = text.replace(MASK, _sep(secret))
    return [f for f in forms(secret) if f in visible]


@settings(max_examples=400, deadline=None)
@given(secrets, around, around, st.sampled_from(["raw", "json", "json-raw", "repr"]))
@example("a", "b", "c", "raw")
@example("*", "x", "y", "raw")
@example('"é', "msg: ", "", "json-raw")
def test_no_form_of_a_secret_survives_masking(secret: str, pre: str, post: str, how: str) -> None:
    placed = {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json-raw": json.dumps(secret, ensure_ascii=False)[1:-1],
        "repr": repr(secret)[1:-1],
    }[how]
    out = Redactor([secret]).text(pre + placed + post)
    assert _leaks(secret, out) == []


@settings(max_examples=200, deadline=None)
@given(secrets, around)
def test_masking_twice_changes_nothing(secret: str, text: str) -> None:
    red = Redactor([secret])
    once = red.text(text + secret + text)
    assert red.text(once) == once


def _report(message: str, *, identity: str = "acme/web") -> Report:
    """A report with ``message`` in every place a value lands: messages, errors, Ansible task
    names, outputs' values (keys and status words fixed)."""
    return Report(
        identity,
        "probe",
        "1.0",
        Status.FAILED,
        commands=[
            CommandResult(
                "update",
                Status.FAILED,
                rc=2,
                failed_tasks=[FailedTask("localhost", message, message)],
                results=[TaskResult("localhost", message, "failed", 0.1, message)],
                outputs={"url": message, "nested": {"list": [message, 1]}},
                drift={"localhost": [{"key": "url", "change": message}]},
                error=message,
            )
        ],
        outputs={"url": message, "nested": {"list": [message, 1]}},
        error=message,
    )


def _rendered(report: Report) -> dict[str, str]:
    return {
        "json": report.to_json(),
        "junit": junit([report]),
        "table": table([report]),
        "dotenv": dotenv(report.to_dict()),
        "html": html_report([report]),
    }


@settings(max_examples=150, deadline=None)
@given(secrets, around, around)
@example(
    "s",
    "succe",
    "s",
)
@example("success", "", "")
@example("a", "", "")
@example("u", "", "")  # a letter of a drift entry's key ("url"), a name: never masked
def test_a_masked_report_is_the_report_with_its_values_masked_in_every_format(
    secret: str, pre: str, post: str
) -> None:
    red = Redactor([secret])
    message = pre + secret + post
    got = _rendered(masked(_report(message), red))
    want = _rendered(_report(red.text(message)))
    assert got == want  # masked where the value is, nothing else changed
    again = load_report(json.loads(got["json"]))  # and the report stays a report
    assert again.status is Status.FAILED and set(again.outputs) == {"url", "nested"}
    ET.fromstring(got["junit"].encode())


def _collect(secret: str, msg: str) -> list[str]:
    """What the collector streams and keeps of one failed task whose ``msg`` is given,
    printed as Ansible prints a result: JSON with non-ASCII raw (its callback's json.dumps)."""
    lines: list[str] = []
    layout = Layout(plays={"p": 0}, hosts={"localhost@ra0": (0, "localhost")})
    collector = PlaysCollector(layout, 1, lines.append, redactor=Redactor([secret]))
    stdout = "fatal: [localhost]: FAILED! => " + json.dumps({"msg": msg}, ensure_ascii=False)
    event = {"host": "localhost@ra0", "task": "t", "res": {"msg": msg}}
    collector({"event": "runner_on_failed", "stdout": stdout, "event_data": event})
    result = collector.plays[0].result
    (failed,) = result.failed_tasks
    return [*lines, failed.message, result.results[0].message]


@settings(max_examples=300, deadline=None)
@given(secrets, st.integers(min_value=0, max_value=2100), st.text(" \t\n", max_size=3))
@example("two  spaces", 10, " ")
@example("tab\there", 1995, "")
@example("new\nline", 1990, "\n")
@example('quote" and é', 0, "")
def test_ansible_text_is_masked_before_it_is_streamed_squashed_or_cut(
    secret: str, offset: int, blank: str
) -> None:
    def message(value: str) -> str:
        return "x" * offset + blank + value + blank + "y" * 50

    want = _collect(secret, message(MASK))  # as if Ansible had printed the mask itself
    assume(not any(_leaks(secret, text) for text in want))  # the secret is not in the frame
    got = _collect(secret, message(secret))
    assert got == want
    assert not any(_leaks(secret, text) for text in got)
