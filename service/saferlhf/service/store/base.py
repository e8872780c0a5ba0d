"""The durable store (DESIGN §2: the source of truth): one interface, written once in portable SQL.

`Store` holds every query; the two backends (`sqlite.SqliteStore`, `postgres.PostgresStore`) only
say how to open a connection, run a transaction and spell a placeholder. Every state change is
written together with its `Transition` row in one transaction, and bumps the job's cursor, so
WatchJob can replay a job's history in order and a restarted service sees exactly what happened.

Invariants kept here:
- a job is unique by (project, request_id) when request_id is set (idempotent create);
- an event is unique by (attempt_id, seq): re-sent and gap-filled events are dropped, not doubled;
- `Stage.attempts` counts attempts against the retry budget (never a child object's counter).
"""

from __future__ import annotations

import abc
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from saferlhf.service.errors import Conflict, NotFound
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
    StoredEvent,
    Transition,
    last_metric_values,
)
from saferlhf.service.store.rows import (
    ATTEMPTS,
    GATES,
    JOBS,
    STAGES,
    JobFilter,
    Table,
    decode_token,
    encode_token,
    parse_filter,
)

# json.dumps(x, sort_keys=True) builds a new JSONEncoder per call; at ~10k events/s that was a
# quarter of ingestion. One shared encoder gives the same text (default separators, sorted keys).
_payload_json = json.JSONEncoder(sort_keys=True).encode

__all__ = ["ACTIVE_ATTEMPT_STATES", "JobFilter", "Store", "Tx", "parse_filter"]

ACTIVE_ATTEMPT_STATES = (AttemptState.QUEUED, AttemptState.RUNNING)


