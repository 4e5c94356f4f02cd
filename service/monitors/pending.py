"""Predictions waiting for their labels: one row of ``lossd_prediction_batches`` per
predictions request, found by id through an index each worker keeps in memory.

A row holds a request's samples: their ids (JSON text), their non-target inputs as one
binary matrix (a row of bytes per sample: float32, or float64 for integer inputs such as
lengths, which float32 would round above 2**24) with its ``layout`` (each input's name,
dtype and per-sample shape), a bitmap of the samples already labelled and how many still
wait; beside them the window and segment the samples will be recorded in, the timestamp as
sent (null: none was sent; idempotency compares it, not the window, so a retry without
timestamp that crosses a window boundary is still the same content) and when they expire.
One row per request, not per id: storing 1,000 ids as rows of an indexed table costs
milliseconds, one row tens of microseconds.

The index (id -> row and position) is rebuilt from the rows: before each read, a worker
reads the rows of the monitor newer than the newest it has seen (ids only ever grow:
AUTOINCREMENT on SQLite, an identity on PostgreSQL; writers of one monitor's predictions
hold its row's lock, so rows become visible in id order). The rows stay the truth: a row's
bitmap, not the index, says whether a sample still waits, under the row's lock. The index
forgets a row once it expires, and once a labels write of its worker has labelled its last
prediction (another worker's index forgets it when it next finds it gone, or at expiry), so
memory, like the table, is bounded by what arrives within ``label_ttl_seconds``.

Expiry is bounded work on write, like retention: each write deletes up to
``EXPIRED_PER_WRITE`` expired rows (of any monitor), more than the one row it adds, so
expired rows never accumulate. A row whose samples are all labelled is deleted by the
labels write that labels the last one. An expired row still present counts as absent.
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import orjson

from service.monitors.store import EXPIRED_PER_WRITE, Monitor, Store, run

PER_QUERY = 500
"""Row ids per ``IN (...)`` list."""
COLUMNS = "id, window_start, tags, stamp, expires, layout, data, labelled, waiting"


class IdConflict(Exception):
    """``args[0]``: an id that waits with other content (nothing was stored)."""


# -- the binary rows ------------------------------------------------------------------------


def storage_dtype(integer: bool) -> np.dtype[Any]:
    return np.dtype(np.float64 if integer else np.float32)


def encode(arrays: dict[str, tuple[np.ndarray, bool]], count: int) -> tuple[str, np.ndarray]:
    """The layout and a (count, bytes per sample) uint8 matrix, from arrays of ``count``
    samples along their first axis (by input name, each with whether it holds integers)."""
    parts, columns = [], []
    for name, (array, integer) in arrays.items():
        dtype = storage_dtype(integer)
        parts.append(f"{name}:{dtype.str}:{','.join(str(d) for d in array.shape[1:])}")
        flat = np.ascontiguousarray(array, dtype=dtype).reshape(count, -1)
        columns.append(flat.view(np.uint8).reshape(count, -1))
    matrix = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
    return ";".join(parts), matrix


def width(layout: str) -> int:
    """Bytes per sample."""
    total = 0
    for part in layout.split(";"):
        _, dtype_text, dims = part.split(":")
        total += (
            int(np.prod([int(d) for d in dims.split(",")] if dims else [], dtype=np.int64))
            * np.dtype(dtype_text).itemsize
        )
    return total


def decode(layout: str, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays, by input name, of a (samples, bytes per sample) matrix."""
    count = matrix.shape[0]
    arrays, offset = {}, 0
    for part in layout.split(";"):
        name, dtype_text, dims = part.split(":")
        dtype = np.dtype(dtype_text)
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        column = np.ascontiguousarray(matrix[:, offset : offset + size])
        arrays[name] = column.view(dtype).reshape(count, *shape)
        offset += size
    return arrays


@dataclass(frozen=True)
class Batch:
    """A stored predictions request."""

    id: int
    window_start: int
    tags: str
    """The segment's ``tags_key``."""
    stamp: float | None
    expires: float
    layout: str
    data: bytes
    labelled_bits: bytes
    waiting: int

    @cached_property
    def matrix(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8).reshape(-1, width(self.layout))

    @cached_property
    def labelled(self) -> np.ndarray:
        return np.unpackbits(np.frombuffer(self.labelled_bits, dtype=np.uint8), count=self.matrix.shape[0]).astype(bool)

    def waits(self, position: int, now: float) -> bool:
        return self.expires > now and not self.labelled[position]

    def same(self, position: int, tags: str, stamp: float | None, layout: str, sample: np.ndarray) -> bool:
        return (self.tags, self.stamp, self.layout) == (tags, stamp, layout) and bool(
            np.array_equal(self.matrix[position], sample)
        )


def batch_of(row: Sequence[Any]) -> Batch:
    id_, window_start, tags, stamp, expires, layout, data, labelled, waiting = row
    return Batch(
        int(id_),
        int(window_start),
        tags,
        None if stamp is None else float(stamp),
        float(expires),
        layout,
        bytes(data),
        bytes(labelled),
        int(waiting),
    )


# -- the index of each worker ---------------------------------------------------------------


