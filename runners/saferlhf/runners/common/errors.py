"""Exit codes of the runner contract (DESIGN §5) and the errors that map to them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 2  # invalid config or data: permanent, never retried
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: retry after backoff
EXIT_STORAGE = 74  # EX_IOERR: the outputs cannot be written (disk full, read-only): retried


class RunnerError(Exception):
    exit_code = 1


class InvalidInputError(RunnerError):
    """Bad config or data. The message names the file, row (1-based) and field, and how to fix
    it."""

    exit_code = EXIT_INVALID

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ", ".join(
            part for part in (
                file and f"file {file}",
                row is not None and f"row {row}",
                field and f"field {field!r}",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.row, self.field = file, row, field


class TransientError(RunnerError):
    """Worth retrying (a lost peer, a full disk that may clear, a preempted node)."""

    exit_code = EXIT_TRANSIENT
