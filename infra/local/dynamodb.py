"""An embedded DynamoDB: moto's server over HTTP on loopback, one request at a time, optionally kept on disk.

moto evaluates a condition and applies the write as two steps with no lock between them; DynamoDB does
both atomically. Serialising requests restores that guarantee, so concurrency tests exercise the real
semantics the service relies on.

With a journal file, every request that changed something and succeeded is appended to it (flushed before
the answer is sent), and a new start replays it, so the state survives restarts. The replayed journal is
then compacted: each table's definition (from DescribeTable), its TTL, then one PutItem per item.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.test import Client

PREFIX = "DynamoDB_20120810."
DEFINITIONS = {"CreateTable", "UpdateTable", "DeleteTable", "UpdateTimeToLive"}
DATA = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
KEPT_HEADERS = ("x-amz-target", "authorization", "content-type")  # moto takes the region from authorization
WsgiApp = Callable[..., Iterable[bytes]]


class _Serialised:
    """One request at a time; with a journal, successful changes are written down before they are answered."""

    def __init__(self, app: WsgiApp, journal: Path | None) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._journal = journal.open("a", encoding="utf-8") if journal else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            if self._journal is None:
                return list(self._app(environ, start_response))
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = _Input(body)
            status: list[str] = []

            def recording(status_line: str, headers: list[Any], *args: Any) -> Any:
                status.append(status_line)
                return start_response(status_line, headers, *args)

            answer = list(self._app(environ, recording))
            operation = environ.get("HTTP_X_AMZ_TARGET", "").removeprefix(PREFIX)
            if status and status[0].startswith("200") and operation in DEFINITIONS | DATA:
                headers = {name: environ.get("HTTP_" + name.upper().replace("-", "_"), "") for name in KEPT_HEADERS}
                headers["content-type"] = environ.get("CONTENT_TYPE", "")
                self._journal.write(json.dumps({"headers": headers, "body": body.decode()}) + "\n")
                self._journal.flush()
                os.fsync(self._journal.fileno())
            return answer


class _Input:
    def __init__(self, body: bytes) -> None:
        self._body, self._read = body, False

    def read(self, size: int = -1) -> bytes:
        if self._read:
            return b""
        self._read = True
        return self._body


def _headers(target: str, authorization: str) -> dict[str, str]:
    return {
        "x-amz-target": PREFIX + target,
        "content-type": "application/x-amz-json-1.0",
        "authorization": authorization,
    }


def _region(authorization: str) -> str:
    """The region in a SigV4 Authorization header's credential scope (KEY/DATE/REGION/SERVICE/aws4_request)."""
    scope = authorization.partition("Credential=")[2].split(",")[0].split("/")
    return scope[2] if len(scope) > 2 else ""


def _request(client: Client, target: str, payload: dict[str, Any], authorization: str) -> dict[str, Any]:
    response = client.post("/", data=json.dumps(payload), headers=_headers(target, authorization))
    answer: dict[str, Any] = json.loads(response.get_data() or b"{}")
    return answer


def _replay_and_compact(app: WsgiApp, journal: Path) -> int:
    """Applies the journal to a fresh moto, then rewrites it as each table's definition and items; returns the
    number of items."""
    client = Client(app)
    regions: dict[str, str] = {}  # region -> an Authorization header that names it
    for line in journal.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        client.post("/", data=entry["body"], headers=entry["headers"])
        regions.setdefault(_region(entry["headers"]["authorization"]), entry["headers"]["authorization"])
    entries, items = [], 0
    for authorization in regions.values():
        for table in _request(client, "ListTables", {}, authorization).get("TableNames", []):
            for target, payload in _table_contents(client, table, authorization):
                entries.append({"headers": _headers(target, authorization), "body": json.dumps(payload)})
                items += target == "PutItem"
    compacted = journal.with_suffix(".compacting")
    with compacted.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(entry) + "\n" for entry in entries)
        out.flush()
        os.fsync(out.fileno())
    compacted.replace(journal)
    return items


def _table_contents(client: Client, table: str, authorization: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The requests that make `table` again: its definition, its TTL, and one PutItem per item."""
    described = _request(client, "DescribeTable", {"TableName": table}, authorization)["Table"]
    definition = {key: described[key] for key in ("TableName", "KeySchema", "AttributeDefinitions")}
    if described.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST":
        definition["BillingMode"] = "PAY_PER_REQUEST"
    else:
        throughput = described["ProvisionedThroughput"]
        definition["ProvisionedThroughput"] = {
            key: throughput[key] for key in ("ReadCapacityUnits", "WriteCapacityUnits")
        }
    yield "CreateTable", definition
    ttl = _request(client, "DescribeTimeToLive", {"TableName": table}, authorization).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") == "ENABLED":
        yield (
            "UpdateTimeToLive",
            {"TableName": table, "TimeToLiveSpecification": {"AttributeName": ttl["AttributeName"], "Enabled": True}},
        )
    page: dict[str, Any] = {"TableName": table}
    while True:
        found = _request(client, "Scan", page, authorization)
        for item in found.get("Items", []):
            yield "PutItem", {"TableName": table, "Item": item}
        if "LastEvaluatedKey" not in found:
            return
        page["ExclusiveStartKey"] = found["LastEvaluatedKey"]


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class EmbeddedDynamoDB:
    """Start with `start()`; `endpoint` is then its URL. Port 0 picks a free port. With `journal`, what it
    holds is kept in that file across restarts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, journal: Path | None = None) -> None:
        backend = DomainDispatcherApplication(create_backend_app)
        self.restored_items = 0
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            if journal.exists():
                self.restored_items = _replay_and_compact(backend, journal)
        app = _Serialised(backend, journal)
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmbeddedDynamoDB:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
