"""template.yaml: valid for SAM, and the single definition of the state table."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from carryover.http.openapi import render
from carryover.store.codec import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from carryover.store.dynamodb import dynamodb_client
from infra.table import TEMPLATE, ensure_table, table_properties
from tests.dynamodb_server import DynamoDBServer
from tests.faults import error_response

SAM = Path(sys.executable).parent / "sam"


def test_sam_validate_lint_passes(template_file):
    env = os.environ | {"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template", str(template_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_table_keys_and_ttl_are_the_ones_the_store_uses():
    properties = table_properties()
    keys = {entry["KeyType"]: entry["AttributeName"] for entry in properties["KeySchema"]}
    assert keys == {"HASH": PARTITION_KEY, "RANGE": SORT_KEY}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"


def test_created_table_matches_the_template():
    with mock_aws():
        client = boto3.client("dynamodb")
        ensure_table(client, "from-template")
        ensure_table(client, "from-template")  # a second call finds it and leaves it be
        table = client.describe_table(TableName="from-template")["Table"]
        ttl = client.describe_time_to_live(TableName="from-template")["TimeToLiveDescription"]
    assert table["KeySchema"] == table_properties()["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)


def _unzipped_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def test_sam_build_fits_lambda_with_room_to_spare(tmp_path, served):
    """`sam build` without Docker: function + layers unzipped stay under 150 MB, with no TensorFlow nor Keras 2."""
    env = os.environ | {
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"{SAM.parent}{os.pathsep}{os.environ['PATH']}",
        "MODEL_BUNDLE_DIR": str(served["seed"].path),
    }
    result = subprocess.run(
        [str(SAM), "build", "--template", str(TEMPLATE), "--build-dir", str(tmp_path / "build")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=TEMPLATE.parent,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    parts = {
        name: _unzipped_mb(tmp_path / "build" / name) for name in ("PredictFunction", "RuntimeLayer", "ModelLayer")
    }
    assert sum(parts.values()) <= 150, parts
    site = tmp_path / "build" / "RuntimeLayer" / "python"
    assert (
        (site / "ai_edge_litert").is_dir() and not (site / "tensorflow").exists() and not (site / "botocore").exists()
    )
    assert not (site / "tf_keras").exists()  # Keras 2 reads old files at export only
    assert list(site.glob("numpy/_core/_multiarray_umath.cpython-313-aarch64-linux-gnu.so"))
    assert sorted(p.name for p in (tmp_path / "build" / "ModelLayer" / "model").iterdir()) == [
        "manifest.json",
        "step.tflite",
    ]
    assert (tmp_path / "build" / "PredictFunction" / "app.py").is_file()
    assert not (tmp_path / "build" / "PredictFunction" / "carryover" / "keras_model").exists()
    check_bytecode_is_for_the_runtime(site)


def python313() -> str | None:
    found = sorted(Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))
    return str(found[0]) if found else shutil.which("python3.13")


def check_bytecode_is_for_the_runtime(site: Path) -> None:
    """Every module of the runtime layer has bytecode of Lambda's Python (3.13: its magic number), which needs no
    source check: /opt is read-only, so without it each cold start would compile every import."""
    interpreter = python313()
    if interpreter is None:
        return  # the build said in one line how to get it; nothing to check here
    magic = subprocess.run(
        [interpreter, "-c", "import importlib.util, sys; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    sources = list(site.rglob("*.py"))
    compiled = [source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc" for source in sources]
    missing = [str(path) for path in compiled if not path.is_file()]
    assert len(sources) > 500 and missing == [], missing[:5]
    headers = {path.read_bytes()[:8] for path in compiled}
    assert headers == {magic + (1).to_bytes(4, "little")}, headers  # flags 1: hash-based, unchecked


def test_litert_serving_never_imports_tensorflow(served):
    """What the zip deployment runs: load a bundle with the LiteRT engine and predict, with no TensorFlow."""
    code = (
        "import sys, numpy as np\n"
        "from carryover.bundle import ModelBundle\n"
        f"bundle = ModelBundle.load(__import__('pathlib').Path({str(served['seed'].path)!r}))\n"
        "bundle.engine.run(np.zeros((3, 8), np.float32), bundle.manifest.zero_state())\n"
        "assert bundle.engine.name == 'litert'\n"
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras'))], 'TensorFlow was imported'\n"
    )
    env = os.environ | {"PYTHONPATH": str(TEMPLATE.parent / "handler")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def endpoint_without_ttl():
    """A DynamoDB over HTTP that answers UpdateTimeToLive as emulators without it do."""
    server = DynamoDBServer().start()
    client = dynamodb_client(server.endpoint)
    refused = []

    def unknown_operation(request, **kwargs):
        refused.append(1)
        return error_response(400, "UnknownOperationException")(request, **kwargs)

    client.meta.events.register_first("before-send.dynamodb.UpdateTimeToLive", unknown_operation)
    yield client, refused
    server.stop()


def test_endpoint_that_cannot_set_ttl_gets_a_warning_not_a_crash(endpoint_without_ttl, caplog):
    client, refused = endpoint_without_ttl
    for _ in range(2):  # the second start finds the table without TTL and tries again
        with caplog.at_level(logging.WARNING, logger="infra.table"):
            ensure_table(client, "no-ttl")
    assert len(refused) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "infra.table"]
    assert len(warnings) == 2 and all("TTL" in w and "UnknownOperationException" in w for w in warnings)
    assert client.describe_table(TableName="no-ttl")["Table"]["TableStatus"] == "ACTIVE"


def test_existing_table_without_ttl_gets_it():
    with mock_aws():
        client = boto3.client("dynamodb")
        properties = table_properties()
        client.create_table(
            TableName="old",
            AttributeDefinitions=properties["AttributeDefinitions"],
            KeySchema=properties["KeySchema"],
            BillingMode="PAY_PER_REQUEST",
        )
        ensure_table(client, "old")
        ttl = client.describe_time_to_live(TableName="old")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)


def test_committed_openapi_document_is_the_generated_one():
    """openapi.json is generated (`make openapi`), never edited: it must be what the code generates now."""
    committed = (TEMPLATE.parent / "openapi.json").read_text()
    assert committed == render(), "openapi.json is stale: run `make openapi`"
