"""Predictions waiting for their labels: one row of ``lossd_predictions`` per id.

A row holds the sample's non-target inputs as one binary blob (float32, or float64 for
integer inputs such as lengths, which float32 would round above 2**24), with its ``layout``
(each input's name, dtype and per-sample shape) as text: rows of one layout stack into one
kernel call when their labels arrive. Beside it: the window and segment the sample will be
recorded in, the timestamp as sent (null: none was sent; idempotency compares it, not the
window, so a retry without timestamp that crosses a window boundary is still the same
content) and when it expires.

Expiry is bounded work on write, like retention: each write of predictions deletes up to
as many expired rows (of any monitor) as it stores, plus ``EXPIRED_PER_WRITE``, so expired
rows never accumulate faster than they go, and the table is bounded by what arrives within
``label_ttl_seconds``. A labels write deletes the rows it claims (and ``EXPIRED_PER_WRITE``
expired ones). An expired row still present counts as absent everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.monitors.store import EXPIRED_PER_WRITE, Monitor, Store

PER_QUERY = 500
"""Ids per ``IN (...)`` list (SQLite allows 32,766 variables a statement; smaller lists
plan as fast)."""
COLUMNS = "id, window_start, tags, stamp, layout, data, expires"


@dataclass(frozen=True)
class Pending:
    """A stored prediction (its id is the key it is found by)."""

    window_start: int
    tags: str
    """The segment's ``tags_key``."""
    stamp: float | None
    layout: str
    data: bytes

    def same_content(self, other: Pending) -> bool:
        return (self.tags, self.stamp, self.layout, self.data) == (other.tags, other.stamp, other.layout, other.data)


class IdConflict(Exception):
    """``args[0]``: an id that waits (or repeats within the request) with other content."""


# -- the blob -----------------------------------------------------------------------------


def storage_dtype(integer: bool) -> np.dtype[Any]:
    return np.dtype(np.float64 if integer else np.float32)


def encode(arrays: dict[str, tuple[np.ndarray, bool]], count: int) -> tuple[str, list[bytes]]:
    """The layout and each sample's blob, from arrays of ``count`` samples along their first
    axis (by input name, each with whether it holds integers)."""
    parts, columns = [], []
    for name, (array, integer) in arrays.items():
        dtype = storage_dtype(integer)
        parts.append(f"{name}:{dtype.str}:{','.join(str(d) for d in array.shape[1:])}")
        flat = np.ascontiguousarray(array, dtype=dtype).reshape(count, -1)
        columns.append(flat.view(np.uint8).reshape(count, -1))
    matrix = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
    raw, width = matrix.tobytes(), matrix.shape[1]
    return ";".join(parts), [raw[i * width : (i + 1) * width] for i in range(count)]


def decode(layout: str, blobs: Sequence[bytes]) -> dict[str, np.ndarray]:
    """The stacked arrays of rows of one layout, by input name."""
    count = len(blobs)
    matrix = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(count, -1)
    arrays, offset = {}, 0
    for part in layout.split(";"):
        name, dtype_text, dims = part.split(":")
        dtype = np.dtype(dtype_text)
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
        width = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        column = np.ascontiguousarray(matrix[:, offset : offset + width])
        arrays[name] = column.view(dtype).reshape(count, *shape)
        offset += width
    return arrays


# -- the table ----------------------------------------------------------------------------


def chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), PER_QUERY):
        yield ids[start : start + PER_QUERY]


def marks(ids: Sequence[str]) -> str:
    return ", ".join("?" for _ in ids)


def pending_of(row: Sequence[Any]) -> Pending:
    _, window_start, tags, stamp, layout, data, _ = row
    return Pending(int(window_start), tags, None if stamp is None else float(stamp), layout, bytes(data))


def delete_expired(store: Store, connection: Any, now: float, limit: int) -> None:
    """At most ``limit`` expired predictions of any monitor, the oldest first."""
    connection.execute(
        store.sql(
            "DELETE FROM lossd_predictions WHERE (monitor_id, id) IN (SELECT monitor_id, id FROM lossd_predictions "
            "WHERE expires <= ? ORDER BY expires LIMIT ?)"
        ),
        (now, limit),
    )


def put(store: Store, monitor: Monitor, rows: dict[str, Pending], now: float) -> int | None:
    """Store predictions by id (the request's first occurrences), committed when this
    returns: how many were new; the others wait already with the same content (idempotent).
    Raises IdConflict for an id waiting with other content (nothing is stored then); None
    when the monitor is gone."""
    for attempt in range(2):
        try:
            with store.transaction() as connection:
                return put_in(store, connection, monitor, rows, now)
        except store.integrity_errors:  # another writer stored one of these ids meanwhile, or the monitor went
            if attempt or store.get(monitor.name) is None:
                return None
    return None  # pragma: no cover (the loop returns)


def put_in(store: Store, connection: Any, monitor: Monitor, rows: dict[str, Pending], now: float) -> int:
    delete_expired(store, connection, now, len(rows) + EXPIRED_PER_WRITE)
    ids = list(rows)
    waiting, stale = set(), []
    for part in chunks(ids):
        found = connection.execute(
            store.sql(
                f"SELECT {COLUMNS} FROM lossd_predictions WHERE monitor_id = ? AND id IN ({marks(part)}) FOR UPDATE"
            ),
            (monitor.id, *part),
        ).fetchall()
        for row in found:
            if float(row[6]) <= now:
                stale.append(row[0])
            elif not pending_of(row).same_content(rows[row[0]]):
                raise IdConflict(row[0])
            else:
                waiting.add(row[0])
    for part in chunks(stale):
        connection.execute(
            store.sql(f"DELETE FROM lossd_predictions WHERE monitor_id = ? AND id IN ({marks(part)})"),
            (monitor.id, *part),
        )
    expires = now + monitor.label_ttl_seconds
    new = [
        (monitor.id, id_, p.window_start, p.tags, p.stamp, expires, p.layout, p.data)
        for id_, p in rows.items()
        if id_ not in waiting
    ]
    if new:
        cursor = connection.cursor()
        cursor.executemany(
            store.sql(
                "INSERT INTO lossd_predictions (monitor_id, id, window_start, tags, stamp, expires, layout, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            new,
        )
    return len(new)


def claim(store: Store, connection: Any, monitor: Monitor, ids: Sequence[str], now: float) -> dict[str, Pending]:
    """Delete the predictions of these ids (in the caller's transaction, which then records
    their samples) and return those that had not expired, by id."""
    delete_expired(store, connection, now, EXPIRED_PER_WRITE)
    claimed: dict[str, Pending] = {}
    for part in chunks(ids):
        rows = connection.execute(
            store.sql(
                f"DELETE FROM lossd_predictions WHERE monitor_id = ? AND id IN ({marks(part)}) RETURNING {COLUMNS}"
            ),
            (monitor.id, *part),
        ).fetchall()
        for row in rows:
            if float(row[6]) > now:
                claimed[row[0]] = pending_of(row)
    return claimed


def waiting(store: Store, monitor: Monitor, now: float | None = None) -> int:
    """How many predictions of the monitor wait (not expired)."""
    import time

    moment = time.time() if now is None else now
    rows = store.query(
        "SELECT COUNT(*) FROM lossd_predictions WHERE monitor_id = ? AND expires > ?", (monitor.id, moment)
    )
    return int(rows[0][0])
