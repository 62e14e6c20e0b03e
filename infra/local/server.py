"""The local API: uvicorn in front of the Lambda handler, speaking like API Gateway's HTTP API. Each request
becomes a payload format 2.0 event; the handler's result becomes the HTTP response.

Like Lambda, a handler instance serves one event at a time, and a request that finds every instance busy gets
a new one (up to `most_instances`), so no request waits behind another's store call. Limits are answered in
the API's JSON error shape: headers over 16 KiB (431), malformed requests (400), bodies over API Gateway's
10 MB (413), and headers or bodies that stop arriving (408 after 10 s).
"""

from __future__ import annotations

import asyncio
import base64
import queue
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from carryover.errors import ApiError, HeadersTooLarge, InvalidRequest, PayloadTooLarge, RequestTimeout

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0  # the longest wait for a request's headers, or for the next piece of its body
_STATE = re.compile(rb'"state":"(\w+)"\}$')
_CODE = re.compile(rb'"code":"(\w+)"')


@dataclass
class LocalContext:
    """The parts of Lambda's context object that the handler and Powertools read."""

    aws_request_id: str
    function_name: str = "carryover-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:carryover-local"
    log_group_name: str = "/aws/lambda/carryover-local"
    log_stream_name: str = "local"
    timeout_s: float = 15.0
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def http_api_event(method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """The event API Gateway's HTTP API sends a Lambda proxy integration for this request."""
    parts = urlsplit(target)
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if parts.query:
        event["queryStringParameters"] = dict(parse_qsl(parts.query, keep_blank_values=True))
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


class Instances:
    """Handler instances as Lambda keeps them: an idle one serves the next event, or a new one is made."""

    def __init__(self, make: Callable[[], LambdaHandler], most: int) -> None:
        self._make, self._most, self._made = make, most, 0
        self._idle: queue.LifoQueue[LambdaHandler] = queue.LifoQueue()
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        handler = self._take()
        try:
            return handler(event, LocalContext(aws_request_id=event["requestContext"]["requestId"]))
        finally:
            self._idle.put(handler)

    def _take(self) -> LambdaHandler:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                if self._made < self._most:
                    self._made += 1
                    return self._make()
            return self._idle.get()


@dataclass(frozen=True)
class Page:
    """A response the local API serves itself, such as the OpenAPI document."""

    content_type: str
    body: bytes


class _Connection(h11.Connection):
    """Remembers the protocol error it raised, so that the answer can say what it was."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.error = error
            raise


class JsonErrorProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering malformed requests and oversized headers in the API's JSON shape,
    and a request whose headers do not all arrive within `read_timeout_s` with a 408 (uvicorn waits forever)."""

    read_timeout_s = READ_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, MAX_HEADER_BYTES)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self._header_timer is not None:  # the headers are in
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.read_timeout_s, self._headers_timed_out)

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            refusal = RequestTimeout(f"request headers: not complete after {self.read_timeout_s:g} s")
            payload = refusal.body().model_dump_json().encode()
            head = (
                f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            )
            self.transport.write(head.encode() + b"connection: close\r\n\r\n" + payload)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        error: h11.RemoteProtocolError | None = getattr(self.conn, "error", None)
        if error is not None and error.error_status_hint == 431:
            refusal: ApiError = HeadersTooLarge(f"request headers: more than {MAX_HEADER_BYTES} bytes")
        else:
            refusal = InvalidRequest(f"malformed HTTP request: {error or msg}")
        payload = refusal.body().model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        self.transport.write(self.conn.send(h11.Response(status_code=refusal.status, headers=headers)) or b"")
        self.transport.write(self.conn.send(h11.Data(data=payload)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


class _Refused(Exception):
    def __init__(self, error: ApiError) -> None:
        self.error = error


class LocalApi:
    """Start with `start_background()`; `url` is then its address. Port 0 picks a free port."""

    def __init__(
        self,
        make_handler: Callable[[], LambdaHandler],
        host: str = "127.0.0.1",
        port: int = 3000,
        most_instances: int = 64,
        pages: dict[str, Page] | None = None,
        log: Callable[[str], None] | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.instances = Instances(make_handler, most_instances)
        self._read_timeout_s = read_timeout_s
        protocol = type("Protocol", (JsonErrorProtocol,), {"read_timeout_s": read_timeout_s})
        self._limiter = anyio.CapacityLimiter(most_instances)
        self._pages = pages or {}
        self._log = log
        config = uvicorn.Config(
            self, host=host, port=port, http=protocol, lifespan="off", access_log=False,
            log_level="error", timeout_keep_alive=5, backlog=2048, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> LocalApi:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(
                    f"the local API could not listen on {self._server.config.host}:{self._server.config.port}"
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, target = scope["method"], scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            headers[key] = f"{headers[key]},{value.decode('latin-1')}" if key in headers else value.decode("latin-1")
        try:
            if sum(len(name) + len(value) + 4 for name, value in scope["headers"]) > MAX_HEADER_BYTES:
                raise _Refused(HeadersTooLarge(f"request headers: more than {MAX_HEADER_BYTES} bytes"))
            page = self._pages.get(scope["path"]) if method == "GET" else None
            if page is not None:
                status, reply_headers, payload = 200, {"content-type": page.content_type}, page.body
            else:
                body = await _read_body(receive, headers, self._read_timeout_s)
                client = (scope.get("client") or ("127.0.0.1", 0))[0]
                event = http_api_event(method, target, headers, body, client)
                result = await anyio.to_thread.run_sync(self.instances.invoke, event, limiter=self._limiter)
                status, reply_headers = result["statusCode"], result.get("headers") or {}
                raw = result.get("body") or ""
                payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        except _Refused as refused:
            status, reply_headers = (
                refused.error.status,
                {"content-type": "application/json", **refused.error.headers()},
            )
            payload = refused.error.body().model_dump_json().encode()
        sent = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in reply_headers.items()
            if k.lower() != "content-length"
        ]
        if self._log is not None:
            self._log(_request_line(method, scope["path"], status, (time.perf_counter() - started) * 1000, payload))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*sent, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, headers: dict[str, str], timeout_s: float) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and int(declared) > MAX_BODY_BYTES:  # h11 has checked it is a number
        raise _Refused(PayloadTooLarge(f"request body: {declared} bytes, at most {MAX_BODY_BYTES} accepted"))
    chunks, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), timeout_s)
        except TimeoutError:
            raise _Refused(RequestTimeout(f"request body: nothing arrived for {timeout_s:g} s")) from None
        if message["type"] == "http.disconnect":
            raise _Refused(InvalidRequest("request body: the client went away"))
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            raise _Refused(PayloadTooLarge(f"request body: more than {MAX_BODY_BYTES} bytes"))
        if not message.get("more_body"):
            return b"".join(chunks)


def _request_line(method: str, path: str, status: int, milliseconds: float, payload: bytes) -> str:
    """One line a request: method, path, status, time and, for a prediction, where the state started."""
    found = _STATE.search(payload) if status == 200 else _CODE.search(payload[:200])
    detail = found.group(1).decode() if found else ""
    return f"{method} {path} {status} {milliseconds:.1f} ms {detail}".rstrip()
