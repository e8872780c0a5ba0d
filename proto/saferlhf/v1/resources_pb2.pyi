import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_PAUSED: _ClassVar[JobState]
    JOB_STATE_CANCELLING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class AttemptState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_STATE_UNSPECIFIED: _ClassVar[AttemptState]
    ATTEMPT_STATE_PENDING: _ClassVar[AttemptState]
    ATTEMPT_STATE_QUEUED: _ClassVar[AttemptState]
    ATTEMPT_STATE_RUNNING: _ClassVar[AttemptState]
    ATTEMPT_STATE_SUCCEEDED: _ClassVar[AttemptState]
    ATTEMPT_STATE_FAILED: _ClassVar[AttemptState]
    ATTEMPT_STATE_CANCELLED: _ClassVar[AttemptState]
    ATTEMPT_STATE_SKIPPED: _ClassVar[AttemptState]

class FailureClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_CLASS_UNSPECIFIED: _ClassVar[FailureClass]
    FAILURE_CLASS_NONE: _ClassVar[FailureClass]
    FAILURE_CLASS_INVALID: _ClassVar[FailureClass]
    FAILURE_CLASS_TRANSIENT: _ClassVar[FailureClass]
    FAILURE_CLASS_OOM: _ClassVar[FailureClass]
    FAILURE_CLASS_KILLED: _ClassVar[FailureClass]
    FAILURE_CLASS_HUNG: _ClassVar[FailureClass]
    FAILURE_CLASS_UNSCHEDULABLE: _ClassVar[FailureClass]
    FAILURE_CLASS_IMAGE_PULL: _ClassVar[FailureClass]
    FAILURE_CLASS_DEADLINE: _ClassVar[FailureClass]
    FAILURE_CLASS_UNKNOWN: _ClassVar[FailureClass]
    FAILURE_CLASS_STORAGE: _ClassVar[FailureClass]

class GateState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GATE_STATE_UNSPECIFIED: _ClassVar[GateState]
    GATE_STATE_PENDING: _ClassVar[GateState]
    GATE_STATE_PASSED: _ClassVar[GateState]
    GATE_STATE_FAILED: _ClassVar[GateState]
    GATE_STATE_AWAITING_APPROVAL: _ClassVar[GateState]
    GATE_STATE_APPROVED: _ClassVar[GateState]
    GATE_STATE_REJECTED: _ClassVar[GateState]
    GATE_STATE_ESCALATED: _ClassVar[GateState]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_METRICS: _ClassVar[EventType]
    EVENT_TYPE_PROGRESS: _ClassVar[EventType]
    EVENT_TYPE_CHECKPOINT: _ClassVar[EventType]
    EVENT_TYPE_ARTIFACT: _ClassVar[EventType]
    EVENT_TYPE_RESULT: _ClassVar[EventType]
    EVENT_TYPE_LOG: _ClassVar[EventType]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_PAUSED: JobState
JOB_STATE_CANCELLING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
ATTEMPT_STATE_UNSPECIFIED: AttemptState
ATTEMPT_STATE_PENDING: AttemptState
ATTEMPT_STATE_QUEUED: AttemptState
ATTEMPT_STATE_RUNNING: AttemptState
ATTEMPT_STATE_SUCCEEDED: AttemptState
ATTEMPT_STATE_FAILED: AttemptState
ATTEMPT_STATE_CANCELLED: AttemptState
ATTEMPT_STATE_SKIPPED: AttemptState
FAILURE_CLASS_UNSPECIFIED: FailureClass
FAILURE_CLASS_NONE: FailureClass
FAILURE_CLASS_INVALID: FailureClass
FAILURE_CLASS_TRANSIENT: FailureClass
FAILURE_CLASS_OOM: FailureClass
FAILURE_CLASS_KILLED: FailureClass
FAILURE_CLASS_HUNG: FailureClass
FAILURE_CLASS_UNSCHEDULABLE: FailureClass
FAILURE_CLASS_IMAGE_PULL: FailureClass
FAILURE_CLASS_DEADLINE: FailureClass
FAILURE_CLASS_UNKNOWN: FailureClass
FAILURE_CLASS_STORAGE: FailureClass
GATE_STATE_UNSPECIFIED: GateState
GATE_STATE_PENDING: GateState
GATE_STATE_PASSED: GateState
GATE_STATE_FAILED: GateState
GATE_STATE_AWAITING_APPROVAL: GateState
GATE_STATE_APPROVED: GateState
GATE_STATE_REJECTED: GateState
GATE_STATE_ESCALATED: GateState
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_METRICS: EventType
EVENT_TYPE_PROGRESS: EventType
EVENT_TYPE_CHECKPOINT: EventType
EVENT_TYPE_ARTIFACT: EventType
EVENT_TYPE_RESULT: EventType
EVENT_TYPE_LOG: EventType

