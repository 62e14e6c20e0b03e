"""A DynamoDB server over HTTP for the tests and the benchmark: moto's server on loopback, one request at a time.

moto evaluates a condition and applies the write as two steps with no lock between them; DynamoDB does both
atomically. Serialising requests restores that guarantee, so concurrency tests exercise the real semantics
the service relies on.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

WsgiApp = Callable[..., Iterable[bytes]]
# moto takes any credentials and region; botocore needs some to sign with
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


class _Serialised:
    """One request at a time."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class DynamoDBServer:
    """Start with `start()`; `endpoint` is then its URL. Port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = _Serialised(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DynamoDBServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


class DynamoDBProcess:
    """The same server in a process of its own, as DynamoDB is to a function: its work never holds the measuring
    process's GIL. Start with `start()`; `endpoint` is then its URL."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def start(self) -> DynamoDBProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.dynamodb_server"], stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        assert self._process.stdout is not None
        self.endpoint = self._process.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            raise RuntimeError(f"the DynamoDB server did not start: exit {self._process.wait()}")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(30)


if __name__ == "__main__":
    server = DynamoDBServer().start()
    print(server.endpoint, flush=True)
    threading.Event().wait()
