"""Times in requests: RFC 3339 strings or epoch seconds; windows aligned on the epoch.

RFC 3339 writes years 0000 to 9999: a time a response shows (a window's start and end)
must lie before ``LATEST``, so requests are refused (422) where one would not."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from service.errors import invalid

LATEST = 253402300800  # 10000-01-01T00:00:00Z, the first moment RFC 3339 cannot write
LAST = "9999-12-31T23:59:59Z"
EPOCH = re.compile(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")
"""Epoch seconds as text: digits, a fraction, an exponent (float() would also take "1_000",
" 1e9 " or "nan")."""
CYCLE_SECONDS = 146097 * 86400
"""400 Gregorian years: the calendar repeats after them."""


def parse_time(value: object, field: str) -> float:
    """Epoch seconds from a number, a numeric string (query strings) or an RFC 3339 string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, f"expected RFC 3339 (e.g. 2026-11-22T08:00:00Z) or epoch seconds, got {value!r}")
    try:
        if isinstance(value, str):
            if not value.isascii():  # Python reads fullwidth and other Unicode digits as numbers
                raise invalid(field, f"{value!r} has characters beyond ASCII: write digits 0-9")
            seconds = float(value) if EPOCH.fullmatch(value) else _rfc3339(value, field)
        else:
            seconds = float(value)
    except OverflowError:  # an integer beyond any float
        seconds = math.inf
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


def window_of(value: object, seconds: float, window_seconds: int, field: str) -> int:
    """The start of the window of ``window_seconds`` holding ``seconds`` (given as ``value``):
    a 422 naming ``field`` where that window would end after 9999."""
    start = window_start(seconds, window_seconds)
    if start + window_seconds >= LATEST:
        raise invalid(
            field,
            f"{value!r} falls in the window of {window_seconds} s from {rfc3339(start)}, which ends after "
            f"{LAST}, the last time RFC 3339 can write",
        )
    return start


def rfc3339(seconds: float) -> str:
    """UTC, e.g. ``2026-11-22T08:00:00Z``. Never fails: a time past 9999 (only a window a
    database kept from before requests were checked) is written with ISO 8601's expanded
    year, e.g. ``+10000-01-01T00:00:00Z``."""
    if 0 <= seconds < LATEST:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    cycles, within = divmod(seconds, CYCLE_SECONDS)
    text = datetime.fromtimestamp(within, UTC).isoformat().replace("+00:00", "Z")
    year = int(text[:4]) + 400 * int(cycles)
    return f"{year:04d}{text[4:]}" if 0 <= year <= 9999 else f"{year:+05d}{text[4:]}"
