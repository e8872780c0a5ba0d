"""The one table from the service's error taxonomy to gRPC status codes (STYLE rule 8).

Every error carries a google.rpc.ErrorInfo (reason + domain, AIP-193); a SpecError adds a
google.rpc.BadRequest with one field violation per problem, so clients can point at the field.
"""

from __future__ import annotations

import re

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from saferlhf.service.errors import ServiceError, SpecError

DOMAIN = "saferlhf.dev"

_CODES: dict[str, grpc.StatusCode] = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}


def grpc_code(error: ServiceError) -> grpc.StatusCode:
    return _CODES.get(error.code, grpc.StatusCode.INTERNAL)


def _reason(error: ServiceError) -> str:
    """CamelCase class name → UPPER_SNAKE reason, e.g. SpecError → SPEC_ERROR."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).upper()


# A status travels in trailing metadata (grpc-message, and grpc-status-details-bin again with
# the message and every violation); clients refuse metadata over 16 KiB (grpc's default), and then
# see RESOURCE_EXHAUSTED instead of the error. Messages echo what the caller sent (a 100 KB job id,
# a huge spec value), so every part is clipped to keep a status well under that.
MAX_MESSAGE_CHARS = 2000
MAX_VIOLATIONS = 20
MAX_FIELD_CHARS = 120
MAX_DESCRIPTION_CHARS = 240


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 30] + f"… ({len(text)} characters)"


def to_status(error: ServiceError) -> status_pb2.Status:
    """A google.rpc.Status with ErrorInfo, plus BadRequest field violations for a SpecError
    (at most MAX_VIOLATIONS, each clipped; the message says how many there were)."""
    code = grpc_code(error)
    status = status_pb2.Status(code=getattr(code_pb2, code.name),
                               message=clip(error.message, MAX_MESSAGE_CHARS))
    info = error_details_pb2.ErrorInfo(reason=_reason(error), domain=DOMAIN)
    status.details.add().Pack(info)
    if isinstance(error, SpecError):
        bad = error_details_pb2.BadRequest()
        for v in error.violations[:MAX_VIOLATIONS]:
            description = v.description + (f" (line {v.line})" if v.line else "")
            bad.field_violations.add(field=clip(v.field, MAX_FIELD_CHARS),
                                     description=clip(description, MAX_DESCRIPTION_CHARS))
        if len(error.violations) > MAX_VIOLATIONS:
            bad.field_violations.add(
                field="(more)", description=f"{len(error.violations) - MAX_VIOLATIONS} more "
                f"violations not shown; fix these first")
        status.details.add().Pack(bad)
    return status


def to_grpc_status(error: ServiceError) -> grpc.Status:
    """What `context.abort_with_status` takes."""
    return rpc_status.to_status(to_status(error))


def field_violations(call_error: grpc.RpcError) -> list[tuple[str, str]]:
    """Client side: the (field, description) pairs of an INVALID_ARGUMENT error, if any."""
    status = rpc_status.from_call(call_error)  # type: ignore[arg-type]
    if status is None:
        return []
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out
