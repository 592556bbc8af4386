"""``cycle`` runs as GitLab pipeline schedules: a frequency or a cron expression in, a schedule out.

A schedule starts the agent project's pipeline with ``identity`` (or ``task_file``) and
``command: cycle`` as inputs (``RA_IDENTITY``/``RA_TASK_FILE`` and ``RA_COMMAND`` variables for
GitLab versions without inputs). Its description, ``runner-agent cycle <identity>``, is its key:
creating it again returns the one that exists instead of a second schedule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.gitlab.api import GitLabAPI, NotFound
from runner_agent.model.identity import is_identity

__all__ = [
    "Schedule",
    "create_schedule",
    "delete_schedule",
    "frequency_to_cron",
    "list_schedules",
    "validate_cron",
]

DESCRIPTION_PREFIX = "runner-agent cycle "
# GitLab starts due schedules when its schedule worker runs: every 10 minutes on a self-managed
# instance by default (config/initializers/1_settings.rb, pipeline_schedule_worker cron
# "3-59/10 * * * *"); a schedule every 5 minutes would run every 10 there.
MIN_MINUTES = 10
_FREQUENCY = re.compile(r"^([1-9][0-9]{0,3})([mhd])$")
_TASK_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
# one cron field: *, a number or a range, each with an optional /step; comma lists of those
_ITEM = r"(\*|[0-9]{1,2}(-[0-9]{1,2})?)(/[0-9]{1,2})?"
_FIELD = re.compile(rf"^{_ITEM}(,{_ITEM})*$")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Schedule:
    id: int
    description: str
    cron: str
    ref: str
    active: bool
    next_run_at: str
    existed: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any], existed: bool = False) -> Schedule:
        return cls(
            id=int(data["id"]),
            description=str(data.get("description", "")),
            cron=str(data.get("cron", "")),
            ref=str(data.get("ref", "")),
            active=bool(data.get("active", True)),
            next_run_at=str(data.get("next_run_at") or ""),
            existed=existed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "cron": self.cron,
            "ref": self.ref,
            "active": self.active,
            "next_run_at": self.next_run_at,
            "existed": self.existed,
        }


def _spread(identity: str, modulo: int) -> int:
    """A stable offset per identity, so many schedules do not all start on the same minute."""
    return int(hashlib.sha256(identity.encode()).hexdigest(), 16) % modulo


def frequency_to_cron(frequency: str, identity: str = "") -> str:
    """``10m``, ``1h``, ``1d``, ``7d``... as cron. Minutes must divide an hour, hours a day;
    days are 1 (daily) or 7 (weekly). Raises InvalidInput otherwise."""
    m = _FREQUENCY.match(frequency.strip())
    if not m:
        raise InvalidInput(Problem("--every", f"{frequency!r}: expected such as 10m, 1h or 1d"))
    n, unit = int(m.group(1)), m.group(2)
    minute = _spread(identity, 60)
    if unit == "m":
        if n < MIN_MINUTES or 60 % n:
            reason = f"minutes must divide 60 and be at least {MIN_MINUTES}"
            raise InvalidInput(
                Problem("--every", f"{frequency}: {reason} (GitLab starts schedules every 10)")
            )
        return f"{minute % n}-59/{n} * * * *" if n > 1 else "* * * * *"
    if unit == "h":
        if 24 % n:
            raise InvalidInput(Problem("--every", f"{frequency}: hours must divide 24"))
        return f"{minute} */{n} * * *" if n > 1 else f"{minute} * * * *"
    hour = _spread(identity + "/h", 24)
    if n == 1:
        return f"{minute} {hour} * * *"
    if n == 7:
        return f"{minute} {hour} * * {_spread(identity + '/d', 7)}"
    raise InvalidInput(
        Problem("--every", f"{frequency}: days must be 1d or 7d (cron has no N days)")
    )


def validate_cron(expression: str) -> str:
    """The expression when it is a 5-field cron GitLab accepts. Raises InvalidInput."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidInput(Problem("--cron", f"{expression!r}: expected 5 fields"))
    for text, (low, high), name in zip(fields, _BOUNDS, _NAMES, strict=True):
        if not _FIELD.match(text):
            raise InvalidInput(Problem("--cron", f"{name} field {text!r} is not valid"))
        for number in re.findall(r"[0-9]+", text.split("/")[0]):
            if not low <= int(number) <= high:
                raise InvalidInput(Problem("--cron", f"{name} {number} is out of {low}-{high}"))
    return " ".join(fields)


def _description(identity: str) -> str:
    return DESCRIPTION_PREFIX + identity


def list_schedules(api: GitLabAPI) -> list[Schedule]:
    """The project's runner-agent schedules. Raises GitLabError."""
    return [
        Schedule.from_api(s)
        for s in api.list_schedules()
        if str(s.get("description", "")).startswith(DESCRIPTION_PREFIX)
    ]


def create_schedule(
    api: GitLabAPI,
    identity: str,
    cron: str,
    *,
    ref: str,
    task_file: str | None = None,
    variables: bool = False,
    timezone: str = "UTC",
) -> Schedule:
    """A schedule running ``cycle`` for the identity; the existing one when there is one.

    Raises InvalidInput for a bad identity, task file or cron; GitLabError.
    """
    problems = []
    if not is_identity(identity):
        problems.append(Problem("IDENTITY", f"{identity!r} is not a valid identity"))
    if task_file is not None and (not _TASK_FILE.match(task_file) or ".." in task_file.split("/")):
        problems.append(Problem("--task-file", f"{task_file!r} is not a path in the repository"))
    if problems:
        raise InvalidInput(problems)
    cron = validate_cron(cron)
    for existing in api.list_schedules():
        if existing.get("description") == _description(identity):
            return Schedule.from_api(existing, existed=True)
    names = {"task_file": task_file} if task_file else {"identity": identity}
    names["command"] = "cycle"
    created = api.create_schedule(
        description=_description(identity),
        ref=ref,
        cron=cron,
        cron_timezone=timezone,
        inputs=None if variables else names,
    )
    if variables:
        for key, value in names.items():
            api.create_schedule_variable(int(created["id"]), f"RA_{key.upper()}", str(value))
    return Schedule.from_api(created)


def delete_schedule(api: GitLabAPI, schedule_id: int) -> bool:
    """Delete a schedule; False when it was already gone. Raises GitLabError."""
    try:
        api.delete_schedule(schedule_id)
    except NotFound:
        return False
    return True
