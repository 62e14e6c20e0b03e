"""TRACING: off, the X-Ray SDK is never imported; on, Powertools Tracer records each invocation and its
DynamoDB calls. Each case is a fresh process, as a cold start is; a UDP socket on loopback stands in for the
X-Ray daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from carryover.store.dynamodb import dynamodb_client
from infra.table import ensure_table
from tests.dynamodb_server import DynamoDBServer

ROOT = Path(__file__).resolve().parents[2]
INVOKE = """
import json, sys
import app
from infra.local.server import LocalContext
result = app.lambda_handler(json.load(open(sys.argv[1])), LocalContext("tracing-test"))
print(json.dumps({"status": result["statusCode"], "xray": [m for m in sys.modules if m.startswith("aws_xray_sdk")]}))
"""
TRACE_ID = "Root=1-6745a3b0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture(scope="module")
def endpoint():
    server = DynamoDBServer().start()
    ensure_table(dynamodb_client(server.endpoint), "traced")
    yield server.endpoint
    server.stop()


def cold_start(served, endpoint: str, **environ: str) -> dict:
    env = (
        os.environ
        | environ
        | {
            "TABLE_NAME": "traced",
            "MODEL_BUNDLE": str(served["seed"].path),
            "DYNAMODB_ENDPOINT": endpoint,
            "PYTHONPATH": f"{ROOT / 'handler'}{os.pathsep}{ROOT}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", INVOKE, str(ROOT / "events" / "predict.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tracing_off_never_imports_the_xray_sdk(served, endpoint):
    found = cold_start(served, endpoint)
    assert found == {"status": 200, "xray": []}


def test_tracing_on_records_the_invocation_and_its_dynamodb_calls(served, endpoint):
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    found = cold_start(
        served,
        endpoint,
        TRACING="true",
        LAMBDA_TASK_ROOT=str(ROOT / "handler"),
        _X_AMZN_TRACE_ID=TRACE_ID,
        AWS_LAMBDA_FUNCTION_NAME="carryover-test",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
    )
    assert found["status"] == 200 and "aws_xray_sdk.core" in found["xray"]
    segments = []
    try:
        while True:
            _, body = daemon.recv(65536).decode().split("\n", 1)
            segments.append(json.loads(body))
    except TimeoutError:
        pass
    finally:
        daemon.close()
    assert {segment["trace_id"] for segment in segments} == {TRACE_ID.split(";")[0].removeprefix("Root=")}
    names = [segment["name"] for segment in segments]
    assert "## handler" in names
    operations = [s.get("aws", {}).get("operation") for s in segments if s["name"] == "dynamodb"]
    assert operations == ["GetItem", "PutItem"]
    assert "main_output" not in json.dumps(segments)  # traces hold no outputs, as logs hold none
