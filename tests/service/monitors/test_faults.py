"""Database failures as the errors a client acts on, PostgreSQL's included, although the
service imports psycopg only with the PostgreSQL store (start-up stays without it)."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys

import psycopg
import pytest

from service.app import create_app
from service.errors import Kind
from service.monitors.faults import storage_error
from service.monitors.store import database_errors
from service.settings import Settings


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (psycopg.errors.DiskFull("could not extend file"), Kind.STORAGE_FULL),
        (psycopg.OperationalError("connection refused"), Kind.UNAVAILABLE),
        (psycopg.InterfaceError("the connection is closed"), Kind.UNAVAILABLE),
        (psycopg.errors.UniqueViolation("duplicate key"), None),
        (sqlite3.OperationalError("database or disk is full"), Kind.STORAGE_FULL),
        (sqlite3.OperationalError("attempt to write a readonly database"), Kind.UNAVAILABLE),
        (OSError(errno.ENOSPC, "No space left on device"), Kind.STORAGE_FULL),
        (ValueError("a bug"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_a_database_failure_becomes_the_clients_error(failure: Exception, kind: Kind | None) -> None:
    error = storage_error(failure)
    assert (error.kind if error is not None else None) == kind


def test_the_app_starts_without_psycopg() -> None:
    code = "import sys, service.app; sys.exit('psycopg' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "service.app imports psycopg"


def test_postgresql_errors_are_answered_where_postgresql_is_configured() -> None:
    """By a handler of their own: the catch-all Exception handler would answer, then re-raise
    for the server to log a traceback for a database outage."""
    settings = Settings(database_url="postgresql://lossd@127.0.0.1:1/lossd", provider="cpu")
    assert psycopg.Error in create_app(settings).exception_handlers
    assert database_errors("postgresql://host/db") == (psycopg.Error,)
    assert database_errors(None) == database_errors("sqlite:///monitors.db") == (sqlite3.Error,)
