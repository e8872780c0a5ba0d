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


# A status travels in trailing metadata: grpc-message (percent-encoded) and, again with every
# violation, grpc-status-details-bin. Clients reject trailers over 8 KiB (gRPC's soft limit, above
# which calls fail at random; 16 KiB always) and then see RESOURCE_EXHAUSTED instead of the error.
# Messages echo what the caller sent (a 100 KB job id, a huge spec value), so the message and the
# violations are clipped, and violations dropped, until both fit in TRAILER_BUDGET_BYTES.
MAX_MESSAGE_CHARS = 1000
MAX_VIOLATIONS = 20
MAX_FIELD_CHARS = 120
MAX_DESCRIPTION_CHARS = 240
TRAILER_BUDGET_BYTES = 6000


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 30] + f"… ({len(text)} characters)"


def _wire_bytes(status: status_pb2.Status) -> int:
    """What the two trailers take: the details (base64 on the wire) and the encoded message."""
    message = status.message.encode()
    encoded = len(message) + 2 * sum(1 for b in message if b < 0x20 or b > 0x7E or b == 0x25)
    return (len(status.SerializeToString()) * 4) // 3 + encoded


def to_status(error: ServiceError) -> status_pb2.Status:
    """A google.rpc.Status with ErrorInfo, plus BadRequest field violations for a SpecError
    (the first ones that fit the trailer budget, each clipped; a last entry says how many more
    there were)."""
    code = grpc_code(error)
    message = clip(error.message, MAX_MESSAGE_CHARS)
    violations = error.violations if isinstance(error, SpecError) else []
    shown = min(len(violations), MAX_VIOLATIONS)
    while True:
        status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
        info = error_details_pb2.ErrorInfo(reason=_reason(error), domain=DOMAIN)
        status.details.add().Pack(info)
        if isinstance(error, SpecError):
            bad = error_details_pb2.BadRequest()
            for v in violations[:shown]:
                description = v.description + (f" (line {v.line})" if v.line else "")
                bad.field_violations.add(field=clip(v.field, MAX_FIELD_CHARS),
                                         description=clip(description, MAX_DESCRIPTION_CHARS))
            if len(violations) > shown:
                bad.field_violations.add(
                    field="(more)", description=f"{len(violations) - shown} more violations "
                    "not shown; fix these first")
            status.details.add().Pack(bad)
        if _wire_bytes(status) <= TRAILER_BUDGET_BYTES or (shown == 0 and len(message) < 200):
            return status
        if shown > 0:
            shown -= 1
        else:
            message = clip(message, max(200, len(message) // 2))


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
