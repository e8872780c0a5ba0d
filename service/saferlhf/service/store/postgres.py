"""The server store: PostgreSQL through psycopg 3, same SQL as SQLite (`?` becomes `%s`).

One connection, serialised by a lock (the control plane's write rate is modest; the per-job row
lock taken by the cursor bump keeps concurrent writers of one job ordered all the same).
Migrations take a transaction-scoped advisory lock so two service replicas opening one database
at once do not both apply them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from saferlhf.service.errors import Unavailable
from saferlhf.service.store.base import Store, Tx

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
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise Unavailable(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
        self._migrate()

    def _lock_migrations(self, tx: Tx) -> None:
        tx.fetchall("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))

    @contextmanager
    def _tx(self) -> Iterator[_PgTx]:
        with self._lock, self._conn.transaction():
            yield _PgTx(self._conn)

    @contextmanager
    def _read(self) -> Iterator[_PgTx]:
        with self._lock:
            yield _PgTx(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _redact(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db"""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}" if sep else url