@dataclass
class Index:
    """One monitor's ids, as far as this worker has read its rows."""

    last: int = 0
    """The newest row read."""
    ids: dict[str, int] = field(default_factory=dict)
    """id -> its row << 32 | its position there; a later row's entry replaces an earlier one's."""
    rows: dict[int, tuple[float, list[str]]] = field(default_factory=dict)
    """row -> (expires, its ids), in id order: what to forget when a row expires."""
    reused: bool = False
    """Some id took the entry of an earlier row (sent again once labelled or expired): forgetting a
    row then checks each of its ids' entry."""
    lock: threading.Lock = field(default_factory=threading.Lock)


_indexes: weakref.WeakKeyDictionary[Store, dict[int, Index]] = weakref.WeakKeyDictionary()
_registry = threading.Lock()


def index_of(store: Store, monitor: Monitor) -> Index:
    with _registry:
        return _indexes.setdefault(store, {}).setdefault(monitor.id, Index())


SHIFT = 32
"""A code's row is its bits from here up (a request holds fewer than 2**32 samples)."""


def locate(
    store: Store, connection: Any, monitor: Monitor, ids: Sequence[str], now: float, known_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Where the ids were stored, as far as rows committed now tell (an id may be labelled
    or expired since: the row says): each id's row (-1: none) and position there. With
    ``known_only``, a request of ids none of which was seen is answered at set speed."""
    index = index_of(store, monitor)
    with index.lock:
        catch_up(store, connection, monitor, index)
        forget_expired(index, now)
        if known_only and not any(map(index.ids.__contains__, ids)):  # (keys() & ids would copy every key)
            return np.full(len(ids), -1, dtype=np.int64), np.zeros(len(ids), dtype=np.int64)
        codes = np.fromiter(map(index.ids.get, ids, itertools.repeat(-1)), dtype=np.int64, count=len(ids))
    found = codes >= 0
    return np.where(found, codes >> SHIFT, -1), np.where(found, codes & ((1 << SHIFT) - 1), 0)


def catch_up(store: Store, connection: Any, monitor: Monitor, index: Index) -> None:
    """Read the monitor's rows newer than the index has (under its lock)."""
    rows = run(
        connection,
        store.sql("SELECT id, expires, ids FROM lossd_prediction_batches WHERE monitor_id = ? AND id > ? ORDER BY id"),
        (monitor.id, index.last),
    )
    for row_id, expires, text in rows:
        add(index, int(row_id), float(expires), orjson.loads(text))


def add(index: Index, row: int, expires: float, names: list[str]) -> None:
    """A row into the index (the newest: rows are added in id order)."""
    index.rows[row] = (expires, names)
    before = len(index.ids)
    index.ids.update(zip(names, range(row << SHIFT, (row << SHIFT) + len(names)), strict=True))
    if len(index.ids) - before < len(names):  # (a row's ids are distinct)
        index.reused = True
    index.last = row


def forget_expired(index: Index, now: float) -> None:
    while index.rows:
        row, (expires, _) = next(iter(index.rows.items()))
        if expires > now:  # rows come in id order, their expiry nearly so: the rest is younger
            return
        drop(index, row)


def drop(index: Index, row: int) -> None:
    """Forget a row (under the index's lock)."""
    entry = index.rows.pop(row, None)
    if entry is None:
        return
    names, ids = entry[1], index.ids
    if index.reused:  # an id a later row took again keeps that row's entry: this row's own are its range
        codes = range(row << SHIFT, (row << SHIFT) + len(names))
        names = [name for name, code, held in zip(names, codes, map(ids.get, names), strict=True) if held == code]
    collections.deque(map(ids.pop, names, itertools.repeat(None)), maxlen=0)  # the loop in C: ~10 us per 1,000
    if not index.rows:
        index.reused = False


def forget(store: Store, monitor: Monitor, rows: Iterable[int]) -> None:
    """Forget rows known to be gone (deleted by a committed transaction): the index then
    holds about what waits, not all that arrived within the TTL."""
    index = index_of(store, monitor)
    with index.lock:
        for row in rows:
            drop(index, row)


# -- the table ------------------------------------------------------------------------------


def delete_expired(store: Store, connection: Any, now: float) -> None:
    """At most EXPIRED_PER_WRITE expired rows of any monitor, the oldest first. PostgreSQL
    skips rows another transaction has locked (a labels write that found them unexpired by
    its clock): expiry never waits, so it never closes a cycle of locks."""
    skip = " FOR UPDATE SKIP LOCKED" if store.for_update else ""
    connection.execute(
        store.sql(
            "DELETE FROM lossd_prediction_batches WHERE id IN (SELECT id FROM lossd_prediction_batches "
            f"WHERE expires <= ? ORDER BY expires LIMIT ?{skip})"
        ),
        (now, EXPIRED_PER_WRITE),
    )


def load(store: Store, connection: Any, rows: Iterable[int], lock: bool) -> dict[int, Batch]:
    """Rows by id (in id order, so that writers locking several lock them in one order)."""
    wanted = sorted(set(rows))
    found: dict[int, Batch] = {}
    for start in range(0, len(wanted), PER_QUERY):
        part = wanted[start : start + PER_QUERY]
        statement = (
            f"SELECT {COLUMNS} FROM lossd_prediction_batches WHERE id IN ({', '.join('?' for _ in part)}) ORDER BY id"
        )
        for row in run(connection, store.sql(statement + (" FOR UPDATE" if lock else "")), part):
            batch = batch_of(row)
            found[batch.id] = batch
    return found


def put(
    store: Store,
    monitor: Monitor,
    ids: list[str],
    layout: str,
    matrix: np.ndarray,
    window_start: int,
    tags: str,
    stamp: float | None,
    now: float,
) -> int | None:
    """Store a request's predictions (``ids`` distinct, ``matrix`` their samples), committed
    when this returns: how many were new; the others wait already with the same content
    (idempotent). Raises IdConflict for an id waiting with other content (nothing is stored
    then); None when the monitor is gone."""
    with store.transaction() as connection:
        # Writers of one monitor's predictions, one at a time: rows become visible in id order.
        if not run(connection, store.sql("SELECT id FROM lossd_monitors WHERE id = ? FOR UPDATE"), (monitor.id,)):
            return None
        delete_expired(store, connection, now)
        rows, positions = locate(store, connection, monitor, ids, now, known_only=True)
        keep = np.ones(len(ids), dtype=bool)
        known = np.flatnonzero(rows >= 0)
        batches = load(store, connection, rows[known].tolist(), lock=False)
        for place in known.tolist():  # ids stored before (rare): waiting still, and the same?
            batch, at = batches.get(int(rows[place])), int(positions[place])
            if batch is None or not batch.waits(at, now):
                continue
            if not batch.same(at, tags, stamp, layout, matrix[place]):
                raise IdConflict(ids[place])
            keep[place] = False
        new = ids if keep.all() else [id_ for id_, kept in zip(ids, keep, strict=True) if kept]
        if not new:
            return 0
        expires = now + monitor.label_ttl_seconds
        ((row,),) = run(
            connection,
            store.sql(
                "INSERT INTO lossd_prediction_batches (monitor_id, window_start, tags, stamp, expires, layout, "
                "ids, data, labelled, waiting) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
            ),
            (
                monitor.id,
                window_start,
                tags,
                stamp,
                expires,
                layout,
                orjson.dumps(new).decode(),
                matrix[keep].tobytes(),
                np.packbits(np.zeros(len(new), dtype=bool)).tobytes(),
                len(new),
            ),
        )
    # Committed, and the newest row of the monitor (its writers take turns): this worker's
    # index takes it now rather than reading it back, unless a catch-up already did.
    index = index_of(store, monitor)
    with index.lock:
        if index.last < int(row):
            add(index, int(row), expires, new)
    return len(new)


@dataclass(frozen=True)
class Claimed:
    """Matched predictions of one row."""

    batch: Batch
    positions: np.ndarray
    """Theirs in the row."""
    requests: np.ndarray
    """Their ids' places in the list ``claim`` was given."""


def claim(
    store: Store, connection: Any, monitor: Monitor, ids: Sequence[str], now: float
) -> tuple[list[Claimed], list[int]]:
    """Mark the waiting predictions of these (distinct) ids labelled, in the caller's
    transaction, which then records their samples (a row with none left waiting is
    deleted), and return them by row, with the rows that are gone once it commits (for
    ``forget``)."""
    delete_expired(store, connection, now)
    rows, positions = locate(store, connection, monitor, ids, now)
    known = np.flatnonzero(rows >= 0)
    order = known[np.argsort(rows[known], kind="stable")]
    starts = np.flatnonzero(np.diff(rows[order], prepend=-2))
    per_row = {int(rows[group[0]]): (positions[group], group) for group in np.split(order, starts[1:]) if group.size}
    batches = load(store, connection, per_row, lock=True)
    claimed: list[Claimed] = []
    gone = [row for row in per_row if row not in batches]
    for row, (at, places) in per_row.items():
        batch = batches.get(row)
        if batch is None or batch.expires <= now:
            continue
        fresh = ~batch.labelled[at]
        taken, requests = at[fresh], places[fresh]
        if not taken.size:
            continue
        left = batch.waiting - int(taken.size)
        if left <= 0:
            connection.execute(store.sql("DELETE FROM lossd_prediction_batches WHERE id = ?"), (row,))
            gone.append(row)
        else:
            labelled = batch.labelled.copy()
            labelled[taken] = True
            connection.execute(
                store.sql("UPDATE lossd_prediction_batches SET labelled = ?, waiting = ? WHERE id = ?"),
                (np.packbits(labelled).tobytes(), left, row),
            )
        claimed.append(Claimed(batch, taken, requests))
    return claimed, gone


def waiting(store: Store, monitor: Monitor, now: float) -> int:
    """How many predictions of the monitor wait (not expired)."""
    rows = store.query(
        "SELECT COALESCE(SUM(waiting), 0) FROM lossd_prediction_batches WHERE monitor_id = ? AND expires > ?",
        (monitor.id, now),
    )
    return int(rows[0][0])
