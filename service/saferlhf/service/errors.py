"""The service's one error taxonomy (STYLE rule 8). `saferlhf.service.api.errors` maps each to a
gRPC
status code; nothing else in the service raises bare exceptions across module boundaries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str  # dotted path, e.g. "spec.stages.ppo_lag.lambda_lr"
    description: str  # "must be > 0, got -1" + how to fix
    line: int | None = None  # YAML line, where known


class ServiceError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpecError(ServiceError):
    """An invalid spec or request: every violation, each with its field path."""

    code = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        self.violations = list(violations)
        lines = [f"{v.field}: {v.description}" + (f" (line {v.line})" if v.line else "")
                 for v in self.violations]
        super().__init__(message or "invalid job spec:\n  " + "\n  ".join(lines))


class NotFound(ServiceError):
    code = "NOT_FOUND"


class Conflict(ServiceError):
    """The request clashes with current state (cancel a finished job, approve a passed gate)."""

    code = "FAILED_PRECONDITION"


class AlreadyExists(ServiceError):
    code = "ALREADY_EXISTS"


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class PermissionDenied(ServiceError):
    code = "PERMISSION_DENIED"


class Unavailable(ServiceError):
    code = "UNAVAILABLE"
