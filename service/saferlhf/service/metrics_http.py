"""The /metrics HTTP endpoint: prometheus_client's threaded WSGI server and content negotiation,
with the per-job training families rendered by `TrainingSeries.exposition` (pre-built lines)
rather than sample by sample — see `saferlhf.service.metrics_series` for why."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder, gzip_accepted
from prometheus_client.registry import Collector
from saferlhf.service.metrics_series import TrainingSeries


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Scrapes every few seconds would flood stderr."""


def metrics_app(registry: Collector, training: TrainingSeries | None) -> Callable[..., Any]:
    """A WSGI app serving `registry` like prometheus_client's `make_wsgi_app` (text or
    OpenMetrics by Accept, gzip by Accept-Encoding, `name[]` filters), fast for `training`."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET")])
            return [b"Only GET is allowed.\n"]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if "name[]" in params or training is None:
            target = (registry.restricted_registry(params["name[]"])  # type: ignore[attr-defined]
                      if "name[]" in params else registry)
            body = encoder(target)
        else:
            openmetrics = content_type.startswith("application/openmetrics")
            body = training.exposition(registry, encoder, openmetrics=openmetrics)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


def serve(registry: Collector, address: str,
          training: TrainingSeries | None = None) -> tuple[Any, threading.Thread]:
    """Serve at http://<address>/metrics; returns (server, thread). Port 0 picks one: read it
    from `server.server_port`. Stop with `server.shutdown()`."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family, _, _, _, sockaddr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(str(sockaddr[0]), int(port), metrics_app(registry, training), Server,
                        handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return httpd, thread