class Tx(Protocol):
    """What a backend gives the shared SQL: `?` placeholders, tuples back."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


# -------------------------------------------------------------------------------------------
# The store
# -------------------------------------------------------------------------------------------


class Store(abc.ABC):
    """Every read and write of control-plane state. Safe to call from many threads."""

    # ---- backend hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _tx(self) -> AbstractContextManager[Tx]:
        """A write transaction (serialised with other writers); commits on success."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A consistent read."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def _migrate(self) -> None:
        from saferlhf.service.store.schema import MIGRATIONS

        with self._tx() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                "description TEXT NOT NULL)"
            )
            self._lock_migrations(tx)
            done = {r[0] for r in tx.fetchall("SELECT version FROM schema_migrations")}
            for version, description, statements in MIGRATIONS:
                if version in done:
                    continue
                for sql in statements:
                    tx.execute(sql)
                tx.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                    (version, description),
                )

    def _lock_migrations(self, tx: Tx) -> None:
        """Backends with concurrent openers serialise migrations here."""
        del tx  # SQLite: the write lock of BEGIN IMMEDIATE already serialises openers

    def schema_version(self) -> int:
        with self._read() as tx:
            rows = tx.fetchall("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    # ---- helpers ----------------------------------------------------------------------------
    # ---- change notification ----------------------------------------------------------------
    def add_listener(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(job ids)` after each committed write that grew those jobs' history."""
        self.__dict__.setdefault("_listeners", []).append(listener)

    def _tls(self) -> threading.local:
        return self.__dict__.setdefault("_local", threading.local())

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        local = self._tls()
        local.touched = set()
        try:
            with self._tx() as tx:
                yield tx
            touched = local.touched
        finally:
            local.touched = None
        if touched:
            for listener in self.__dict__.get("_listeners", []):
                listener(touched)

    def _bump_cursor(self, tx: Tx, job_id: str, n: int = 1) -> int:
        """Reserve n cursors for a job; returns the last one. Row-locks the job (PostgreSQL)."""
        touched = getattr(self._tls(), "touched", None)
        if n and touched is not None:
            touched.add(job_id)
        rows = tx.fetchall(
            "UPDATE jobs SET cursor_no = cursor_no + ? WHERE id = ? RETURNING cursor_no",
            (n, job_id),
        )
        if not rows:
            raise NotFound(f"job {job_id} not found")
        return int(rows[0][0])

    def _record(self, tx: Tx, job_id: str, t: Transition) -> int:
        cursor = self._bump_cursor(tx, job_id)
        tx.execute(
            "INSERT INTO transitions (job_id, cursor_no, at, subject, from_state, to_state, "
            "reason, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, cursor, t.at, t.subject, t.from_state, t.to_state, t.reason, t.message),
        )
        return cursor

    @staticmethod
    def _one(tx: Tx, table: Table, where: str, params: Sequence[Any], what: str) -> Any:
        rows = tx.fetchall(f"SELECT {table.select} FROM {table.name} WHERE {where}", params)
        if not rows:
            raise NotFound(f"{what} not found")
        return table.decode(rows[0])

    @staticmethod
    def _update(tx: Tx, table: Table, where: str, params: Sequence[Any],
                fields: dict[str, Any]) -> None:
        if not fields:
            return
        unknown = set(fields) - set(table.fields)
        if unknown:
            raise ValueError(f"unknown {table.name} fields: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [table.encode_value(k, v) for k, v in fields.items()]
        tx.execute(f"UPDATE {table.name} SET {sets} WHERE {where}", [*values, *params])

    # ---- jobs -------------------------------------------------------------------------------
    def create_job(
        self, job: Job, stages: Sequence[Stage], gates: Sequence[Gate]
    ) -> tuple[Job, bool]:
        """Insert a job with its plan; (existing job, False) when (project, request_id) exists."""
        with self._write() as tx:
            if job.request_id:
                rows = tx.fetchall(
                    f"SELECT {JOBS.select} FROM jobs WHERE project = ? AND request_id = ?",
                    (job.project, job.request_id),
                )
                if rows:
                    return JOBS.decode(rows[0]), False
            cols = JOBS.fields
            tx.execute(
                f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                JOBS.encode(job),
            )
            scols = ("ord", *STAGES.fields)
            tx.executemany(
                f"INSERT INTO stages ({', '.join(scols)}) VALUES ({', '.join('?' * len(scols))})",
                [(i, *STAGES.encode(s)) for i, s in enumerate(stages)],
            )
            gcols = ("ord", *GATES.fields)
            tx.executemany(
                f"INSERT INTO gates ({', '.join(gcols)}) VALUES ({', '.join('?' * len(gcols))})",
                [(i, *GATES.encode(g)) for i, g in enumerate(gates)],
            )
            self._record(tx, job.id, Transition(job.created_at, "job", "", job.state.value,
                                                "Created", ""))
        return job, True

    def get_job(self, job_id: str) -> Job:
        with self._read() as tx:
            return self._one(tx, JOBS, "id = ?", (job_id,), f"job {job_id}")

    def find_job_by_request(self, project: str, request_id: str) -> Job | None:
        with self._read() as tx:
            rows = tx.fetchall(
                f"SELECT {JOBS.select} FROM jobs WHERE project = ? AND request_id = ?",
                (project, request_id),
            )
        return JOBS.decode(rows[0]) if rows else None

    def active_jobs(self) -> list[Job]:
        """Jobs the scheduler still has to reconcile (not terminal), oldest first."""
        terminal = [s.value for s in JobState if s.terminal]
        with self._read() as tx:
            rows = tx.fetchall(
                f"SELECT {JOBS.select} FROM jobs WHERE state NOT IN (?, ?, ?) "
                "ORDER BY created_at, id", terminal,
            )
        return [JOBS.decode(r) for r in rows]

    def set_job_state(
        self, job_id: str, to: JobState, *, at: float, reason: str = "", message: str = "",
        expect: Iterable[JobState] | None = None, **fields: Any,
    ) -> Job:
        """Move a job to `to` (recording the transition). Raises Conflict when the job is not in
        one of `expect`. A no-op (same state, no fields) records nothing."""
        with self._write() as tx:
            job = self._one(tx, JOBS, "id = ?", (job_id,), f"job {job_id}")
            if expect is not None and job.state not in set(expect):
                raise Conflict(f"job {job_id} is {job.state.value}; cannot move it to {to.value}")
            if job.state == to and not fields:
                return job
            changes = {"state": to, "updated_at": at, **fields}
            if message:
                changes.setdefault("message", message)
            if to.terminal:
                changes.setdefault("finished_at", at)
            self._update(tx, JOBS, "id = ?", (job_id,), changes)
            if job.state != to:
                self._record(tx, job_id, Transition(at, "job", job.state.value, to.value,
                                                    reason, message))
            return self._one(tx, JOBS, "id = ?", (job_id,), f"job {job_id}")

    def update_job(self, job_id: str, *, at: float, **fields: Any) -> Job:
        with self._write() as tx:
            self._one(tx, JOBS, "id = ?", (job_id,), f"job {job_id}")
            self._update(tx, JOBS, "id = ?", (job_id,), {"updated_at": at, **fields})
            return self._one(tx, JOBS, "id = ?", (job_id,), f"job {job_id}")

    def list_jobs(self, flt: JobFilter, page_size: int, page_token: str = "") -> tuple[
            list[Job], str]:
        """Newest first, keyset-paginated on (created_at, id): each page is one index range scan,
        however deep. Label terms are matched on the rows the index returns."""
        page_size = max(1, min(page_size or 50, 1000))
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if flt.projects is not None:
            if not flt.projects:
                return [], ""
            where.append(f"project IN ({', '.join('?' * len(flt.projects))})")
            params += list(flt.projects)
        if flt.states:
            where.append(f"state IN ({', '.join('?' * len(flt.states))})")
            params += list(flt.states)
        if flt.name:
            where.append("name = ?")
            params.append(flt.name)
        fp = flt.fingerprint()
        after = decode_token(page_token, fp) if page_token else None
        out: list[Job] = []
        batch = page_size + 1 if not flt.labels else max(4 * page_size, 200)
        with self._read() as tx:
            while True:
                w, p = list(where), list(params)
                if after is not None:
                    w.append("(created_at < ? OR (created_at = ? AND id < ?))")
                    p += [after[0], after[0], after[1]]
                rows = tx.fetchall(
                    f"SELECT {JOBS.select} FROM jobs WHERE {' AND '.join(w)} "
                    "ORDER BY created_at DESC, id DESC LIMIT ?", [*p, batch],
                )
                for row in rows:
                    job = JOBS.decode(row)
                    after = (job.created_at, job.id)
                    if all(job.labels.get(k) == v for k, v in flt.labels):
                        out.append(job)
                        if len(out) > page_size:
                            break
                if len(out) > page_size or len(rows) < batch:
                    break
        if len(out) > page_size:
            last = out[page_size - 1]
            return out[:page_size], encode_token(last.created_at, last.id, fp)
        return out, ""

    def count_jobs_by_state(self) -> dict[tuple[str, str], int]:
        with self._read() as tx:
            rows = tx.fetchall("SELECT project, state, COUNT(*) FROM jobs GROUP BY project, state")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # ---- stages -----------------------------------------------------------------------------
    def list_stages(self, job_id: str) -> list[Stage]:
        with self._read() as tx:
            rows = tx.fetchall(
                f"SELECT {STAGES.select} FROM stages WHERE job_id = ? ORDER BY ord", (job_id,)
            )
        return [STAGES.decode(r) for r in rows]

    def get_stage(self, job_id: str, stage_id: str) -> Stage:
        with self._read() as tx:
            return self._one(tx, STAGES, "job_id = ? AND id = ?", (job_id, stage_id),
                             f"stage {stage_id} of job {job_id}")

    def update_stage(
        self, job_id: str, stage_id: str, *, at: float, state: AttemptState | None = None,
        reason: str = "", message: str = "", **fields: Any,
    ) -> Stage:
        with self._write() as tx:
            where, params = "job_id = ? AND id = ?", (job_id, stage_id)
            stage = self._one(tx, STAGES, where, params, f"stage {stage_id} of job {job_id}")
            if state is not None:
                fields["state"] = state
            self._update(tx, STAGES, where, params, fields)
            if state is not None and state != stage.state:
                self._record(tx, job_id, Transition(at, stage_id, stage.state.value, state.value,
                                                    reason, message))
            return self._one(tx, STAGES, where, params, f"stage {stage_id}")

    # ---- attempts ---------------------------------------------------------------------------
    def add_attempt(self, attempt: Attempt, *, count_against_budget: bool = True) -> Attempt:
        """Insert an attempt and count it in its stage's retry budget, in one transaction."""
        with self._write() as tx:
            cols = ATTEMPTS.fields
            tx.execute(
                f"INSERT INTO attempts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                ATTEMPTS.encode(attempt),
            )
            if count_against_budget:
                tx.execute(
                    "UPDATE stages SET attempts = attempts + 1 WHERE job_id = ? AND id = ?",
                    (attempt.job_id, attempt.stage_id),
                )
            self._record(tx, attempt.job_id, Transition(
                attempt.created_at, f"{attempt.stage_id}#{attempt.number}", "",
                attempt.state.value, "AttemptCreated", attempt.message))
        return attempt

    def get_attempt(self, attempt_id: str) -> Attempt:
        with self._read() as tx:
            return self._one(tx, ATTEMPTS, "id = ?", (attempt_id,), f"attempt {attempt_id}")

    def list_attempts(self, job_id: str) -> list[Attempt]:
        with self._read() as tx:
            rows = tx.fetchall(
                f"SELECT {ATTEMPTS.select} FROM attempts WHERE job_id = ? "
                "ORDER BY created_at, stage_id, number", (job_id,),
            )
        return [ATTEMPTS.decode(r) for r in rows]

    def attempts_in_states(self, states: Iterable[AttemptState]) -> list[Attempt]:
        values = [s.value for s in states]
        with self._read() as tx:
            rows = tx.fetchall(
                f"SELECT {ATTEMPTS.select} FROM attempts WHERE state IN "
                f"({', '.join('?' * len(values))}) ORDER BY created_at, id", values,
            )
        return [ATTEMPTS.decode(r) for r in rows]

    def next_attempt_number(self, job_id: str, stage_id: str) -> int:
        with self._read() as tx:
            rows = tx.fetchall(
                "SELECT MAX(number) FROM attempts WHERE job_id = ? AND stage_id = ?",
                (job_id, stage_id),
            )
        return int(rows[0][0] or 0) + 1

    def update_attempt(
        self, attempt_id: str, *, at: float, state: AttemptState | None = None,
        reason: str = "", **fields: Any,
    ) -> Attempt:
        with self._write() as tx:
            old = self._one(tx, ATTEMPTS, "id = ?", (attempt_id,), f"attempt {attempt_id}")
            if state is not None:
                fields["state"] = state
            self._update(tx, ATTEMPTS, "id = ?", (attempt_id,), fields)
            if state is not None and state != old.state:
                self._record(tx, old.job_id, Transition(
                    at, f"{old.stage_id}#{old.number}", old.state.value, state.value, reason,
                    str(fields.get("message", ""))))
            return self._one(tx, ATTEMPTS, "id = ?", (attempt_id,), f"attempt {attempt_id}")

    # ---- gates ------------------------------------------------------------------------------
    def list_gates(self, job_id: str) -> list[Gate]:
        with self._read() as tx:
            rows = tx.fetchall(
                f"SELECT {GATES.select} FROM gates WHERE job_id = ? ORDER BY ord", (job_id,)
            )
        return [GATES.decode(r) for r in rows]

    def update_gate(
        self, job_id: str, gate_id: str, *, at: float, state: GateState | None = None,
        reason: str = "", expect: Iterable[GateState] | None = None, **fields: Any,
    ) -> Gate:
        with self._write() as tx:
            where, params = "job_id = ? AND id = ?", (job_id, gate_id)
            gate = self._one(tx, GATES, where, params, f"gate {gate_id} of job {job_id}")
            if expect is not None and gate.state not in set(expect):
                raise Conflict(f"gate {gate_id} is {gate.state.value}; nothing to approve")
            if state is not None:
                fields["state"] = state
            self._update(tx, GATES, where, params, fields)
            if state is not None and state != gate.state:
                self._record(tx, job_id, Transition(at, f"gate:{gate_id}", gate.state.value,
                                                    state.value, reason,
                                                    str(fields.get("message", ""))))
            return self._one(tx, GATES, where, params, f"gate {gate_id}")

    # ---- transitions ------------------------------------------------------------------------
    def transitions(self, job_id: str, after_cursor: int = 0) -> list[tuple[int, Transition]]:
        with self._read() as tx:
            rows = tx.fetchall(
                "SELECT cursor_no, at, subject, from_state, to_state, reason, message "
                "FROM transitions WHERE job_id = ? AND cursor_no > ? ORDER BY cursor_no",
                (job_id, after_cursor),
            )
        return [(int(r[0]), Transition(*r[1:])) for r in rows]

    # ---- events -----------------------------------------------------------------------------
    def add_events(
        self, job_id: str, attempt_id: str, stage_id: str, events: Sequence[dict[str, Any]]
    ) -> list[StoredEvent]:
        """Store events not seen before (by seq); returns the new ones with their cursors.
        Metric and result values also update the job's latest-metrics table."""
        if not events:
            return []
        by_seq: dict[int, dict[str, Any]] = {}
        for e in events:
            by_seq.setdefault(int(e["seq"]), e)
        with self._write() as tx:
            # Lock the job row first so concurrent ingestion of one job is serialised.
            self._bump_cursor(tx, job_id, 0)
            seqs = sorted(by_seq)
            rows = tx.fetchall(
                "SELECT seq FROM events WHERE attempt_id = ? AND seq BETWEEN ? AND ?",
                (attempt_id, seqs[0], seqs[-1]),
            )
            existing = {int(r[0]) for r in rows}
            new_seqs = [s for s in seqs if s not in existing]
            if not new_seqs:
                return []
            last = self._bump_cursor(tx, job_id, len(new_seqs))
            first = last - len(new_seqs) + 1
            # The hot path of ingestion (bench/control_plane.py): one pass, no per-value loops.
            stored, rows = [], []
            for cursor, seq in zip(range(first, last + 1), new_seqs, strict=True):
                payload = dict(by_seq[seq])
                etype, time = str(payload.pop("type")), str(payload.pop("time", ""))
                del payload["seq"]
                stored.append(StoredEvent(job_id, attempt_id, stage_id, seq, etype, time,
                                          payload, cursor))
                rows.append((attempt_id, seq, job_id, stage_id, cursor, etype, time,
                             _payload_json(payload)))
            tx.executemany(
                "INSERT INTO events (attempt_id, seq, job_id, stage_id, cursor_no, type, time, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            latest = [(job_id, stage_id, k, v) for k, v in
                      last_metric_values(by_seq[seq] for seq in new_seqs).items()]
            if latest:
                tx.executemany(
                    "INSERT INTO latest_metrics (job_id, stage_id, key, value) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (job_id, stage_id, key) "
                    "DO UPDATE SET value = excluded.value", latest)
        return stored

    def events(self, job_id: str, after_cursor: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        with self._read() as tx:
            rows = tx.fetchall(
                "SELECT job_id, attempt_id, stage_id, seq, type, time, payload, cursor_no "
                "FROM events WHERE job_id = ? AND cursor_no > ? ORDER BY cursor_no LIMIT ?",
                (job_id, after_cursor, limit),
            )
        return [_event(r) for r in rows]

    def attempt_events(self, attempt_id: str) -> list[StoredEvent]:
        with self._read() as tx:
            rows = tx.fetchall(
                "SELECT job_id, attempt_id, stage_id, seq, type, time, payload, cursor_no "
                "FROM events WHERE attempt_id = ? ORDER BY seq", (attempt_id,),
            )
        return [_event(r) for r in rows]

    def max_cursor(self, job_id: str) -> int:
        with self._read() as tx:
            rows = tx.fetchall("SELECT cursor_no FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"job {job_id} not found")
        return int(rows[0][0])

    def latest_metrics(self, job_id: str) -> dict[str, dict[str, float]]:
        with self._read() as tx:
            rows = tx.fetchall(
                "SELECT stage_id, key, value FROM latest_metrics WHERE job_id = ? "
                "ORDER BY stage_id, key", (job_id,),
            )
        out: dict[str, dict[str, float]] = {}
        for stage_id, key, value in rows:
            out.setdefault(stage_id, {})[key] = float(value)
        return out


def _event(row: Sequence[Any]) -> StoredEvent:
    job_id, attempt_id, stage_id, seq, type_, time, payload, cursor = row
    return StoredEvent(job_id, attempt_id, stage_id, int(seq), type_, time, json.loads(payload),
                       int(cursor))

