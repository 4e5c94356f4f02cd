"""Failures of the monitor database as the errors a client can act on: a full disk is a 507
(nothing of the request was recorded), an unreachable or unwritable database a 503 with
Retry-After. Anything else stays a bug (500)."""

from __future__ import annotations

import errno
import sqlite3

from service.errors import Kind, ServiceError

RETRY_AFTER = "5"
FULL = ("database or disk is full", "disk is full")
UNWRITABLE = ("readonly database", "read-only", "unable to open", "disk i/o error", "database is locked")


def storage_error(exc: BaseException) -> ServiceError | None:
    """The client's error for a database failure, or None where ``exc`` is none."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        text = str(exc).lower()
        if any(marker in text for marker in FULL):
            return full()
        if any(marker in text for marker in UNWRITABLE):
            return unavailable(f"the monitor database cannot be written ({exc})")
        return None
    if type(exc).__module__.startswith("psycopg"):  # imported by the PostgreSQL store alone: not at start-up
        import psycopg

        if isinstance(exc, psycopg.errors.DiskFull):
            return full()
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return unavailable("the monitor database cannot be reached")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return full()
    return None


def full() -> ServiceError:
    detail = "the monitor database's disk is full: nothing of this request was recorded"
    return ServiceError(Kind.STORAGE_FULL, "Insufficient Storage", detail)


def unavailable(detail: str) -> ServiceError:
    return ServiceError(
        Kind.UNAVAILABLE, "Service Unavailable", f"{detail}; try again later", headers={"Retry-After": RETRY_AFTER}
    )
