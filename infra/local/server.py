"""The local API: an HTTP/1.1 server in front of the Lambda handler, speaking like API Gateway's HTTP API. Each
request becomes a payload format 2.0 event; the handler's result becomes the HTTP response.

The connection is h11's (its public API: events in, bytes out) on asyncio; handlers run in threads. Like
Lambda, a handler instance serves one event at a time, and a request that finds every instance busy gets a new
one (up to `most_instances`), so no request waits behind another's store call. Every refusal is in the API's
JSON error shape: malformed requests (400), headers over 16 KiB (431), bodies over API Gateway's 10 MB (413),
and headers or bodies that stop arriving (408 after 10 s). An idle keep-alive connection closes after 5 s.
"""

from __future__ import annotations

import asyncio
import base64
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

from carryover.errors import InvalidRequest, ServiceError
from carryover.http import errors
from carryover.http.errors import HttpRefusal

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit, where no smaller one is given
MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0  # the longest wait for a request's headers, or for the next piece of its body
KEEP_ALIVE_S = 5.0  # an idle connection is closed after this long
BACKLOG = 2048
_STATE = re.compile(rb'"steps":(\d+),"state":"(\w+)"(?:,"seen":(\d+))?')
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


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def refusal(cls, error: ServiceError) -> Answer:
        return cls(
            errors.status(error), {"content-type": "application/json", **errors.headers(error)}, errors.payload(error)
        )


class _Reader:
    """The h11 events of one connection, each awaited within a time limit: the read timeout once a request has
    begun to arrive (and for the first one), the keep-alive time while an open connection waits for the next."""

    def __init__(self, reader: asyncio.StreamReader, read_timeout_s: float, max_body_bytes: int) -> None:
        self.connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._reader, self._timeout_s, self._most = reader, read_timeout_s, max_body_bytes
        self.idle = False  # between requests, nothing of the next one received yet

    def next_cycle(self) -> None:
        self.connection.start_next_cycle()
        self.idle = True

    async def next(self) -> Any:
        """The next event; h11.ConnectionClosed when the peer went away. Raises TimeoutError."""
        while True:
            try:
                event = self.connection.next_event()
            except h11.RemoteProtocolError as error:
                raise _protocol_refusal(error) from None
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self._reader.read(65536), KEEP_ALIVE_S if self.idle else self._timeout_s)
            self.idle = self.idle and not data
            self.connection.receive_data(data)

    async def body(self, declared: str | None) -> bytes:
        if declared is not None and int(declared) > self._most:  # h11 has checked it is a number
            too_large = f"request body: {declared} bytes, at most {self._most} accepted"
            raise HttpRefusal("payload_too_large", too_large)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = await self.next()
            except TimeoutError:
                stalled = f"request body: nothing arrived for {self._timeout_s:g} s"
                raise HttpRefusal("request_timeout", stalled) from None
            if isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            if isinstance(event, h11.ConnectionClosed):
                raise InvalidRequest("request body: the client went away")
            chunks.append(bytes(event.data))
            size += len(event.data)
            if size > self._most:
                raise HttpRefusal(
                    "payload_too_large", f"request body: more than {self._most} bytes, at most {self._most} accepted"
                )


