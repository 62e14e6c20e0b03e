"""The local API's HTTP server: limits answered in the JSON error shape, many clients at once, no request
waiting behind another's store call, one log line a request, and an embedded store kept on disk."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest

from infra.local.server import LocalApi
from infra.local.stack import StackError, start_stack
from tests.clients import HttpClient
from tests.dynamodb_server import DynamoDBServer
from tests.faults import local_api

ROW = [0.5] * 8


@pytest.fixture(scope="module")
def stack(served):
    lines: list[str] = []
    running = start_stack(served["seed"].path, port=0, log=lines.append)
    running.lines = lines  # type: ignore[attr-defined]
    yield running
    running.stop()


def raw(url: str, data: bytes, read_timeout: float = 30) -> tuple[int, dict]:
    """Sends bytes as they are and reads the JSON answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=read_timeout) as connection:
        connection.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"POST /users/a/predict HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n", 400, "invalid_request"),
        (b"POST /users/a/predict HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n", 400, "invalid_request"),
        (b"GET /model HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"POST /users/a/predict HTTP/1.1\r\nhost: x\r\ncontent-length: 20000000\r\n\r\n{", 413, "payload_too_large"),
        (b"HEAD /model HTTP/1.1\r\nhost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"OPTIONS /users/a/state HTTP/1.1\r\nhost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"BREW /model HTTP/1.1\r\nhost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n", 404, "not_found"),
    ],
    ids=[
        "content-length abc",
        "content-length -5",
        "headers 20 KB",
        "body 20 MB",
        "HEAD",
        "OPTIONS",
        "BREW",
        "no route",
    ],
)
def test_limits_and_odd_requests_get_the_json_error_shape(stack, request_bytes, status, code):
    if request_bytes.startswith(b"HEAD"):  # a HEAD answer has no body: read the status line and headers only
        connection = http.client.HTTPConnection(urlsplit(stack.api.url).netloc, timeout=30)
        connection.request("HEAD", "/model")
        response = connection.getresponse()
        assert (response.status, response.getheader("allow"), response.getheader("content-type")) == (
            405,
            "GET",
            "application/json",
        )
        return
    answered, body = raw(stack.api.url, request_bytes)
    assert answered == status and body["error"]["code"] == code and body["error"]["message"]


@pytest.mark.parametrize("declared", [50_000_000, 5_700_000, 1_048_577])
def test_one_body_limit_whatever_the_size(stack, declared):
    """The function's MAX_BODY_BYTES (1 MiB by default) is the one limit: the server in front says the same."""
    head = f"POST /users/a/predict HTTP/1.1\r\nhost: x\r\ncontent-length: {declared}\r\n\r\n{{".encode()
    status, body = raw(stack.api.url, head)
    assert status == 413 and body["error"]["message"] == f"request body: {declared} bytes, at most 1048576 accepted"


def test_wrong_method_is_405_naming_the_allowed_ones(stack):
    reply = HttpClient(stack.api.url).request("PUT", "/users/alice/state")
    assert reply.status == 405 and reply.headers["allow"] == "GET, DELETE"
    assert reply.body["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "partial",
    [
        b'POST /users/a/predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"in',
        b"GET /model HTTP/1.1\r\nhost: x\r\n",
        b"",
    ],
    ids=["body stops", "headers stop", "nothing sent"],
)
def test_a_request_that_stops_arriving_is_408(partial):
    api = LocalApi(lambda: None, port=0, read_timeout_s=0.3).start_background()  # type: ignore[arg-type,return-value]
    try:
        status, body = raw(api.url, partial, read_timeout=10)
    finally:
        api.stop()
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_sixty_four_clients_at_once_all_answered(stack):
    """64 connections opened together, each sending a prediction: every one is answered, none reset."""
    client, replies, errors = HttpClient(stack.api.url), [], []
    start = threading.Barrier(64)

    def send(index: int) -> None:
        start.wait()
        try:
            replies.append(client.predict(f"crowd-{index}", [ROW]).status)
        except OSError as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and replies == [200] * 64


def test_no_route_waits_behind_a_hung_store(served):
    """Eight predictions hang in the store; GET /model and a ninth user's GET still answer meanwhile."""
    with local_api(served["seed"].path, served["seed"].bundles["litert"], "hung") as (url, client):
        check_no_route_waits(url, client)


def check_no_route_waits(url: str, client) -> None:
    hung, release = threading.Semaphore(0), threading.Event()

    def hang_predictions(params, **_):
        if params["Key"]["user_id"]["S"].startswith("hung-"):
            hung.release()
            release.wait(60)

    client.meta.events.register("provide-client-params.dynamodb.GetItem", hang_predictions)
    http = HttpClient(url)
    threads = [threading.Thread(target=http.predict, args=(f"hung-{i}", [ROW])) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for _ in threads:
            assert hung.acquire(timeout=60)  # all eight are inside their store call now
        assert http.model().status == 200
        assert http.state("someone-else").status == 404
    finally:
        release.set()
        for thread in threads:
            thread.join()


def test_one_line_a_request(stack):
    client = HttpClient(stack.api.url)
    client.predict("liner", [ROW])
    client.predict("liner", [ROW[:3]])
    client.model()
    lines = stack.lines[-3:]
    assert lines[0].startswith("POST /users/liner/predict 200 ") and lines[0].endswith(" ms new")
    assert lines[1].startswith("POST /users/liner/predict 400 ") and lines[1].endswith(" ms invalid_request")
    assert lines[2].startswith("GET /model 200 ")
    assert all("\n" not in line and len(line) < 100 for line in lines)


def test_openapi_and_docs_are_served(stack, served):
    client = HttpClient(stack.api.url)
    document = client.request("GET", "/openapi.json").body
    assert document["openapi"].startswith("3.1")
    row = document["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]["items"]
    assert row["minItems"] == row["maxItems"] == served["seed"].manifest.input.features
    page = urlsplit(stack.api.url)
    connection = http.client.HTTPConnection(page.netloc, timeout=30)
    connection.request("GET", "/docs")
    response = connection.getresponse()
    assert response.status == 200 and b"swagger-ui" in response.read()
    as_json = client.request("GET", "/docs?format=json")
    assert as_json.headers["content-type"] == "application/json" and as_json.body == document


def test_embedded_store_keeps_state_across_restarts(served, tmp_path):
    state = tmp_path / "state.sqlite3"
    first = start_stack(served["seed"].path, port=0, state_file=state)
    try:
        assert HttpClient(first.api.url).predict("kept", [ROW, ROW]).body["steps"] == 2
    finally:
        first.stop()
    again = start_stack(served["seed"].path, port=0, state_file=state)
    try:
        assert again.state_file == state
        reply = HttpClient(again.api.url).predict("kept", [ROW])
        assert reply.body["state"] == "continued" and reply.body["steps"] == 3
    finally:
        again.stop()


def test_unreachable_endpoint_is_one_line(served):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(StackError) as raised:
        start_stack(served["seed"].path, port=0, dynamodb_endpoint=f"http://127.0.0.1:{port}")
    message = str(raised.value)
    assert "\n" not in message and "cannot reach DYNAMODB_ENDPOINT" in message and "unset DYNAMODB_ENDPOINT" in message


def test_endpoint_without_credentials_is_one_line(served, monkeypatch, tmp_path):
    store = DynamoDBServer().start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    try:
        with pytest.raises(StackError) as raised:
            start_stack(served["seed"].path, port=0, dynamodb_endpoint=store.endpoint)
    finally:
        store.stop()
    message = str(raised.value)
    assert "\n" not in message and "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
