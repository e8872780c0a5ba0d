"""Thin servicers (STYLE rule 10): check the request's shape, authorize, convert, call the
control plane, convert back. Errors: ServiceError → its gRPC status (saferlhf.service.api.errors);
anything else is logged and answered INTERNAL without internals.

Visibility: a job outside the caller's projects is NOT_FOUND, exactly like a missing job, so
ids of other projects' jobs leak nothing; a visible job with too weak a role is PERMISSION_DENIED.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from saferlhf.service.api import convert
from saferlhf.service.api.errors import to_grpc_status
from saferlhf.service.api.fanout import WatchHub
from saferlhf.service.auth import TokenAuth, bearer, can_see, readable_projects, require_role
from saferlhf.service.controlplane import ControlPlane, JobView, Principal
from saferlhf.service.errors import FieldViolation, NotFound, ServiceError, SpecError
from saferlhf.service.spec.yamlmap import spec_project
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as rpb_types
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
MAX_PAGE_SIZE = 1000
MAX_EVENTS_PER_BATCH = 10_000
DEFAULT_PROJECT = "default"
_EVENT_TYPES = {n: rpb_types.EventType.Name(n)[len("EVENT_TYPE_"):].lower()
                for n in rpb_types.EventType.values() if n != 0}  # number → "metrics" …


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, ServiceError):
        context.abort_with_status(to_grpc_status(exc))
    log.exception("internal error in an RPC", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, "internal error; the service log has the details")


def unary(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:  # the one place errors become statuses
            _abort(context, exc)
    return wrapper  # type: ignore[return-value]


def stream(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:  # GeneratorExit (client gone) is not an Exception
            _abort(context, exc)
    return wrapper  # type: ignore[return-value]


def _require(**fields: Any) -> None:
    """Raise SpecError naming every empty required request field."""
    missing = [FieldViolation(k, "required; got an empty value")
               for k, v in fields.items() if not v]
    if missing:
        raise SpecError(missing, "invalid request: " + ", ".join(f"{v.field} is required"
                                                                 for v in missing))


class JobServicer(api_grpc.JobServiceServicer):
    def __init__(self, app: ControlPlane, auth: TokenAuth) -> None:
        self._app = app
        self._auth = auth
        self._hub = WatchHub(app, convert.watch_update_to_proto)  # each update encoded once

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        return self._auth.authenticate(context.invocation_metadata())

    def _visible(self, context: grpc.ServicerContext, job_id: str, needed: str) -> JobView:
        _require(job_id=job_id)
        principal = self._principal(context)
        try:
            view = self._app.get_job(job_id)
        except NotFound:
            raise NotFound(f"job {job_id!r} not found") from None
        if not can_see(principal, view.job.project):
            raise NotFound(f"job {job_id!r} not found")
        require_role(principal, view.job.project, needed)
        return view

    @unary
    def CreateJob(self, request: api.CreateJobRequest, context: Any) -> api.CreateJobResponse:
        _require(spec_yaml=request.spec_yaml.strip())
        principal = self._principal(context)
        project = request.project or spec_project(request.spec_yaml)
        if project is None:  # unreadable spec: let validation name the problems
            self._app.create_job(request.spec_yaml, project=None, request_id=request.request_id,
                                 validate_only=True)
            project = DEFAULT_PROJECT
        require_role(principal, project, "write")
        job = self._app.create_job(
            request.spec_yaml, project=request.project or None, request_id=request.request_id,
            validate_only=request.validate_only,
        )
        response = api.CreateJobResponse(valid=True)
        if job is not None:
            response.job.CopyFrom(convert.job_to_proto(job))
        return response

    @unary
    def GetJob(self, request: api.GetJobRequest, context: Any) -> api.GetJobResponse:
        return convert.job_view_to_proto(self._visible(context, request.job_id, "read"))

    @unary
    def ListJobs(self, request: api.ListJobsRequest, context: Any) -> api.ListJobsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise SpecError([FieldViolation("page_size", f"expected 0..{MAX_PAGE_SIZE} "
                                            f"(0 = default 50), got {request.page_size}")])
        projects = readable_projects(self._principal(context))
        page = self._app.list_jobs(projects=projects, filter=request.filter,
                                   page_size=request.page_size or 50,
                                   page_token=request.page_token)
        return api.ListJobsResponse(jobs=[convert.job_to_proto(j) for j in page.jobs],
                                    next_page_token=page.next_page_token)

    @stream
    def WatchJob(self, request: api.WatchJobRequest, context: Any) -> Iterator[Any]:
        if request.after_cursor < 0:
            raise SpecError([FieldViolation("after_cursor", f"expected >= 0, got "
                                                            f"{request.after_cursor}")])
        self._visible(context, request.job_id, "read")
        updates = self._hub.watch(request.job_id, request.after_cursor, context.is_active)
        for message in updates:
            if not context.is_active():
                return
            yield message

    @unary
    def CancelJob(self, request: api.CancelJobRequest, context: Any) -> api.CancelJobResponse:
        self._visible(context, request.job_id, "write")
        job = self._app.cancel_job(request.job_id, request.reason)
        return api.CancelJobResponse(job=convert.job_to_proto(job))

    @unary
    def RetryJob(self, request: api.RetryJobRequest, context: Any) -> api.RetryJobResponse:
        self._visible(context, request.job_id, "write")
        return api.RetryJobResponse(job=convert.job_to_proto(self._app.retry_job(request.job_id)))

    @unary
    def ApproveGate(self, request: api.ApproveGateRequest, context: Any) -> api.ApproveGateResponse:
        _require(job_id=request.job_id, gate_id=request.gate_id)
        self._visible(context, request.job_id, "write")
        gate = self._app.approve_gate(request.job_id, request.gate_id, approve=request.approve,
                                      comment=request.comment)
        return api.ApproveGateResponse(gate=convert.gate_to_proto(gate))

    @stream
    def GetStageLogs(self, request: api.GetStageLogsRequest, context: Any) -> Iterator[Any]:
        _require(job_id=request.job_id, stage_id=request.stage_id)
        self._visible(context, request.job_id, "read")
        batch: list[str] = []
        for line in self._app.stage_logs(request.job_id, request.stage_id, follow=request.follow):
            if not context.is_active():
                return
            batch.append(line.rstrip("\n"))
            if len(batch) >= 100 or request.follow:
                yield api.GetStageLogsResponse(lines=batch)
                batch = []
        if batch:
            yield api.GetStageLogsResponse(lines=batch)

    @unary
    def ExportSamples(self, request: api.ExportSamplesRequest,
                      context: Any) -> api.ExportSamplesResponse:
        if request.round < 1:
            raise SpecError([FieldViolation("round", f"expected >= 1, got {request.round}")])
        self._visible(context, request.job_id, "read")
        filename, content = self._app.export_samples(request.job_id, request.round)
        return api.ExportSamplesResponse(filename=filename, content=content)

    @unary
    def ImportLabels(self, request: api.ImportLabelsRequest,
                     context: Any) -> api.ImportLabelsResponse:
        if request.round < 1:
            raise SpecError([FieldViolation("round", f"expected >= 1, got {request.round}")])
        _require(content=request.content)
        self._visible(context, request.job_id, "write")
        job = self._app.import_labels(request.job_id, request.round, request.content)
        return api.ImportLabelsResponse(job=convert.job_to_proto(job))


def events_from_request(request: rpb.ReportEventsRequest) -> list[dict[str, Any]]:
    """Request events → events.jsonl objects; SpecError names each bad event and field.
    (The hot path of ingestion: one json.loads per event and nothing else per event.)"""
    problems: list[FieldViolation] = []
    events = []
    if len(request.events) > MAX_EVENTS_PER_BATCH:
        problems.append(FieldViolation("events", f"at most {MAX_EVENTS_PER_BATCH} per batch, "
                                                 f"got {len(request.events)}"))
    loads = json.loads
    for i, e in enumerate(request.events):
        type_name = _EVENT_TYPES.get(e.type)
        if e.seq < 1:
            problems.append(FieldViolation(f"events[{i}].seq", f"expected >= 1, got {e.seq}"))
        if type_name is None:
            problems.append(FieldViolation(f"events[{i}].type", f"expected a known EventType, "
                                                                f"got {e.type} (0 = unspecified)"))
        try:
            payload = loads(e.payload_json) if e.payload_json else {}
        except (ValueError, RecursionError) as exc:
            problems.append(FieldViolation(f"events[{i}].payload_json", f"not JSON: {exc}"))
            continue
        if type(payload) is not dict:
            problems.append(FieldViolation(f"events[{i}].payload_json", "expected a JSON object"))
            continue
        if not problems:
            payload.update(seq=e.seq, attempt=e.attempt, time=e.time, type=type_name)
            events.append(payload)
    if problems:
        raise SpecError(problems, "invalid events: " + "; ".join(
            f"{v.field}: {v.description}" for v in problems[:5]))
    return events


class RunnerServicer(rpb_grpc.RunnerServiceServicer):
    def __init__(self, app: ControlPlane) -> None:
        self._app = app

    @unary
    def ReportEvents(self, request: rpb.ReportEventsRequest,
                     context: Any) -> rpb.ReportEventsResponse:
        _require(attempt_id=request.attempt_id)
        token = bearer(context.invocation_metadata()) or ""
        events = events_from_request(request)
        stored = self._app.report_events(request.attempt_id, token, events)
        return rpb.ReportEventsResponse(stored=stored, received=len(events))