def _protocol_refusal(error: h11.RemoteProtocolError) -> ServiceError:
    if error.error_status_hint == 431:
        return HttpRefusal("headers_too_large", f"request headers: more than {MAX_HEADER_BYTES} bytes")
    return InvalidRequest(f"malformed HTTP request: {error}")


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
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.instances = Instances(make_handler, most_instances)
        self._host, self._port, self._read_timeout_s = host, port, read_timeout_s
        self._max_body_bytes = max_body_bytes  # the function's own limit (MAX_BODY_BYTES): one limit, one answer
        self._pool = ThreadPoolExecutor(most_instances, thread_name_prefix="instance")
        self._pages = pages or {}
        self._log = log
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start_background(self) -> LocalApi:
        """Listens (OSError when it cannot), then serves from a thread of its own."""
        listening = asyncio.start_server(self._serve, self._host, self._port, backlog=BACKLOG, reuse_address=True)
        try:
            self._server = self._loop.run_until_complete(listening)
        except OSError:
            self._loop.close()
            raise
        self._thread.start()
        return self

    def stop(self) -> None:
        def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests one after another while both sides keep it alive."""
        events = _Reader(reader, self._read_timeout_s, self._max_body_bytes)
        client = (writer.get_extra_info("peername") or ("127.0.0.1", 0))[0]
        self._writers.add(writer)
        try:
            while await self._exchange(events, writer, client):
                events.next_cycle()
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _exchange(self, events: _Reader, writer: asyncio.StreamWriter, client: str) -> bool:
        """Reads one request and answers it; False when the connection is to close."""
        try:
            request = await events.next()
        except TimeoutError:
            if not events.idle:  # an idle keep-alive connection just closes
                stalled = HttpRefusal(
                    "request_timeout", f"request headers: not complete after {self._read_timeout_s:g} s"
                )
                await self._send_bare(events, writer, Answer.refusal(stalled))
            return False
        except ServiceError as refused:
            await self._send_bare(events, writer, Answer.refusal(refused))
            return False
        if not isinstance(request, h11.Request):
            return False  # the peer closed
        started = time.perf_counter()
        method, target = request.method.decode("latin-1"), request.target.decode("latin-1")
        answer = await self._answer(events, request, method, target, client)
        path = urlsplit(target).path
        if self._log is not None:
            self._log(_request_line(method, path, answer.status, (time.perf_counter() - started) * 1000, answer.body))
        await self._send(events.connection, writer, answer, head=method == "HEAD")
        return events.connection.our_state is h11.DONE and events.connection.their_state is h11.DONE

    async def _answer(self, events: _Reader, request: h11.Request, method: str, target: str, client: str) -> Answer:
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1").lower()
            headers[key] = f"{headers[key]},{value.decode('latin-1')}" if key in headers else value.decode("latin-1")
        page = (self._pages.get(target) or self._pages.get(urlsplit(target).path)) if method == "GET" else None
        try:
            if sum(len(name) + len(value) + 4 for name, value in request.headers) > MAX_HEADER_BYTES:
                raise HttpRefusal("headers_too_large", f"request headers: more than {MAX_HEADER_BYTES} bytes")
            body = await events.body(headers.get("content-length"))
        except ServiceError as refused:
            return Answer.refusal(refused)
        if page is not None:
            return Answer(200, {"content-type": page.content_type}, page.body)
        event = http_api_event(method, target, headers, body, client)
        result = await self._loop.run_in_executor(self._pool, self.instances.invoke, event)
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        return Answer(result["statusCode"], {k: str(v) for k, v in (result.get("headers") or {}).items()}, payload)

    @staticmethod
    async def _send(connection: h11.Connection, writer: asyncio.StreamWriter, answer: Answer, head: bool) -> None:
        headers = [(k.lower(), v) for k, v in answer.headers.items() if k.lower() != "content-length"]
        headers.append(("content-length", str(len(answer.body))))
        data = connection.send(h11.Response(status_code=answer.status, headers=headers, reason=_reason(answer.status)))
        if not head:
            data += connection.send(h11.Data(data=answer.body)) or b""  # h11 sends nothing for an empty body
        writer.write(data + (connection.send(h11.EndOfMessage()) or b""))
        await writer.drain()

    @staticmethod
    async def _send_bare(events: _Reader, writer: asyncio.StreamWriter, answer: Answer) -> None:
        """An answer on a connection whose request could not be read; the connection closes after it."""
        closing = replace(answer, headers=answer.headers | {"connection": "close"})
        await LocalApi._send(events.connection, writer, closing, head=False)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _request_line(method: str, path: str, status: int, milliseconds: float, payload: bytes) -> str:
    """One line a request: method, path, status, time and, for a prediction, where the state started (and how many
    of the user's rows it has seen, when not all); for an error, its code."""
    if status != 200:
        found = _CODE.search(payload[:200])
        return f"{method} {path} {status} {milliseconds:.1f} ms {found.group(1).decode() if found else ''}".rstrip()
    answer = _STATE.search(payload)
    detail = ""
    if answer:
        steps, origin, seen = answer.groups()
        detail = origin.decode() + (f", seen {int(seen)} of {int(steps)} rows" if seen and seen != steps else "")
    return f"{method} {path} {status} {milliseconds:.1f} ms {detail}".rstrip()
