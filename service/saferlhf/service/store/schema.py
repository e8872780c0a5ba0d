"""The store's one schema, as versioned migrations applied in order at open (SQLite and PostgreSQL).

The DDL uses only types and syntax both engines accept (TEXT, BIGINT, DOUBLE PRECISION, partial
unique indexes, ON CONFLICT). JSON values are stored as TEXT. Never edit a released migration:
append a new one.

Cursors: `jobs.cursor_no` is a per-job counter bumped in the same transaction that writes a
transition or an event, so every WatchJob update of a job has a strictly increasing cursor.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "initial schema", (
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL,
            state TEXT NOT NULL,
            request_id TEXT NOT NULL DEFAULT '',
            spec TEXT NOT NULL,
            labels TEXT NOT NULL,
            conditions TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            cursor_no BIGINT NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX jobs_by_created ON jobs (created_at, id)",
        "CREATE INDEX jobs_by_project_created ON jobs (project, created_at, id)",
        "CREATE INDEX jobs_by_state ON jobs (state)",
        "CREATE UNIQUE INDEX jobs_by_request ON jobs (project, request_id) WHERE request_id <> ''",
        """CREATE TABLE stages (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            id TEXT NOT NULL,
            ord BIGINT NOT NULL,
            round BIGINT NOT NULL,
            kind TEXT NOT NULL,
            depends_on TEXT NOT NULL,
            state TEXT NOT NULL,
            config TEXT NOT NULL,
            output_dir TEXT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            skipped_with TEXT,
            progress DOUBLE PRECISION NOT NULL DEFAULT 0,
            result TEXT NOT NULL,
            max_attempts BIGINT NOT NULL,
            backoff_seconds DOUBLE PRECISION NOT NULL,
            backoff_max_seconds DOUBLE PRECISION NOT NULL,
            stall_minutes DOUBLE PRECISION,
            resources TEXT NOT NULL,
            PRIMARY KEY (job_id, id)
        )""",
        """CREATE TABLE attempts (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs (id),
            stage_id TEXT NOT NULL,
            number BIGINT NOT NULL,
            state TEXT NOT NULL,
            handle TEXT NOT NULL DEFAULT '',
            exit_code BIGINT,
            failure TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            token_hash TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            last_event_at DOUBLE PRECISION,
            not_before DOUBLE PRECISION,
            UNIQUE (job_id, stage_id, number)
        )""",
        "CREATE INDEX attempts_by_state ON attempts (state)",
        "CREATE INDEX attempts_by_job ON attempts (job_id)",
        """CREATE TABLE gates (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            id TEXT NOT NULL,
            ord BIGINT NOT NULL,
            after_stage TEXT NOT NULL,
            metric TEXT NOT NULL,
            op TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            on_fail TEXT NOT NULL,
            state TEXT NOT NULL,
            observed DOUBLE PRECISION,
            message TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (job_id, id)
        )""",
        """CREATE TABLE transitions (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            cursor_no BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            subject TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (job_id, cursor_no)
        )""",
        """CREATE TABLE events (
            attempt_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            job_id TEXT NOT NULL REFERENCES jobs (id),
            stage_id TEXT NOT NULL,
            cursor_no BIGINT NOT NULL,
            type TEXT NOT NULL,
            time TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (attempt_id, seq)
        )""",
        "CREATE UNIQUE INDEX events_by_job_cursor ON events (job_id, cursor_no)",
        """CREATE TABLE latest_metrics (
            job_id TEXT NOT NULL REFERENCES jobs (id),
            stage_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (job_id, stage_id, key)
        )""",
    )),
    (2, "stage timeouts", (
        "ALTER TABLE stages ADD COLUMN timeout_minutes DOUBLE PRECISION",
    )),
)

LATEST_VERSION = MIGRATIONS[-1][0]
