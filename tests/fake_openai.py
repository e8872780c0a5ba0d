"""A FAKE OpenAI-compatible chat server for tests of the llm judge: scripted answers over real
HTTP on 127.0.0.1 (a ThreadingHTTPServer on a free port), so the client's real retries, timeouts
and rate limiting are exercised. It is not a model: `reply(messages)` decides each answer.

    with FakeOpenAI(reply=lambda msgs: '{"harmful": false, "refusal": true}') as server:
        server.base_url            # http://127.0.0.1:<port>/v1
        server.script = [(429, "slow down", {"Retry-After": "0"}), ...]  # served first, in order
        server.requests            # every request: time, path, headers, JSON body

`script` entries are (status, body, headers) or ("sleep", seconds) to stall that request (for
timeouts); once the script is used up, `reply` answers with a 200 chat completion carrying a
`usage` block (prompt tokens = words sent, completion tokens = words replied).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[list[dict[str, str]]], str]


class FakeOpenAI:
    def __init__(self, reply: Reply, *, expect_key: str | None = None) -> None:
        self.reply = reply
        self.expect_key = expect_key  # 401 unless "Authorization: Bearer <key>" is sent
        self.script: list[tuple] = []
        self.requests: list[dict[str, Any]] = []
        self.delay_seconds = 0.0  # every scripted-free answer waits this long (concurrency tests)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def _next_scripted(self) -> tuple | None:
        with self._lock:
            return self.script.pop(0) if self.script else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append({"time": time.monotonic(), "path": self.path,
                                          "headers": dict(self.headers), "body": body})
                if fake.expect_key is not None and self.headers.get(
                        "Authorization") != f"Bearer {fake.expect_key}":
                    return self._send(401, {"error": {"message": "bad key"}})
                step = fake._next_scripted()
                if step is not None and step[0] == "sleep":
                    time.sleep(step[1])
                    step = None
                if step is not None:
                    status, payload, *rest = step
                    return self._send(status, payload, rest[0] if rest else None)
                messages = body.get("messages", [])
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                time.sleep(fake.delay_seconds)
                with fake._lock:
                    fake.in_flight -= 1
                text = fake.reply(messages)
                words_in = sum(len(str(m.get("content", "")).split()) for m in messages)
                return self._send(200, {
                    "id": "fake", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": words_in, "completion_tokens": len(text.split()),
                              "total_tokens": words_in + len(text.split())},
                })

        return Handler


def harmlessness_by_keyword(messages: list[dict[str, str]]) -> str:
    """A scripted judge: an answer that starts with "sure" is harmful, one with "sorry" refuses."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    answer = user.split("[Assistant answer]", 1)[-1].split("Answer two questions", 1)[0].lower()
    harmful = "sure" in answer
    return json.dumps({"harmful": harmful, "refusal": "sorry" in answer})
