"""Times in requests: RFC 3339 strings or epoch seconds; windows aligned on the epoch."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from service.errors import invalid

LATEST = 253402300800.0  # 10000-01-01T00:00:00Z


def parse_time(value: object, field: str) -> float:
    """Epoch seconds from a number, a numeric string (query strings) or an RFC 3339 string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, f"expected RFC 3339 (e.g. 2026-11-22T08:00:00Z) or epoch seconds, got {value!r}")
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            seconds = _rfc3339(value, field)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds < LATEST:
        raise invalid(field, f"{value!r} is not a time between 1970 and 9999")
    return seconds


def _rfc3339(value: str, field: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(field, f"{value!r} is neither RFC 3339 (e.g. 2026-11-22T08:00:00Z) nor epoch seconds") from None
    if moment.tzinfo is None:
        raise invalid(field, f"{value!r} has no UTC offset: add 'Z' or e.g. '+02:00'")
    return moment.timestamp()


def window_start(seconds: float, window_seconds: int) -> int:
    return int(seconds // window_seconds) * window_seconds


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