class Job(_message.Message):
    __slots__ = ("id", "name", "project", "state", "request_id", "labels", "create_time", "update_time", "finish_time", "message", "conditions", "spec_json")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ConditionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    project: str
    state: JobState
    request_id: str
    labels: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    message: str
    conditions: _containers.ScalarMap[str, str]
    spec_json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., project: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., conditions: _Optional[_Mapping[str, str]] = ..., spec_json: _Optional[str] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("id", "job_id", "round", "kind", "depends_on", "state", "config_json", "output_dir", "attempts", "skipped_with", "progress", "result_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_WITH_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    round: int
    kind: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    state: AttemptState
    config_json: str
    output_dir: str
    attempts: int
    skipped_with: str
    progress: float
    result_json: str
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., round: _Optional[int] = ..., kind: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[AttemptState, str]] = ..., config_json: _Optional[str] = ..., output_dir: _Optional[str] = ..., attempts: _Optional[int] = ..., skipped_with: _Optional[str] = ..., progress: _Optional[float] = ..., result_json: _Optional[str] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("id", "job_id", "stage_id", "number", "state", "handle", "exit_code", "failure", "message", "create_time", "start_time", "finish_time", "last_event_time", "not_before_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    stage_id: str
    number: int
    state: AttemptState
    handle: str
    exit_code: int
    failure: FailureClass
    message: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    last_event_time: _timestamp_pb2.Timestamp
    not_before_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., stage_id: _Optional[str] = ..., number: _Optional[int] = ..., state: _Optional[_Union[AttemptState, str]] = ..., handle: _Optional[str] = ..., exit_code: _Optional[int] = ..., failure: _Optional[_Union[FailureClass, str]] = ..., message: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_before_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Gate(_message.Message):
    __slots__ = ("id", "job_id", "after_stage", "metric", "op", "value", "on_fail", "state", "observed", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_STAGE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ON_FAIL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    after_stage: str
    metric: str
    op: str
    value: float
    on_fail: str
    state: GateState
    observed: float
    message: str
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., after_stage: _Optional[str] = ..., metric: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[float] = ..., on_fail: _Optional[str] = ..., state: _Optional[_Union[GateState, str]] = ..., observed: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("time", "subject", "from_state", "to_state", "reason", "message")
    TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    subject: str
    from_state: str
    to_state: str
    reason: str
    message: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "attempt", "time", "type", "payload_json", "job_id", "attempt_id", "stage_id", "cursor")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    attempt: int
    time: str
    type: EventType
    payload_json: str
    job_id: str
    attempt_id: str
    stage_id: str
    cursor: int
    def __init__(self, seq: _Optional[int] = ..., attempt: _Optional[int] = ..., time: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., payload_json: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt_id: _Optional[str] = ..., stage_id: _Optional[str] = ..., cursor: _Optional[int] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("stage_id", "round", "name", "value", "step", "time")
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    stage_id: str
    round: int
    name: str
    value: float
    step: int
    time: str
    def __init__(self, stage_id: _Optional[str] = ..., round: _Optional[int] = ..., name: _Optional[str] = ..., value: _Optional[float] = ..., step: _Optional[int] = ..., time: _Optional[str] = ...) -> None: ...
