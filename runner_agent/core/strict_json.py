"""JSON as RFC 8259 has it, for documents the toolkit reads from files, jobs and GitLab.

Python's reader takes ``NaN``, ``Infinity`` and ``1e400`` (as inf); written back, they make
summaries, state and dotenv files that no JSON reader accepts (RFC 8259, section 6).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["loads"]


def _non_finite(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of a number's range")
    return value


def loads(text: str | bytes) -> Any:
    """JSON ``text``; NaN, Infinity and numbers out of a float's range are refused.
    Raises ValueError, RecursionError."""
    return json.loads(text, parse_constant=_non_finite, parse_float=_finite)
