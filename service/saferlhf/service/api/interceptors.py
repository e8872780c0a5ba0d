"""Server interceptors: request metrics for every RPC, and bearer-token authentication for the
JobService (RunnerService calls carry stage tokens, checked by the control plane itself; health
and reflection are open so probes and grpcurl work).

Metric names come from saferlhf.service.metrics_catalog: saferlhf_grpc_requests_total{method,code}
and
saferlhf_grpc_request_duration_seconds{method}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from saferlhf.service.api.errors import to_grpc_status
from saferlhf.service.auth import TokenAuth
from saferlhf.service.errors import ServiceError
from saferlhf.service.metrics_catalog import BY_NAME

log = logging.getLogger(__name__)

AUTHENTICATED_PREFIX = "/saferlhf.v1.JobService/"
_REQUESTS = "saferlhf_grpc_requests_total"
_DURATION = "saferlhf_grpc_request_duration_seconds"


def _collector(registry: CollectorRegistry, cls: type, name: str) -> Any:
    """The registry's collector of that name, created from the catalog if absent
    (saferlhf.service.metrics
    may already have created it in the same registry)."""
    existing = getattr(registry, "_names_to_collectors", {}).get(name)
    if existing is not None:
        return existing
    d = BY_NAME[name]
    return cls(name, d.help, list(d.labels), registry=registry)


def _method_label(full_method: str) -> str:
    return full_method.lstrip("/")


def _code_name(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code() if hasattr(context, "code") else None
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class ServerInterceptor(grpc.ServerInterceptor):
    def __init__(self, auth: TokenAuth, registry: CollectorRegistry) -> None:
        self._auth = auth
        self._requests = _collector(registry, Counter, _REQUESTS)
        self._duration = _collector(registry, Histogram, _DURATION)

    def intercept_service(
        self, continuation: Callable[[Any], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        authenticate = self._auth.enabled and method.startswith(AUTHENTICATED_PREFIX)
        metadata = handler_call_details.invocation_metadata
        return _wrap(handler, lambda behavior, streaming: self._observe(
            behavior, streaming, _method_label(method), metadata if authenticate else None))

    def _observe(self, behavior: Callable, streaming: bool, method: str,
                 metadata: Any) -> Callable:
        def record(context: grpc.ServicerContext, started: float, failed: bool) -> None:
            self._requests.labels(method=method, code=_code_name(context, failed)).inc()
            self._duration.labels(method=method).observe(time.perf_counter() - started)

        def check(context: grpc.ServicerContext) -> None:
            if metadata is not None:
                try:
                    self._auth.authenticate(metadata)
                except ServiceError as err:
                    context.abort_with_status(to_grpc_status(err))

        if streaming:
            def stream(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator:
                started, failed = time.perf_counter(), True
                try:
                    check(context)
                    yield from behavior(request_or_iterator, context)
                    failed = False
                finally:
                    record(context, started, failed)
            return stream

        def unary(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                check(context)
                response = behavior(request_or_iterator, context)
                failed = False
                return response
            finally:
                record(context, started, failed)
        return unary


def _wrap(handler: grpc.RpcMethodHandler,
          wrap: Callable[[Callable, bool], Callable]) -> grpc.RpcMethodHandler:
    common = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **common)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **common)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **common)
