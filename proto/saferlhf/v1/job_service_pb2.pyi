from saferlhf.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateJobRequest(_message.Message):
    __slots__ = ("spec_yaml", "project", "request_id", "validate_only")
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    project: str
    request_id: str
    validate_only: bool
    def __init__(self, spec_yaml: _Optional[str] = ..., project: _Optional[str] = ..., request_id: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job", "valid")
    JOB_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    job: _resources_pb2.Job
    valid: bool
    def __init__(self, job: _Optional[_Union[_resources_pb2.Job, _Mapping]] = ..., valid: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job", "stages", "attempts", "gates", "transitions", "latest_metrics")
    JOB_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    LATEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    job: _resources_pb2.Job
    stages: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Stage]
    attempts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Attempt]
    gates: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Gate]
    transitions: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Transition]
    latest_metrics: _containers.RepeatedCompositeFieldContainer[_resources_pb2.MetricPoint]
    def __init__(self, job: _Optional[_Union[_resources_pb2.Job, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[_resources_pb2.Stage, _Mapping]]] = ..., attempts: _Optional[_Iterable[_Union[_resources_pb2.Attempt, _Mapping]]] = ..., gates: _Optional[_Iterable[_Union[_resources_pb2.Gate, _Mapping]]] = ..., transitions: _Optional[_Iterable[_Union[_resources_pb2.Transition, _Mapping]]] = ..., latest_metrics: _Optional[_Iterable[_Union[_resources_pb2.MetricPoint, _Mapping]]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: str
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_resources_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_cursor")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_cursor: int
    def __init__(self, job_id: _Optional[str] = ..., after_cursor: _Optional[int] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("cursor", "job", "stage", "gate", "event", "metric_points")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    METRIC_POINTS_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    job: _resources_pb2.Job
    stage: _resources_pb2.Stage
    gate: _resources_pb2.Gate
    event: _resources_pb2.Event
    metric_points: _containers.RepeatedCompositeFieldContainer[_resources_pb2.MetricPoint]
    def __init__(self, cursor: _Optional[int] = ..., job: _Optional[_Union[_resources_pb2.Job, _Mapping]] = ..., stage: _Optional[_Union[_resources_pb2.Stage, _Mapping]] = ..., gate: _Optional[_Union[_resources_pb2.Gate, _Mapping]] = ..., event: _Optional[_Union[_resources_pb2.Event, _Mapping]] = ..., metric_points: _Optional[_Iterable[_Union[_resources_pb2.MetricPoint, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _resources_pb2.Job
    def __init__(self, job: _Optional[_Union[_resources_pb2.Job, _Mapping]] = ...) -> None: ...

class RetryJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RetryJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _resources_pb2.Job
    def __init__(self, job: _Optional[_Union[_resources_pb2.Job, _Mapping]] = ...) -> None: ...

class ApproveGateRequest(_message.Message):
    __slots__ = ("job_id", "gate_id", "approve", "comment")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    gate_id: str
    approve: bool
    comment: str
    def __init__(self, job_id: _Optional[str] = ..., gate_id: _Optional[str] = ..., approve: _Optional[bool] = ..., comment: _Optional[str] = ...) -> None: ...

class ApproveGateResponse(_message.Message):
    __slots__ = ("gate",)
    GATE_FIELD_NUMBER: _ClassVar[int]
    gate: _resources_pb2.Gate
    def __init__(self, gate: _Optional[_Union[_resources_pb2.Gate, _Mapping]] = ...) -> None: ...

class GetStageLogsRequest(_message.Message):
    __slots__ = ("job_id", "stage_id", "follow")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    stage_id: str
    follow: bool
    def __init__(self, job_id: _Optional[str] = ..., stage_id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class GetStageLogsResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportSamplesRequest(_message.Message):
    __slots__ = ("job_id", "round")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    round: int
    def __init__(self, job_id: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class ExportSamplesResponse(_message.Message):
    __slots__ = ("filename", "content")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content: bytes
    def __init__(self, filename: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class ImportLabelsRequest(_message.Message):
    __slots__ = ("job_id", "round", "content")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    round: int
    content: bytes
    def __init__(self, job_id: _Optional[str] = ..., round: _Optional[int] = ..., content: _Optional[bytes] = ...) -> None: ...

class ImportLabelsResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _resources_pb2.Job
    def __init__(self, job: _Optional[_Union[_resources_pb2.Job, _Mapping]] = ...) -> None: ...
