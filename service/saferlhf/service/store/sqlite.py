"""The embedded store: one SQLite file in WAL mode, one connection guarded by one lock.

SQLite allows one writer at a time anyway; a process-wide re-entrant lock around the single
connection makes the store safe across the gRPC threads, the reconcile loop and watchers, and
`BEGIN IMMEDIATE` takes the database write lock up front so a transaction never fails half-way
on a lock upgrade (another process, such as a CLI reading the file, only ever waits).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from saferlhf.service.store.base import Store


def _params(values: Sequence[Any]) -> tuple[Any, ...]:
    """SQLite stores a NaN REAL as NULL (a NOT NULL column then refuses the row: a runner's NaN
    loss made its whole event batch fail, and the gap fill wedged the job). The text 'NaN' is kept
    as written and reads back through float() as NaN, like PostgreSQL's NaN."""
    return tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in values)


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, _params(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, _params(params)).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, [_params(r) for r in rows])


class SqliteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    @contextmanager
    def _tx(self) -> Iterator[_SqliteTx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[_SqliteTx]:
        with self._lock:
            yield _SqliteTx(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
