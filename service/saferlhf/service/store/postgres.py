"""The server store: PostgreSQL through psycopg 3, same SQL as SQLite (`?` becomes `%s`).

One connection, serialised by a lock (the control plane's write rate is modest; the per-job row
lock taken by the cursor bump keeps concurrent writers of one job ordered all the same).
Migrations take a transaction-scoped advisory lock so two service replicas opening one database
at once do not both apply them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from saferlhf.service.errors import Unavailable
from saferlhf.service.store.base import Store, Tx

log = logging.getLogger(__name__)
_MIGRATION_LOCK_KEY = 0x5AFE71F  # arbitrary, constant: the advisory lock of our migrations


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(_pg(sql), tuple(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_pg(sql), tuple(params)).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(_pg(sql), rows)


class PostgresStore(Store):
    """Survives a database restart: a call that finds the connection lost raises Unavailable
    (UNAVAILABLE over gRPC; the reconcile loop waits for its next tick, runners re-send their
    events) and the next call connects again. A transaction cut by the restart was rolled back by
    the server, so nothing is half-written; the caller retries it whole."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._lost_at: float | None = None  # monotonic time the connection was lost
        self._connection()
        self._migrate()

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, reconnecting when the last one was lost (lock held)."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        try:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise Unavailable(f"cannot connect to PostgreSQL at {_redact(self.url)}: "
                              f"{_first_line(exc)}") from exc
        if self._lost_at is not None:
            log.warning("reconnected to PostgreSQL at %s after %.1f s", _redact(self.url),
                        time.monotonic() - self._lost_at)
            self._lost_at = None
        return self._conn

    def _lost(self, exc: psycopg.Error) -> Unavailable:
        if self._lost_at is None and self._conn is not None and (
                self._conn.closed or self._conn.broken):
            self._lost_at = time.monotonic()
            log.warning("lost the connection to PostgreSQL at %s: %s; reconnecting on the next "
                        "call", _redact(self.url), _first_line(exc))
        return Unavailable(f"the PostgreSQL connection was lost ({_first_line(exc)}); the call "
                           "was not applied, retry it")

    def _lock_migrations(self, tx: Tx) -> None:
        tx.fetchall("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))

    @contextmanager
    def _tx(self) -> Iterator[_PgTx]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    yield _PgTx(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise self._lost(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[_PgTx]:
        with self._lock:
            conn = self._connection()
            try:
                yield _PgTx(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise self._lost(exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db"""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}" if sep else url
