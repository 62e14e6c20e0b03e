"""A local HTTP server that speaks like API Gateway's HTTP API: each request becomes a payload format 2.0
event for the Lambda handler, and the handler's result becomes the HTTP response.

Like Lambda, each handler instance serves one event at a time; concurrent requests go to a pool of
instances, so requests run in parallel exactly as they would across Lambda instances.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


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


class _Pool:
    def __init__(self, handlers: Sequence[LambdaHandler]) -> None:
        self._idle: queue.Queue[LambdaHandler] = queue.Queue()
        for handler in handlers:
            self._idle.put(handler)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        handler = self._idle.get()
        try:
            return handler(event, LocalContext(aws_request_id=event["requestContext"]["requestId"]))
        finally:
            self._idle.put(handler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApi
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(
                413, {"content-type": "application/json"}, json.dumps({"message": "Request Entity Too Large"}).encode()
            )
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        event = http_api_event(self.command, self.path, headers, self.rfile.read(length), self.client_address[0])
        result = self.server.pool.invoke(event)
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        self._reply(result["statusCode"], result.get("headers") or {}, payload)

    def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class LocalApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, handlers: Sequence[LambdaHandler], host: str = "127.0.0.1", port: int = 3000, verbose: bool = True
    ) -> None:
        super().__init__((host, port), _RequestHandler)
        self.pool = _Pool(handlers)
        self.verbose = verbose

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="local-api", daemon=True)
        thread.start()
        return thread
