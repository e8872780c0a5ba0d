"""Error mapping: each ServiceError becomes its gRPC code; spec errors carry field violations."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from saferlhf.service.api.errors import grpc_code, to_status
from saferlhf.service.errors import (
    AlreadyExists,
    Conflict,
    FieldViolation,
    NotFound,
    PermissionDenied,
    ServiceError,
    SpecError,
    Unauthenticated,
    Unavailable,
)


@pytest.mark.parametrize(("error", "code"), [
    (SpecError([FieldViolation("a", "b")]), grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (Conflict("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
    (Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    (Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (ServiceError("x"), grpc.StatusCode.INTERNAL),
])
def test_each_service_error_maps_to_its_grpc_code(error, code):
    assert grpc_code(error) is code
    assert to_status(error).code == code.value[0]


def test_spec_error_status_lists_every_field_violation_with_its_line():
    error = SpecError([FieldViolation("spec.stages.ppo_lag.lambda_lr", "must be > 0, got -1", 12),
                       FieldViolation("metadata.name", "required")])
    status = to_status(error)
    bad = error_details_pb2.BadRequest()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "SPEC_ERROR"
    assert status.details[1].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("spec.stages.ppo_lag.lambda_lr", "must be > 0, got -1 (line 12)"),
        ("metadata.name", "required"),
    ]


def test_non_spec_errors_carry_error_info_but_no_bad_request():
    status = to_status(NotFound("job 'x' not found"))
    assert len(status.details) == 1
    assert status.message == "job 'x' not found"
