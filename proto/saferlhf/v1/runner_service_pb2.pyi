from saferlhf.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportEventsRequest(_message.Message):
    __slots__ = ("attempt_id", "events")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Event]
    def __init__(self, attempt_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_resources_pb2.Event, _Mapping]]] = ...) -> None: ...

class ReportEventsResponse(_message.Message):
    __slots__ = ("stored", "received")
    STORED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    received: int
    def __init__(self, stored: _Optional[int] = ..., received: _Optional[int] = ...) -> None: ...
