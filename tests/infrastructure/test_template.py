"""template.yaml: valid for SAM, and the single definition of the state table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
from moto import mock_aws

from carryover.state_store import KEY_SCHEMA, TTL_ATTRIBUTE
from infra.table import TEMPLATE, ensure_table, table_properties

SAM = Path(sys.executable).parent / "sam"


def test_sam_validate_lint_passes():
    env = os.environ | {"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template", str(TEMPLATE)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_table_keys_and_ttl_are_the_ones_the_store_uses():
    properties = table_properties()
    keys = {entry["KeyType"]: entry["AttributeName"] for entry in properties["KeySchema"]}
    assert keys == {"HASH": KEY_SCHEMA["partition"], "RANGE": KEY_SCHEMA["sort"]}
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
