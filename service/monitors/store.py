"""Monitors in a database: SQLite (a file, WAL mode) or PostgreSQL (psycopg 3).

Rollups, maintained on write: each acknowledged batch is added, in one transaction
committed before the client gets its 200, to

- its segment's row (``lossd_segments``: the monitor's totals for one combination of tag
  values; a monitor without segments has one, tags ``{}``), and
- its window's row (``lossd_windows``, one per segment and window start): count, weight,
  sums, sum of squares, extremes and the merged DDSketch.

The sums are added by the database (``INSERT ... ON CONFLICT DO UPDATE``), which also locks
the window's row; the sketch is merged in Python while that lock is held (PostgreSQL row
locks; SQLite's ``BEGIN IMMEDIATE`` takes the database's write lock). So several workers or
replicas writing one monitor never lose each other's counts, a killed process loses nothing
it acknowledged, and a read costs O(windows) rows, a scrape O(segments), whatever the number
of batches.

Retention and baselines are settled when a batch opens a new window row (at most once per
window and segment): windows older than ``retention_seconds`` are deleted, a bounded number
per write, and a baseline made of the first windows is frozen (its sums and merged sketch)
once a window after it exists, so neither retention nor late data moves it afterwards.
From then on each write of a judged window stores its KS distance from its segment's
baseline with it (``drift``), so reads and scrapes of one segment decode no sketch.

Calls block: the routes that use them are sync and run in the threadpool. Each thread keeps
its own connection.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.monitors.aggregate import QUANTILES, Aggregate, merge
from service.monitors.baseline import DEFAULT_WINDOWS, Baseline, baseline, sketch_text
from service.monitors.drift import ks
from service.monitors.sketch import Sketch

Row = tuple[Any, ...]
Tags = dict[str, str | None]
DEFAULT_LABEL_TTL_SECONDS = 7 * 86400
EXPIRED_PER_WRITE = 64
"""Most expired window rows one write deletes (retention's bounded work)."""
REACHABLE_SECONDS = 1.0
"""How long ``Store.reachable``'s answer is reused: readiness probes do not hammer the database."""
PROBE_TIMEOUT_SECONDS = 2
"""PostgreSQL: how long connecting for a reachability probe may take; a probe still running
after it counts as unreachable."""


@dataclass(frozen=True)
class Monitor:
    id: int
    name: str
    loss: str
    params: dict[str, Any]
    window_seconds: int
    baseline: dict[str, Any]
    """The baseline's configuration (``windows``, ``threshold``) and, when given, ``reference`` stats."""
    created: float
    segments: tuple[str, ...] = ()
    """The tag keys observations may carry."""
    retention_seconds: int | None = None
    frozen: dict[str, Any] | None = None
    """The baseline of all segments merged, once fixed (see ``Store.record``)."""
    label_ttl_seconds: int = DEFAULT_LABEL_TTL_SECONDS
    """How long a stored prediction waits for its label (service.monitors.pending)."""

    def cutoff(self, now: float) -> float | None:
        """Windows starting at or before this are past retention (None: kept for ever)."""
        if self.retention_seconds is None:
            return None
        return now - self.retention_seconds - self.window_seconds

    def expired(self, window_start: int, now: float) -> bool:
        cutoff = self.cutoff(now)
        return cutoff is not None and window_start <= cutoff


@dataclass(frozen=True)
class Segment:
    """A monitor's totals for one combination of tag values (without sketch)."""

    id: int
    monitor_id: int
    tags: Tags
    totals: Aggregate
    latest: int
    """The start of its latest window with data."""
    frozen: dict[str, Any] | None
    """Its baseline, once fixed."""


class Conflict(Exception):
    """A monitor of that name exists."""


class TooManySegments(Exception):
    """The monitor has as many segments as it may have; ``args[0]`` is the bound."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS lossd_monitors (
    id {serial} PRIMARY KEY{never_reused},
    name TEXT NOT NULL UNIQUE,
    loss TEXT NOT NULL,
    params TEXT NOT NULL,
    window_seconds BIGINT NOT NULL,
    baseline TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    segments TEXT NOT NULL DEFAULT '[]',
    retention_seconds BIGINT,
    frozen TEXT,
    label_ttl_seconds BIGINT NOT NULL DEFAULT {label_ttl}
);
CREATE TABLE IF NOT EXISTS lossd_segments (
    id {serial} PRIMARY KEY,
    monitor_id BIGINT NOT NULL REFERENCES lossd_monitors(id) ON DELETE CASCADE,
    tags TEXT NOT NULL,
    count BIGINT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    squares DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    latest BIGINT NOT NULL,
    frozen TEXT,
    UNIQUE (monitor_id, tags)
);
CREATE TABLE IF NOT EXISTS lossd_windows (
    segment_id BIGINT NOT NULL REFERENCES lossd_segments(id) ON DELETE CASCADE,
    window_start BIGINT NOT NULL,
    monitor_id BIGINT NOT NULL,
    batches BIGINT NOT NULL,
    count BIGINT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    squares DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    sketch {blob} NOT NULL,
    p50 DOUBLE PRECISION,
    p90 DOUBLE PRECISION,
    p99 DOUBLE PRECISION,
    drift DOUBLE PRECISION,
    PRIMARY KEY (segment_id, window_start)
);
CREATE INDEX IF NOT EXISTS lossd_windows_monitor ON lossd_windows (monitor_id, window_start);
CREATE TABLE IF NOT EXISTS lossd_prediction_batches (
    id {serial} PRIMARY KEY{never_reused},
    monitor_id BIGINT NOT NULL REFERENCES lossd_monitors(id) ON DELETE CASCADE,
    window_start BIGINT NOT NULL,
    tags TEXT NOT NULL,
    stamp DOUBLE PRECISION,
    expires DOUBLE PRECISION NOT NULL,
    layout TEXT NOT NULL,
    ids TEXT NOT NULL,
    data {blob} NOT NULL,
    labelled {blob} NOT NULL,
    waiting BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS lossd_prediction_batches_monitor ON lossd_prediction_batches (monitor_id, id);
CREATE INDEX IF NOT EXISTS lossd_prediction_batches_expiry ON lossd_prediction_batches (expires)
"""
ADDED_MONITOR_COLUMNS = {
    "segments": "TEXT NOT NULL DEFAULT '[]'",
    "retention_seconds": "BIGINT",
    "frozen": "TEXT",
    "label_ttl_seconds": f"BIGINT NOT NULL DEFAULT {DEFAULT_LABEL_TTL_SECONDS}",
}
"""Columns a database from before rollups lacks."""
ADDED_WINDOW_COLUMNS = {"drift": "DOUBLE PRECISION"}
"""Columns a database from before drift lacks."""
MONITOR_COLUMNS = (
    "id, name, loss, params, window_seconds, baseline, created, segments, retention_seconds, frozen, label_ttl_seconds"
)
SEGMENT_COLUMNS = "id, monitor_id, tags, count, weight, total, squares, low, high, latest, frozen"
SUMS = "SUM(count), SUM(weight), SUM(total), SUM(squares), MIN(low), MAX(high)"
WINDOW_COLUMNS = "window_start, count, weight, total, squares, low, high, sketch"
INSERTED_WINDOW_COLUMNS = f"segment_id, monitor_id, batches, {WINDOW_COLUMNS}, p50, p90, p99"
EMPTY_SKETCH = Sketch().encode()


def tags_key(tags: Mapping[str, str | None]) -> str:
    """The canonical text of a segment's tags (its identity in the database)."""
    return json.dumps(tags, sort_keys=True, separators=(",", ":"))


class Store(ABC):
    """The monitors, their segments and windows; subclasses connect to one kind of database."""

    placeholder = "?"
    least, greatest = "MIN", "MAX"
    for_update = ""
    waits_on_network = False
    """Whether a call may wait on a network round trip (then callers keep it off the event loop)."""
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._reachable = (False, -REACHABLE_SECONDS)
        """The last probe's answer and when it was taken (monotonic seconds)."""
        self._probing: float | None = None
        """When the probe now running began."""

    # -- reachability, for readiness -----------------------------------------------------

    def reachable(self) -> bool:
        """Whether the database can be used now: the last probe's answer when it is under
        REACHABLE_SECONDS old, else a new probe (one at a time: a call meanwhile gets the last
        answer, or False once the running probe is past PROBE_TIMEOUT_SECONDS). Blocks while
        probing where ``waits_on_network``."""
        now = time.monotonic()
        with self._lock:
            answer, taken = self._reachable
            if now - taken < REACHABLE_SECONDS:
                return answer
            if self._probing is not None:
                return answer and now - self._probing < PROBE_TIMEOUT_SECONDS
            self._probing = now
        try:
            answer = self.probe()
        except Exception:
            answer = False
        with self._lock:
            self._reachable, self._probing = (answer, time.monotonic()), None
        return answer

    @abstractmethod
    def probe(self) -> bool:
        """Check the database is usable (may raise: unreachable)."""

    # -- connections, one per thread --------------------------------------------------

    @abstractmethod
    def connect(self) -> Any:
        """A new connection, in autocommit mode outside explicit transactions."""

    def connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(connection, "closed", False):  # psycopg's, after the server went away
            # Forgotten before reconnecting: a connect that fails (the database still down)
            # must leave nothing behind for the next call to trip over.
            self._local.connection = connection = None
            with self._lock:
                self._connections = [c for c in self._connections if not getattr(c, "closed", False)]
        if connection is None:
            connection = self._local.connection = self.connect()
            with self._lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def sql(self, statement: str) -> str:
        return (
            statement.replace("?", self.placeholder)
            .replace("LEAST(", f"{self.least}(")
            .replace("GREATEST(", f"{self.greatest}(")
            .replace(" FOR UPDATE", self.for_update)
        )

    def query(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        return run(self.connection(), self.sql(statement), args)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction on this thread's connection: committed on exit, rolled back on an error."""

    @abstractmethod
    def table_exists(self, connection: Any, name: str) -> bool: ...

    @abstractmethod
    def schema(self) -> str: ...

    def initialise(self) -> None:
        """Create the tables where they do not exist; bring a database from before rollups
        (one row per batch in ``lossd_observations``) up to date, in one transaction."""
        with self.transaction() as connection:
            self.lock_schema(connection)
            for statement in filter(str.strip, self.schema().split(";")):
                connection.execute(statement)
            columns = {d[0] for d in connection.execute("SELECT * FROM lossd_monitors WHERE 1 = 0").description}
            for column, declaration in ADDED_MONITOR_COLUMNS.items():
                if column not in columns:
                    connection.execute(f"ALTER TABLE lossd_monitors ADD COLUMN {column} {declaration}")
            columns = {d[0] for d in connection.execute("SELECT * FROM lossd_windows WHERE 1 = 0").description}
            for column, declaration in ADDED_WINDOW_COLUMNS.items():
                if column not in columns:
                    connection.execute(f"ALTER TABLE lossd_windows ADD COLUMN {column} {declaration}")
            self.never_reuse_ids(connection)
            if self.table_exists(connection, "lossd_observations"):
                self.migrate_observations(connection)

    def lock_schema(self, connection: Any) -> None:  # noqa: B027 (SQLite needs nothing)
        """Serialise start-up across processes (SQLite: BEGIN IMMEDIATE already does)."""

    def never_reuse_ids(self, connection: Any) -> None:  # noqa: B027 (PostgreSQL's identity never reuses)
        """Bring a table of monitors whose ids could be handed out again up to date: a batch
        in flight while its monitor is deleted must find no monitor of that id (see ``record``)."""

    def migrate_observations(self, connection: Any) -> None:
        """Roll the rows of the schema before rollups up into windows, then drop them."""
        rows = run(
            connection,
            "SELECT monitor_id, window_start, count, weight, total, squares, min, max, sketch "
            "FROM lossd_observations ORDER BY monitor_id, window_start, id",
        )
        windows: dict[int, dict[int, Aggregate]] = {}
        batches: dict[tuple[int, int], int] = {}
        for monitor_id, start, *values in rows:
            per_monitor = windows.setdefault(int(monitor_id), {})
            aggregate = aggregate_of(values)
            per_monitor[int(start)] = per_monitor[int(start)].merged(aggregate) if start in per_monitor else aggregate
            batches[int(monitor_id), int(start)] = batches.get((int(monitor_id), int(start)), 0) + 1
        for monitor_id, per_monitor in windows.items():
            totals = Aggregate()
            for aggregate in per_monitor.values():
                totals = totals.merged(aggregate)
            (segment_id,) = run(
                connection,
                self.sql(
                    f"INSERT INTO lossd_segments ({SEGMENT_COLUMNS.removeprefix('id, ')}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) RETURNING id"
                ),
                (monitor_id, tags_key({}), *sums(totals), max(per_monitor)),
            )[0]
            for start, aggregate in per_monitor.items():
                connection.execute(
                    self.sql(f"INSERT INTO lossd_windows ({INSERTED_WINDOW_COLUMNS}) VALUES ({', '.join('?' * 14)})"),
                    (
                        segment_id,
                        monitor_id,
                        batches[monitor_id, start],
                        start,
                        *sums(aggregate),
                        aggregate.sketch.encode(),
                        *aggregate.sketch.quantiles(QUANTILES),
                    ),
                )
        connection.execute("DROP TABLE lossd_observations")

    # -- monitors ----------------------------------------------------------------------

    def create(
        self,
        name: str,
        loss: str,
        params: dict[str, Any],
        window_seconds: int,
        baseline: dict[str, Any],
        segments: Sequence[str] = (),
        retention_seconds: int | None = None,
        label_ttl_seconds: int = DEFAULT_LABEL_TTL_SECONDS,
    ) -> Monitor:
        created = time.time()
        try:
            with self.transaction() as connection:
                connection.execute(
                    self.sql(
                        "INSERT INTO lossd_monitors (name, loss, params, window_seconds, baseline, created, "
                        "segments, retention_seconds, label_ttl_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (
                        name,
                        loss,
                        json.dumps(params),
                        window_seconds,
                        json.dumps(baseline),
                        created,
                        json.dumps(list(segments)),
                        retention_seconds,
                        label_ttl_seconds,
                    ),
                )
        except self.integrity_errors:
            raise Conflict(name) from None
        monitor = self.get(name)
        assert monitor is not None
        return monitor

    def get(self, name: str) -> Monitor | None:
        rows = self.query(f"SELECT {MONITOR_COLUMNS} FROM lossd_monitors WHERE name = ?", (name,))
        return monitor_of(rows[0]) if rows else None

    def monitors(self) -> list[Monitor]:
        return [monitor_of(r) for r in self.query(f"SELECT {MONITOR_COLUMNS} FROM lossd_monitors ORDER BY name")]

    def delete(self, name: str) -> bool:
        """Remove a monitor with its segments and windows (one transaction)."""
        with self.transaction() as connection:
            cursor = connection.execute(self.sql("DELETE FROM lossd_monitors WHERE name = ?"), (name,))
            return bool(cursor.rowcount)  # its segments and their windows go by the foreign keys' cascade

    # -- observations ------------------------------------------------------------------

    def record(
        self,
        monitor: Monitor,
        window_start: int,
        aggregate: Aggregate,
        tags: Mapping[str, str | None] | None = None,
        max_segments: int = 100,
        now: float | None = None,
    ) -> bool:
        """Add one batch to its segment and window, committed when this returns; False when
        the monitor is gone (deleted meanwhile: monitor ids are never reused, so a monitor
        re-created under its name is another id and gets none of it). Raises TooManySegments when the batch would
        open a segment beyond ``max_segments``."""
        now = time.time() if now is None else now
        try:
            with self.transaction() as connection:
                return self.add_batch(
                    connection, monitor, window_start, aggregate, tags_key(tags or {}), max_segments, now
                )
        except self.integrity_errors:  # a foreign key: the monitor was deleted
            return False

    def add_batch(
        self,
        connection: Any,
        monitor: Monitor,
        window_start: int,
        aggregate: Aggregate,
        key: str,
        max_segments: int,
        now: float,
    ) -> bool:
        """``record``'s work inside the caller's transaction (``key``: the segment's
        ``tags_key``); False when the monitor is gone."""
        segment = self.add_to_segment(connection, monitor, key, window_start, aggregate, max_segments)
        if segment is None:
            return False
        segment_id, segment_frozen = segment
        # The row takes an empty sketch and no quantiles first: the sketch of a window with
        # earlier batches is the merge of the stored one, which only the upsert's RETURNING
        # gives under the row's lock; either way the row's sketch is encoded once.
        row = (segment_id, monitor.id, 1, window_start, *sums(aggregate), EMPTY_SKETCH, None, None, None)
        batches, stored = run(
            connection,
            self.sql(
                f"INSERT INTO lossd_windows ({INSERTED_WINDOW_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (segment_id, window_start) DO UPDATE SET "
                "batches = lossd_windows.batches + 1, count = lossd_windows.count + excluded.count, "
                "weight = lossd_windows.weight + excluded.weight, "
                "total = lossd_windows.total + excluded.total, "
                "squares = lossd_windows.squares + excluded.squares, "
                "low = LEAST(lossd_windows.low, excluded.low), "
                "high = GREATEST(lossd_windows.high, excluded.high) "
                "RETURNING batches, sketch"
            ),
            row,
        )[0]
        if batches > 1:  # the row existed and is locked: merge its sketch with this batch's
            sketch = Sketch.decode(bytes(stored)).merged(aggregate.sketch)
        else:
            sketch = aggregate.sketch
            segment_frozen = self.settle(connection, monitor, segment_id, segment_frozen, now)
        connection.execute(
            self.sql(
                "UPDATE lossd_windows SET sketch = ?, p50 = ?, p90 = ?, p99 = ?, drift = ? "
                "WHERE segment_id = ? AND window_start = ?"
            ),
            (
                sketch.encode(),
                *sketch.quantiles(QUANTILES),
                window_drift(monitor, segment_frozen, window_start, sketch),
                segment_id,
                window_start,
            ),
        )
        return True

    def add_to_segment(
        self, connection: Any, monitor: Monitor, key: str, window_start: int, aggregate: Aggregate, max_segments: int
    ) -> tuple[int, str | None] | None:
        """Add the batch to its segment's totals (creating it, within the bound): its id and
        frozen baseline, or None when the monitor is gone."""
        update = self.sql(
            "UPDATE lossd_segments SET count = count + ?, weight = weight + ?, total = total + ?, "
            "squares = squares + ?, low = LEAST(low, ?), high = GREATEST(high, ?), latest = GREATEST(latest, ?) "
            "WHERE monitor_id = ? AND tags = ? RETURNING id, frozen"
        )
        args = (*sums(aggregate), window_start, monitor.id, key)
        rows = run(connection, update, args)
        if rows:
            return int(rows[0][0]), rows[0][1]
        # A new segment: under the monitor's row lock, so that concurrent writers count the
        # segments one after the other (and the first of two opening the same one wins).
        if not run(connection, self.sql("SELECT id FROM lossd_monitors WHERE id = ? FOR UPDATE"), (monitor.id,)):
            return None
        rows = run(connection, update, args)
        if rows:
            return int(rows[0][0]), rows[0][1]
        (existing,) = run(
            connection, self.sql("SELECT COUNT(*) FROM lossd_segments WHERE monitor_id = ?"), (monitor.id,)
        )[0]
        if existing >= max_segments:
            raise TooManySegments(max_segments)
        rows = run(
            connection,
            self.sql(
                f"INSERT INTO lossd_segments ({SEGMENT_COLUMNS.removeprefix('id, ')}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) RETURNING id"
            ),
            (monitor.id, key, *sums(aggregate), window_start),
        )
        return int(rows[0][0]), None

    def settle(
        self, connection: Any, monitor: Monitor, segment_id: int, segment_frozen: str | None, now: float
    ) -> str | None:
        """On a new window row: freeze the baselines that are complete, delete expired
        windows. Returns the segment's frozen baseline (as stored), None while it is not."""
        if "reference" not in monitor.baseline:
            size = int(monitor.baseline.get("windows", DEFAULT_WINDOWS))
            if segment_frozen is None:
                segment_frozen = self.freeze(connection, "lossd_segments", segment_id, "segment_id", size)
            if monitor.frozen is None:
                self.freeze(connection, "lossd_monitors", monitor.id, "monitor_id", size)
        cutoff = monitor.cutoff(now)
        if cutoff is not None:
            connection.execute(
                self.sql(
                    "DELETE FROM lossd_windows WHERE (segment_id, window_start) IN (SELECT segment_id, window_start "
                    "FROM lossd_windows WHERE monitor_id = ? AND window_start <= ? ORDER BY window_start LIMIT ?)"
                ),
                (monitor.id, cutoff, EXPIRED_PER_WRITE),
            )
        return segment_frozen

    def freeze(self, connection: Any, table: str, id_: int, column: str, size: int) -> str | None:
        """Fix the baseline of a segment or monitor (``column`` of its windows is ``id_``) once
        it has more than ``size`` windows: the stored text, None while it has not."""
        first = self.first_windows(connection, f"{column} = ?", [id_], size + 1)
        if len(first) <= size:
            return None
        until = first[size - 1][0] + 1
        rows = run(
            connection,
            self.sql(f"SELECT sketch FROM lossd_windows WHERE {column} = ? AND window_start < ?"),
            (id_, until),
        )
        sketch = Sketch()
        for (data,) in rows:
            sketch = sketch.merged(Sketch.decode(bytes(data)))
        text = json.dumps({**frozen_of(first[:size]), "sketch": sketch_text(sketch)})
        connection.execute(self.sql(f"UPDATE {table} SET frozen = ? WHERE id = ? AND frozen IS NULL"), (text, id_))
        return text

    def first_windows(self, connection: Any, where: str, args: list[Any], limit: int) -> list[tuple[int, Aggregate]]:
        rows = run(
            connection,
            self.sql(
                f"SELECT window_start, {SUMS} FROM lossd_windows WHERE {where} "
                "GROUP BY window_start ORDER BY window_start LIMIT ?"
            ),
            [*args, limit],
        )
        return [(int(r[0]), sums_of(r[1:])) for r in rows]

    # -- reads -------------------------------------------------------------------------

    def segments(self, monitor: Monitor | None = None) -> list[Segment]:
        """A monitor's segments (every monitor's without one), by id."""
        if monitor is None:
            rows = self.query(f"SELECT {SEGMENT_COLUMNS} FROM lossd_segments ORDER BY id")
        else:
            rows = self.query(
                f"SELECT {SEGMENT_COLUMNS} FROM lossd_segments WHERE monitor_id = ? ORDER BY id", (monitor.id,)
            )
        return [segment_of(r) for r in rows]

    def selection(
        self, monitor: Monitor, segment_ids: Sequence[int] | None, since: float | None, until: float | None
    ) -> tuple[str, list[Any]]:
        """The WHERE clause of a monitor's windows: in segments (None: all), in
        ``[since, until)``, within retention."""
        conditions, args = ["monitor_id = ?"], list[Any]([monitor.id])
        if segment_ids is not None:
            conditions.append(f"segment_id IN ({', '.join('?' for _ in segment_ids)})" if segment_ids else "1 = 0")
            args.extend(segment_ids)
        cutoff = monitor.cutoff(time.time())
        if cutoff is not None:
            conditions.append("window_start > ?")
            args.append(cutoff)
        if since is not None:
            conditions.append("window_start >= ?")
            args.append(since)
        if until is not None:
            conditions.append("window_start < ?")
            args.append(until)
        return " AND ".join(conditions), args

    def windows(
        self,
        monitor: Monitor,
        since: float | None = None,
        until: float | None = None,
        sketches: bool = True,
        segment_ids: Sequence[int] | None = None,
        first: int | None = None,
        mergeable: bool = True,
    ) -> list[tuple[int, Aggregate]]:
        """Each window with data in ``[since, until)`` and the segments (None: all), by start,
        its segments merged (without ``sketches``: summed by the database, with empty
        sketches); ``first``: only the first that many. Without ``mergeable``, a window of
        one row comes with its stored quantiles instead of its sketch (no decoding)."""
        where, args = self.selection(monitor, segment_ids, since, until)
        if not sketches:
            limit = "" if first is None else f" LIMIT {int(first)}"
            rows = self.query(
                f"SELECT window_start, {SUMS} FROM lossd_windows WHERE {where} "
                f"GROUP BY window_start ORDER BY window_start{limit}",
                args,
            )
            return [(int(r[0]), sums_of(r[1:])) for r in rows]
        assert first is None, "first windows come as sums"
        columns = WINDOW_COLUMNS
        if not mergeable and not monitor.segments:  # one row per window: its sketch is not needed
            columns = columns.replace("sketch", "NULL")
        rows = self.query(
            f"SELECT {columns}, p50, p90, p99, drift FROM lossd_windows WHERE {where} ORDER BY window_start", args
        )
        result: list[tuple[int, Aggregate]] = []
        for start, group in itertools.groupby(rows, key=lambda r: int(r[0])):
            parts = list(group)
            if len(parts) == 1 and not mergeable:
                result.append((start, stored_of(parts[0][1:])))
            else:
                result.append((start, merge(aggregate_of(part[1:8]) for part in parts)))
        return result

    def plain_windows(self, monitors: Sequence[Monitor]) -> dict[int, list[tuple[int, Aggregate]]]:
        """The windows of every monitor without segments (one row each: sums, stored
        quantiles and drift, no sketch), within retention, by monitor id: one query for a
        page of them all."""
        now = time.time()
        plain = {m.id: m for m in monitors if not m.segments}
        rows = self.query(
            "SELECT monitor_id, window_start, count, weight, total, squares, low, high, NULL, p50, p90, p99, drift "
            "FROM lossd_windows WHERE monitor_id IN (SELECT id FROM lossd_monitors WHERE segments = '[]') "
            "ORDER BY monitor_id, window_start"
        )
        result: dict[int, list[tuple[int, Aggregate]]] = {id_: [] for id_ in plain}
        for row in rows:
            monitor = plain.get(int(row[0]))
            if monitor is not None and not monitor.expired(int(row[1]), now):
                result[monitor.id].append((int(row[1]), stored_of(row[2:])))
        return result

    def baseline_sketch(self, monitor: Monitor, segment_ids: Sequence[int] | None, until: int) -> Sketch:
        """The merged sketch of a selection's windows starting before ``until`` (a baseline
        not fixed in the database: of several segments, or of a database from before)."""
        where, args = self.selection(monitor, segment_ids, None, until)
        sketch = Sketch()
        for (data,) in self.query(f"SELECT sketch FROM lossd_windows WHERE {where}", args):
            sketch = sketch.merged(Sketch.decode(bytes(data)))
        return sketch

    def segment_windows(self, monitor: Monitor) -> dict[int, list[tuple[int, Aggregate]]]:
        """Every segment's windows as sums and stored drift (no sketches), by segment id, each by start."""
        where, args = self.selection(monitor, None, None, None)
        rows = self.query(
            f"SELECT segment_id, window_start, count, weight, total, squares, low, high, drift FROM lossd_windows "
            f"WHERE {where} ORDER BY segment_id, window_start",
            args,
        )
        result: dict[int, list[tuple[int, Aggregate]]] = {}
        for segment_id, start, *values, drift in rows:
            window = sums_of(values)
            window.drift = None if drift is None else float(drift)
            result.setdefault(int(segment_id), []).append((int(start), window))
        return result

    def latest_windows(self) -> dict[int, tuple[int, Aggregate]]:
        """Each segment's latest window (its stored quantiles, not its sketch), by segment id."""
        rows = self.query(
            "SELECT w.segment_id, w.window_start, w.count, w.weight, w.total, w.squares, w.low, w.high, NULL, "
            "w.p50, w.p90, w.p99, w.drift FROM lossd_segments s "
            "JOIN lossd_windows w ON w.segment_id = s.id AND w.window_start = s.latest"
        )
        return {int(r[0]): (int(r[1]), stored_of(r[2:])) for r in rows}


def run(connection: Any, statement: str, args: Sequence[Any] = ()) -> list[Row]:
    cursor = connection.execute(statement, tuple(args))
    return list(cursor.fetchall()) if cursor.description else []


def sums(aggregate: Aggregate) -> tuple[int, float, float, float, float, float]:
    return aggregate.count, aggregate.weight, aggregate.total, aggregate.squares, aggregate.min, aggregate.max


def frozen_of(windows: list[tuple[int, Aggregate]]) -> dict[str, Any]:
    """A baseline of first windows as stored: their sums and the start after the last."""
    merged = Aggregate()
    for _, window in windows:
        merged = merged.merged(window)
    return {
        "count": merged.count,
        "weight": merged.weight,
        "total": merged.total,
        "squares": merged.squares,
        "until": windows[-1][0] + 1,
    }


def monitor_of(row: Row) -> Monitor:
    id_, name, loss, params, window_seconds, baseline, created, segments, retention, frozen, label_ttl = row
    return Monitor(
        int(id_),
        name,
        loss,
        json.loads(params),
        int(window_seconds),
        json.loads(baseline),
        float(created),
        tuple(json.loads(segments or "[]")),
        None if retention is None else int(retention),
        None if frozen is None else json.loads(frozen),
        int(label_ttl),
    )


def segment_of(row: Row) -> Segment:
    id_, monitor_id, tags, *values, latest, frozen = row
    return Segment(
        int(id_),
        int(monitor_id),
        json.loads(tags),
        sums_of(values),
        int(latest),
        None if frozen is None else json.loads(frozen),
    )


def sums_of(values: Sequence[Any]) -> Aggregate:
    count, weight, total, squares, low, high = values
    return Aggregate(int(count), float(weight), float(total), float(squares), float(low), float(high))


def stored_of(values: Sequence[Any]) -> Aggregate:
    """A window's sums, stored quantiles and drift (its sketch column is not decoded)."""
    count, weight, total, squares, low, high, _, *quantiles, drift = values
    stored = tuple(None if q is None else float(q) for q in quantiles)
    return Aggregate(
        int(count),
        float(weight),
        float(total),
        float(squares),
        float(low),
        float(high),
        stored=stored,
        drift=None if drift is None else float(drift),
    )


def aggregate_of(values: Sequence[Any]) -> Aggregate:
    count, weight, total, squares, low, high, sketch = values
    return Aggregate(int(count), weight, total, squares, low, high, Sketch.decode(bytes(sketch)))


BASELINES_KEPT = 4096
_baselines: dict[tuple[int, float, str | None], Baseline] = {}
"""Fixed baselines by monitor id, creation time and frozen text (a fixed baseline never changes):
a write decodes its segment's baseline sketch once, not per batch. Ids are never reused within
a database, but a process may open two (the tests do): the creation time tells their monitors
apart."""


def fixed_baseline(monitor: Monitor, frozen: str | None) -> Baseline:
    key = (monitor.id, monitor.created, frozen)
    found = _baselines.get(key)
    if found is None:
        if len(_baselines) >= BASELINES_KEPT:
            _baselines.clear()
        found = _baselines[key] = baseline(monitor.baseline, [], None if frozen is None else json.loads(frozen))
    return found


def window_drift(monitor: Monitor, frozen: str | None, start: int, sketch: Sketch) -> float | None:
    """The KS distance of a window row's sketch from its segment's baseline (``frozen`` as
    stored, or the monitor's reference); None before that is fixed, or for a baseline window."""
    base = fixed_baseline(monitor, frozen)
    if base.sketch is None or not base.judges(start):
        return None
    found = ks(sketch, base.sketch, bound=False)
    return None if found is None else found.distance


class SQLiteStore(Store):
    """A SQLite file in WAL mode. ``synchronous=NORMAL``: a commit is in the WAL before the
    200, which survives the process being killed (a power cut may lose the last commits;
    FULL would fsync every batch)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout = 30000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def initialise(self) -> None:
        # Rebuilding lossd_monitors (never_reuse_ids) must not cascade to its segments; the
        # pragma is a no-op inside a transaction, so it is set around it.
        connection = self.connection()
        connection.execute("PRAGMA foreign_keys = OFF")
        try:
            super().initialise()
        finally:
            connection.execute("PRAGMA foreign_keys = ON")

    def schema(self) -> str:
        return SCHEMA.format(
            serial="INTEGER", blob="BLOB", never_reused=" AUTOINCREMENT", label_ttl=DEFAULT_LABEL_TTL_SECONDS
        )

    def never_reuse_ids(self, connection: Any) -> None:
        """Without AUTOINCREMENT, SQLite hands the highest id out again once it is deleted: a
        table from before it is rebuilt with it (SQLite's own procedure: a new table, the rows
        copied with their ids, the old one dropped, the new one renamed)."""
        (declaration,) = run(connection, "SELECT sql FROM sqlite_master WHERE name = 'lossd_monitors'")[0]
        if "AUTOINCREMENT" in declaration.upper():
            return
        create = next(s for s in self.schema().split(";") if "lossd_monitors (" in s)
        connection.execute(create.replace("IF NOT EXISTS lossd_monitors", "lossd_monitors_rebuilt"))
        connection.execute(
            f"INSERT INTO lossd_monitors_rebuilt ({MONITOR_COLUMNS}) SELECT {MONITOR_COLUMNS} FROM lossd_monitors"
        )
        connection.execute("DROP TABLE lossd_monitors")
        connection.execute("ALTER TABLE lossd_monitors_rebuilt RENAME TO lossd_monitors")
        if run(connection, "PRAGMA foreign_key_check"):
            raise RuntimeError("lossd_monitors rebuilt with AUTOINCREMENT: rows refer to no monitor; rolled back")

    def probe(self) -> bool:
        """The file and its directory can be read and written (where the file is missing, the
        directory allows creating it)."""
        directory = self.path.parent
        if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
            return False
        return not self.path.exists() or os.access(self.path, os.R_OK | os.W_OK)

    def table_exists(self, connection: Any, name: str) -> bool:
        return bool(run(connection, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


class PostgresStore(Store):
    """PostgreSQL through psycopg 3, autocommit outside explicit transactions."""

    placeholder = "%s"
    least, greatest = "LEAST", "GREATEST"
    for_update = " FOR UPDATE"
    waits_on_network = True

    def __init__(self, url: str) -> None:
        import psycopg

        super().__init__()
        self.url = url
        self.integrity_errors = (psycopg.errors.IntegrityError,)
        self._probe_connection: Any = None

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def connection(self) -> Any:
        """This thread's connection, made anew where the server has gone away meanwhile (e.g.
        restarted). An idle connection has nothing to read unless the server sent something
        unasked, i.e. its FATAL goodbye and end of stream: a poll of the socket (no wait)
        tells, so such a connection is replaced before a statement fails on it."""
        connection = super().connection()
        if select.select([connection.pgconn.socket], [], [], 0)[0]:
            connection.close()
            connection = super().connection()
        return connection

    def probe(self) -> bool:
        """``SELECT 1`` on a connection of its own (kept between probes, made anew after a
        failure), bounded by PROBE_TIMEOUT_SECONDS to connect and on the server."""
        import psycopg

        connection = self._probe_connection
        try:
            if connection is None or connection.closed:
                connection = self._probe_connection = psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=PROBE_TIMEOUT_SECONDS,
                    options=f"-c statement_timeout={PROBE_TIMEOUT_SECONDS * 1000}",
                )
            connection.execute("SELECT 1").fetchone()
        except psycopg.Error:
            if connection is not None:
                connection.close()
            self._probe_connection = None
            return False
        return True

    def close(self) -> None:
        connection = self._probe_connection
        if connection is not None:
            connection.close()
            self._probe_connection = None
        super().close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        connection = self.connection()
        with connection.transaction():
            yield connection

    def schema(self) -> str:
        # An identity draws from a sequence, which never hands a value out twice.
        return SCHEMA.format(
            serial="BIGINT GENERATED BY DEFAULT AS IDENTITY",
            blob="BYTEA",
            never_reused="",
            label_ttl=DEFAULT_LABEL_TTL_SECONDS,
        )

    def lock_schema(self, connection: Any) -> None:
        # Workers start together; CREATE ... IF NOT EXISTS is not safe against itself.
        connection.execute("SELECT pg_advisory_xact_lock(7335581)")

    def table_exists(self, connection: Any, name: str) -> bool:
        return bool(run(connection, "SELECT to_regclass(%s)", (name,))[0][0])


def postgresql(database_url: str | None) -> bool:
    return database_url is not None and database_url.startswith(("postgresql://", "postgres://"))


def database_errors(database_url: str | None) -> tuple[type[Exception], ...]:
    """The errors of the store that ``database_url`` names; psycopg is imported for PostgreSQL
    alone (it costs a start ~0.1 s and ~8 MiB)."""
    if postgresql(database_url):
        import psycopg

        return (psycopg.Error,)
    return (sqlite3.Error,)


def open_store(database_url: str | None, data_dir: Path) -> Store:
    """The store a URL names (``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``postgresql://...``); none: ``monitors.sqlite3`` under ``data_dir``."""
    if database_url is None:
        store: Store = SQLiteStore(data_dir / "monitors.sqlite3")
    elif database_url.startswith("sqlite:///"):
        store = SQLiteStore(Path(database_url.removeprefix("sqlite:///")))
    elif postgresql(database_url):
        store = PostgresStore(database_url)
    else:
        raise ValueError(f"LOSSD_DATABASE_URL must start with sqlite:/// or postgresql://, not {database_url!r}")
    store.initialise()
    return store
