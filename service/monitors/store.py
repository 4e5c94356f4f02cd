"""Monitors in a database: SQLite (a file, WAL mode) or PostgreSQL (psycopg 3).

Observations are append-only: each acknowledged batch is one row, inserted in its own
transaction and committed before the client gets its 200, so a killed process loses nothing
it acknowledged, and several workers or replicas writing the same monitor never overwrite
each other's counts. Windows are the rows merged at read time. Calls block: the routes that
use them are sync and run in the threadpool. Each thread keeps its own connection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.monitors.aggregate import Aggregate
from service.monitors.sketch import Sketch

Row = tuple[Any, ...]


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


class Conflict(Exception):
    """A monitor of that name exists."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS lossd_monitors (
    id {serial} PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    loss TEXT NOT NULL,
    params TEXT NOT NULL,
    window_seconds BIGINT NOT NULL,
    baseline TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS lossd_observations (
    id {serial} PRIMARY KEY,
    monitor_id BIGINT NOT NULL REFERENCES lossd_monitors(id) ON DELETE CASCADE,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    squares DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    sketch {blob} NOT NULL,
    recorded DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS lossd_observations_window ON lossd_observations (monitor_id, window_start);
"""
MONITOR_COLUMNS = "id, name, loss, params, window_seconds, baseline, created"
AGGREGATE_COLUMNS = "window_start, count, weight, total, squares, min, max, sketch"


class Store(ABC):
    """The monitors and their observation rows; subclasses connect to one kind of database."""

    placeholder = "?"
    waits_on_network = False
    """Whether a call may wait on a network round trip (then callers keep it off the event loop)."""
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    # -- connections, one per thread --------------------------------------------------

    @abstractmethod
    def connect(self) -> Any:
        """A new connection, in autocommit mode outside explicit transactions."""

    def connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
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
        return statement.replace("?", self.placeholder)

    def query(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        cursor = self.connection().execute(self.sql(statement), tuple(args))
        return list(cursor.fetchall()) if cursor.description else []

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction on this thread's connection: committed on exit, rolled back on an error."""

    @abstractmethod
    def initialise(self) -> None:
        """Create the tables, where they do not exist."""

    # -- monitors ----------------------------------------------------------------------

    def create(
        self, name: str, loss: str, params: dict[str, Any], window_seconds: int, baseline: dict[str, Any]
    ) -> Monitor:
        created = time.time()
        try:
            with self.transaction() as connection:
                connection.execute(
                    self.sql(
                        "INSERT INTO lossd_monitors (name, loss, params, window_seconds, baseline, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    (name, loss, json.dumps(params), window_seconds, json.dumps(baseline), created),
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
        """Remove a monitor and its observations (one transaction)."""
        with self.transaction() as connection:
            cursor = connection.execute(self.sql("DELETE FROM lossd_monitors WHERE name = ?"), (name,))
            return bool(cursor.rowcount)

    # -- observations ------------------------------------------------------------------

    def record(self, monitor: Monitor, window_start: int, aggregate: Aggregate) -> bool:
        """Commit one batch's row; False when the monitor is gone (deleted meanwhile)."""
        row = (
            monitor.id,
            window_start,
            aggregate.count,
            aggregate.weight,
            aggregate.total,
            aggregate.squares,
            aggregate.min,
            aggregate.max,
            aggregate.sketch.encode(),
            time.time(),
        )
        try:  # one statement in autocommit mode: its own transaction, committed when it returns
            self.connection().execute(
                self.sql(
                    f"INSERT INTO lossd_observations (monitor_id, {AGGREGATE_COLUMNS}, recorded) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                row,
            )
        except self.integrity_errors:  # the foreign key: the monitor was deleted
            return False
        return True

    def windows(
        self, monitor: Monitor, since: int | None = None, until: int | None = None, sketches: bool = True
    ) -> list[tuple[int, Aggregate]]:
        """Each window with observations in ``[since, until)``, by start, its rows merged
        (without ``sketches``: summed by the database, with empty sketches)."""
        conditions, args = ["monitor_id = ?"], [monitor.id]
        if since is not None:
            conditions.append("window_start >= ?")
            args.append(since)
        if until is not None:
            conditions.append("window_start < ?")
            args.append(until)
        where = " AND ".join(conditions)
        if not sketches:
            rows = self.query(
                "SELECT window_start, SUM(count), SUM(weight), SUM(total), SUM(squares), MIN(min), MAX(max) "
                f"FROM lossd_observations WHERE {where} GROUP BY window_start ORDER BY window_start",
                args,
            )
            return [(int(r[0]), sums_of(r[1:])) for r in rows]
        rows = self.query(
            f"SELECT {AGGREGATE_COLUMNS} FROM lossd_observations WHERE {where} ORDER BY window_start, id", args
        )
        windows: dict[int, Aggregate] = {}
        for start, *values in rows:
            aggregate = aggregate_of(values)
            windows[start] = windows[start].merged(aggregate) if start in windows else aggregate
        return sorted(windows.items())

    def totals(self) -> dict[int, Aggregate]:
        """Every monitor's totals, without sketches (by monitor id)."""
        rows = self.query(
            "SELECT monitor_id, SUM(count), SUM(weight), SUM(total), SUM(squares), MIN(min), MAX(max) "
            "FROM lossd_observations GROUP BY monitor_id"
        )
        return {int(r[0]): sums_of(r[1:]) for r in rows}

    def latest_window_starts(self) -> dict[int, int]:
        """The start of each monitor's latest window with observations."""
        rows = self.query("SELECT monitor_id, MAX(window_start) FROM lossd_observations GROUP BY monitor_id")
        return {int(r[0]): int(r[1]) for r in rows}


def monitor_of(row: Row) -> Monitor:
    id_, name, loss, params, window_seconds, baseline, created = row
    return Monitor(int(id_), name, loss, json.loads(params), int(window_seconds), json.loads(baseline), float(created))


def sums_of(values: Sequence[Any]) -> Aggregate:
    count, weight, total, squares, low, high = values
    return Aggregate(int(count), float(weight), float(total), float(squares), float(low), float(high))


def aggregate_of(values: Sequence[Any]) -> Aggregate:
    count, weight, total, squares, low, high, sketch = values
    return Aggregate(int(count), weight, total, squares, low, high, Sketch.decode(bytes(sketch)))


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
        schema = SCHEMA.format(serial="INTEGER", blob="BLOB")
        with self.transaction() as connection:
            for statement in filter(str.strip, schema.split(";")):
                connection.execute(statement)


class PostgresStore(Store):
    """PostgreSQL through psycopg 3, autocommit outside explicit transactions."""

    placeholder = "%s"
    waits_on_network = True

    def __init__(self, url: str) -> None:
        import psycopg

        super().__init__()
        self.url = url
        self.integrity_errors = (psycopg.errors.IntegrityError,)

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        connection = self.connection()
        with connection.transaction():
            yield connection

    def initialise(self) -> None:
        schema = SCHEMA.format(serial="BIGINT GENERATED BY DEFAULT AS IDENTITY", blob="BYTEA")
        with self.transaction() as connection:
            # Workers start together; CREATE ... IF NOT EXISTS is not safe against itself.
            connection.execute("SELECT pg_advisory_xact_lock(7335581)")
            for statement in filter(str.strip, schema.split(";")):
                connection.execute(statement)


def open_store(database_url: str | None, data_dir: Path) -> Store:
    """The store a URL names (``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``postgresql://...``); none: ``monitors.sqlite3`` under ``data_dir``."""
    if database_url is None:
        store: Store = SQLiteStore(data_dir / "monitors.sqlite3")
    elif database_url.startswith("sqlite:///"):
        store = SQLiteStore(Path(database_url.removeprefix("sqlite:///")))
    elif database_url.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(database_url)
    else:
        raise ValueError(f"LOSSD_DATABASE_URL must start with sqlite:/// or postgresql://, not {database_url!r}")
    store.initialise()
    return store
